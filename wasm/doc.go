// Package wasm runs WebAssembly modules as yomo stream function handlers,
// sandboxed, with wazero (a pure Go runtime: no cgo).
//
// It is optional: package yomo never imports it, so programs that do not
// run WebAssembly do not link wazero.
//
// # Lifecycle
//
// Load the module once, configure a StreamFunction from what the module
// registered, connect it, and close in the reverse order:
//
//	f, err := wasm.Load(ctx, module, wasm.Config{
//		Instances: 4,       // one per concurrent handler call
//		OnError:   onError, // trap, timeout, memory limit, failed write
//	})
//	if err != nil {
//		return err // the message names what the module lacks
//	}
//	defer f.Close(context.Background()) // 3. last: after the StreamFunction
//
//	sfn := yomo.NewStreamFunction("my-wasm-fn", zipperAddr, opts...)
//	sfn.SetObserveDataTags(f.ObserveDataTags()...)
//	sfn.SetWantedTarget(f.WantedTarget())
//	sfn.SetErrorHandler(onError)         // the same handler: one place for all errors
//	sfn.SetHandler(f.Handle)             // 1. Handle is a yomo.Handler
//	if err := sfn.Connect(ctx); err != nil {
//		return err
//	}
//	defer sfn.Close() // 2. stops the calls to Handle
//
// Close the StreamFunction before the Function: frames that reach Handle
// after Function.Close are not handled and are reported as yomo.ErrClosed.
//
// # Errors
//
// Handle has no result. When a guest call fails, Handle reports a
// *CallError to Config.OnError (nil: logged with slog), discards the
// instance and starts a fresh one, so the next frames are served. Its Err
// says what happened:
//
//   - ErrTimeout (errors.Is): the call ran past Config.Timeout;
//   - *TrapError (errors.As): the guest trapped (a panic, unreachable, a
//     bad memory access, a misused host function);
//   - *ExitError: the guest exited (C's exit(), Go's os.Exit);
//   - ErrMemoryLimit: the guest was refused memory over
//     Config.MemoryLimit and then failed (also errors.As the trap or exit);
//   - yomo.ErrClosed: a frame after Close, or a call Close interrupted.
//
// A frame the guest wrote that the host could not send is reported as a
// *WriteError (the guest sees status 2). Handing the StreamFunction's
// error handler to Config.OnError, as above, gathers these with the
// connection errors. Handle does not panic to report: a panic would reach
// the error handler as a *yomo.PanicError whose Value is the error, one
// indirection more, and would break callers of Handle outside a
// StreamFunction.
//
// Load returns an error wrapping ErrInvalidModule when the module does
// not fit the ABI, naming the export, import or signature at fault; an
// *InitError when yomo_init fails; a *CallError when an instance traps,
// times out or exits (but for _start's exit(0)) while starting.
//
// A guest's yomo_http_send that gets no response is reported as an
// *HTTPError (the guest sees a non-zero status and goes on).
//
// # Live swap
//
// A new version of a module replaces a running one without reconnecting
// the StreamFunction and without losing or doubling a frame: load the new
// module, hand its Handle to SetHandler (which returns once no call of the
// old handler runs, and sends every later frame to the new one), then
// close the old Function:
//
//	v2, err := wasm.Load(ctx, newModule, cfg)
//	if err != nil {
//		return err // v1 keeps serving
//	}
//	sfn.SetObserveDataTags(v2.ObserveDataTags()...) // if they changed
//	sfn.SetHandler(v2.Handle)
//	v1.Close(ctx)
//
// # Concurrency
//
// All methods of a Function are safe for concurrent use. A WebAssembly
// instance runs one call at a time, so a Function keeps a pool of
// Config.Instances instances (default 1): Handle borrows one, waiting
// while all are busy, and gives it back. Match Instances with the
// StreamFunction's yomo.WithHandlerConcurrency(n) to run n frames at once;
// the instances share nothing (each has its own memory), so a guest must
// not rely on state across frames that another instance may handle.
//
// # Sandbox
//
// By default a guest sees no environment variable, no file, no network
// and no real clock (WASI clocks are deterministic, sleeping returns at
// once); its standard output and error are discarded; its memory is
// capped at DefaultMemoryLimit and each call at DefaultTimeout. Config
// opens what a guest needs: Env, FS (read only), RealClock, Stdout,
// Stderr, HTTPClient (yomo_http_send's only way out), and sets the
// limits. Random bytes come from crypto/rand. WASI sockets are never
// offered.
//
// # The guest ABI
//
// A guest is a WebAssembly core module, with WASI preview 1 or without,
// that exports its "memory" and these functions:
//
//	_start()                 optional; a WASI command's main
//	_initialize()            optional; a WASI reactor's start
//	yomo_observe_datatags()  required; registers the tags
//	yomo_wanted_target()     optional; gives the wanted target
//	yomo_init() -> i32       optional; non-zero fails the instance
//	yomo_handler()           required; handles one frame
//	yomo_alloc(len) -> ptr   required by guests of yomo_http_send
//
// Every instance, when it starts, calls those it has in the order above,
// YoMo's: _start or _initialize (a module with both is rejected), then
// yomo_observe_datatags, yomo_wanted_target and yomo_init; then
// yomo_handler once per frame. A command's _start may return or exit
// with code 0 (C's exit(0)); the instance keeps what main left in memory
// and serves calls. Any other exit of _start fails the start with an
// *ExitError carrying its code. Each start export runs inside the sandbox
// and within Config.InitTimeout. The first instance's registrations are
// the Function's (ObserveDataTags, WantedTarget).
//
// Build a Go guest with the guest SDK (package
// github.com/yomo-dev/yomo/wasm/guest) as a reactor, GOOS=wasip1
// GOARCH=wasm go build -buildmode=c-shared: a Go command's runtime shuts
// down when main returns. C, Rust and Zig build either kind; GUIDES.md
// shows a guest in each, built with its own toolchain.
//
// The host module "env" provides, all in i32:
//
//	yomo_observe_datatag(tag)                 in yomo_observe_datatags: register a tag
//	yomo_get_wanted_target(ptr, len)          in yomo_wanted_target: set the target
//	yomo_context_tag() -> tag                 the frame's tag
//	yomo_context_data_size() -> len           its payload's length
//	yomo_context_data(ptr, cap) -> len        copy the payload to [ptr, ptr+len) if len <= cap;
//	                                          otherwise copy nothing and return len
//	yomo_write(tag, ptr, len) -> status       write a frame; any number per call
//	yomo_write_with_target(tag, ptr, len, target_ptr, target_len) -> status
//	yomo_http_send(req_ptr, req_len, resp_ptr_addr, resp_len_addr) -> status
//	                                          an HTTP request, through Config.HTTPClient
//	yomo_context_metadata(key_ptr, key_len, ptr, cap) -> len
//	                                          the frame's metadata value for a key, copied as
//	                                          yomo_context_data copies; -1 when it has none
//
// A write's status is 0 when the frame was queued, 1 when [ptr, ptr+len)
// or the target is outside the module's memory, and 2 when the host could
// not send it (also reported as a *WriteError), or when there is no frame
// being handled. Frames written while handling a frame carry its origin
// and metadata, so they flow back to the Source that started the chain.
// The context functions return 0 (yomo_context_metadata -1) outside
// yomo_handler. yomo_observe_datatag and yomo_get_wanted_target trap
// outside their exports, and so do yomo_context_data,
// yomo_context_metadata and yomo_get_wanted_target given memory out of
// range. WASI preview 1 ("wasi_snapshot_preview1") is available, within
// the sandbox; no other import is.
//
// yomo_http_send takes YoMo's JSON request at [req_ptr, req_ptr+req_len):
//
//	{"Method": "POST", "URL": "https://...", "Header": {"Accept": "text/plain"},
//	 "Timeout": 5000, "Body": "aGVsbG8="}
//
// Timeout is in milliseconds (0: DefaultHTTPTimeout), Body is base64 (Go's
// encoding of []byte), a header's value a string or a list of strings.
// The host performs it with Config.HTTPClient, calls the guest's
// yomo_alloc(len) for room, writes there the JSON response
//
//	{"Status": "200 OK", "StatusCode": 200, "Header": {"Content-Type": "text/plain"}, "Body": "..."}
//
// (a header's values joined with ", "), stores its address and length as
// little-endian u32 at resp_ptr_addr and resp_len_addr, and returns 0.
// Any HTTP status code is a response. Otherwise it returns, as YoMo's
// host did: 1 the request is outside the memory, 2 it is not such JSON,
// 3 its method or URL is unusable, 4 no response (network error,
// timeout), 5 the body could not be read or is over
// Config.HTTPResponseLimit, 7 yomo_alloc's room or the addresses are
// outside the memory; and 8 when Config.HTTPClient is nil (no network).
// Each failure is also reported as an *HTTPError. A request is bounded by
// its Timeout and by the call's deadline, whichever comes first; a call
// whose deadline passes during the request ends with ErrTimeout.
//
// yomo_context_metadata is this package's addition, which YoMo's guests
// never import: it gives a guest the metadata of the frame, such as the
// "traceparent" of the trace it belongs to (yomo.Context.Metadata).
//
// # What a guest may rely on
//
//   - Each instance starts once, in the order above: yomo_init runs once
//     per instance, before its first frame, after the tags are
//     registered.
//   - An instance handles one frame at a time; its memory and globals
//     persist from one frame to the next.
//   - A failed call (trap, exit, timeout, memory limit) discards its
//     instance with everything in its memory, and a fresh instance, which
//     runs the start sequence again, serves the next frames. A trap can
//     leave a guest's data half updated, its allocator's included, so
//     reusing the instance could corrupt every later frame (YoMo's host
//     called the same instance again after a trap). Keep state that must
//     survive a failure outside the guest: write it as frames.
//   - With Config.Instances above 1, instances share nothing: frames
//     spread over them, so state in one instance sees only some frames.
//   - By default no environment variable, no file, no network and a fake
//     clock (see Sandbox); YoMo's host gave guests the host's environment,
//     its working directory and the real clock.
package wasm
