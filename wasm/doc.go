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
// *InitError when yomo_init fails; a *CallError when an instance traps or
// times out while starting.
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
// Stderr, and sets the limits. Random bytes come from crypto/rand.
//
// # The guest ABI
//
// A guest is a WebAssembly core module (a WASI preview 1 reactor, or no
// WASI at all) that exports its "memory" and these functions, all without
// parameters:
//
//	_initialize()            optional; WASI reactor start, called first
//	yomo_init() -> i32       optional; called next, non-zero fails the instance
//	yomo_observe_datatags()  required; registers the tags
//	yomo_wanted_target()     optional; gives the wanted target
//	yomo_handler()           required; handles one frame
//
// Each instance runs _initialize and yomo_init when it starts; the first
// instance also runs yomo_observe_datatags and yomo_wanted_target, once.
// A WASI command (exporting _start) is rejected: its _start runs main and
// exits, after which the instance cannot be called. Build reactors:
// GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared for Go (see the
// guest SDK, package github.com/yomo-dev/yomo/wasm/guest), clang
// --target=wasm32-wasi -mexec-model=reactor for C. Other exports, such as
// yomo_alloc, are ignored: the host never allocates in a guest's memory.
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
//
// A write's status is 0 when the frame was queued, 1 when [ptr, ptr+len)
// or the target is outside the module's memory, and 2 when the host could
// not send it (also reported as a *WriteError), or when there is no frame
// being handled. Frames written while handling a frame carry its origin,
// so they flow back to the Source that started the chain. The context
// functions return 0 outside yomo_handler. yomo_observe_datatag and
// yomo_get_wanted_target trap outside their exports, and so do
// yomo_context_data and yomo_get_wanted_target given memory out of range.
// WASI preview 1 ("wasi_snapshot_preview1") is available, within the
// sandbox; no other import is.
package wasm
