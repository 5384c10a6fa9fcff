//! upper: a YoMo stream function in Rust, built for wasm32-wasi as a
//! cdylib. It observes tag 0x10 and writes every payload upper-cased with
//! tag 0x11.
//!
//! Build (Debian: apt-get install rustc cargo libstd-rust-dev-wasm32):
//!
//!   cargo build --release --target wasm32-wasi

use std::cell::RefCell;

// The host side of the YoMo ABI (module "env").
#[link(wasm_import_module = "env")]
extern "C" {
    fn yomo_observe_datatag(tag: u32);
    fn yomo_context_data_size() -> u32;
    fn yomo_context_data(ptr: *mut u8, cap: u32) -> u32;
    fn yomo_write(tag: u32, ptr: *const u8, len: u32) -> u32;
}

const TAG_IN: u32 = 0x10;
const TAG_OUT: u32 = 0x11;

thread_local! {
    // One buffer for every call: a WebAssembly instance runs one call at
    // a time, and the host never shares an instance between threads.
    static BUF: RefCell<Vec<u8>> = RefCell::new(Vec::new());
}

#[no_mangle]
pub extern "C" fn yomo_observe_datatags() {
    unsafe { yomo_observe_datatag(TAG_IN) }
}

#[no_mangle]
pub extern "C" fn yomo_handler() {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let n = unsafe { yomo_context_data_size() } as usize;
        buf.resize(n, 0);
        let got = unsafe { yomo_context_data(buf.as_mut_ptr(), n as u32) } as usize;
        buf.truncate(got);
        buf.make_ascii_uppercase();
        unsafe { yomo_write(TAG_OUT, buf.as_ptr(), buf.len() as u32) };
    })
}
