//! upper.zig: a YoMo stream function in Zig (0.11), built as a WASI
//! library. It observes tag 0x10 and writes every payload upper-cased
//! with tag 0x11.
//!
//! Build:
//!
//!   zig build-lib -target wasm32-wasi -dynamic -rdynamic -O ReleaseSmall \
//!     -femit-bin=upper.wasm upper.zig

const std = @import("std");

// The host side of the YoMo ABI (module "env").
extern "env" fn yomo_observe_datatag(tag: u32) void;
extern "env" fn yomo_context_data_size() u32;
extern "env" fn yomo_context_data(ptr: [*]u8, cap: u32) u32;
extern "env" fn yomo_write(tag: u32, ptr: [*]const u8, len: u32) u32;

const tag_in: u32 = 0x10;
const tag_out: u32 = 0x11;

const allocator = std.heap.wasm_allocator;
// One buffer for every call, grown when a payload does not fit.
var buf: []u8 = &[_]u8{};

export fn yomo_observe_datatags() void {
    yomo_observe_datatag(tag_in);
}

export fn yomo_handler() void {
    const n = yomo_context_data_size();
    if (n > buf.len) {
        // Out of memory is a trap: the host reports it and starts a
        // fresh instance.
        buf = allocator.realloc(buf, n) catch @panic("out of memory");
    }
    const got = yomo_context_data(buf.ptr, @intCast(buf.len));
    const data = buf[0..got];
    for (data) |*c| {
        c.* = std.ascii.toUpper(c.*);
    }
    _ = yomo_write(tag_out, data.ptr, got);
}
