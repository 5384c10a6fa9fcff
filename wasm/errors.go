package wasm

import (
	"errors"
	"fmt"
	"time"

	"github.com/yomo-dev/yomo"
)

// Errors. A failed call is reported as a *CallError whose Err is, or
// wraps, one of these (test with errors.Is and errors.As).
var (
	// ErrInvalidModule is wrapped by every Load error that is the module's
	// fault: not WebAssembly, not valid, a missing export, a wrong
	// signature, an unknown import, both _start and _initialize, no
	// observed tag. The message names the culprit.
	ErrInvalidModule = errors.New("wasm: invalid module")
	// ErrTimeout means a guest call ran past its deadline (Config.Timeout,
	// or Config.InitTimeout while an instance starts). The instance was
	// stopped and is replaced.
	ErrTimeout = errors.New("wasm: guest call timed out")
	// ErrMemoryLimit means the guest asked for more linear memory than
	// Config.MemoryLimit allows. The refusal itself is not an error for the
	// guest (memory.grow returns -1); it is reported when the call then
	// fails, usually with a trap or an exit, and the *CallError wraps both
	// ErrMemoryLimit and that cause. Load also wraps it when the module's
	// initial memory is over the limit.
	ErrMemoryLimit = errors.New("wasm: guest memory limit reached")
)

// CallError reports a call into the guest that failed. Handle reports it
// through Config.OnError; Load returns it when an instance fails to start.
// After a CallError the instance is discarded and replaced.
type CallError struct {
	// Export is the export that was called: "yomo_handler", or during
	// the start of an instance "_start", "_initialize",
	// "yomo_observe_datatags", "yomo_wanted_target", "yomo_init", or
	// "start function" for the module's start section.
	Export string
	// Tag is the tag of the frame being handled (yomo_handler only).
	Tag yomo.Tag
	// Err says what happened. Test it with errors.Is and errors.As: it
	// matches ErrTimeout; or is a *TrapError or an *ExitError; or matches
	// ErrMemoryLimit and wraps the *TrapError or *ExitError that followed;
	// or matches yomo.ErrClosed for a frame that arrived after Close or a
	// call that Close interrupted.
	Err error
}

func (e *CallError) Error() string {
	if e.Export == exportHandler {
		return fmt.Sprintf("wasm: %s (tag %#x): %v", e.Export, e.Tag, e.Err)
	}
	return fmt.Sprintf("wasm: %s: %v", e.Export, e.Err)
}

// Unwrap returns Err.
func (e *CallError) Unwrap() error { return e.Err }

// TrapError is a guest that trapped: it executed unreachable (a panic of
// Go, TinyGo or Rust, a C abort), divided by zero, accessed memory out of
// bounds, overflowed its stack, or misused a host function (the message
// says which).
type TrapError struct {
	// Message is the runtime's description, with the guest's stack trace
	// when the module has a name section.
	Message string
}

func (e *TrapError) Error() string { return "guest trapped: " + e.Message }

// ExitError is a guest that exited (WASI proc_exit), as C's exit() or Go's
// os.Exit do. An instance cannot be called after it exited, even with
// code 0; the one exception is a command's _start exiting with code 0,
// which ends its start normally.
type ExitError struct {
	Code uint32 // the guest's exit code
}

func (e *ExitError) Error() string { return fmt.Sprintf("guest exited with code %d", e.Code) }

// InitError is returned by Load when the guest's yomo_init returned a
// non-zero code. Instances started later to replace failed ones report it
// through Config.OnError when their yomo_init fails.
type InitError struct {
	Code int32
}

func (e *InitError) Error() string {
	return fmt.Sprintf("wasm: yomo_init failed with code %d", e.Code)
}

// WriteError reports a frame that a guest wrote (yomo_write or
// yomo_write_with_target) and the host failed to send, for example
// because it is over the frame size limit (yomo.ErrFrameTooLarge) or the
// write buffer stayed full (yomo.ErrWriteTimeout). The guest sees status 2
// and goes on; the error is reported through Config.OnError.
type WriteError struct {
	Tag    yomo.Tag
	Target string
	Err    error
}

func (e *WriteError) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("wasm: guest write (tag %#x, target %q) failed: %v", e.Tag, e.Target, e.Err)
	}
	return fmt.Sprintf("wasm: guest write (tag %#x) failed: %v", e.Tag, e.Err)
}

// Unwrap returns Err.
func (e *WriteError) Unwrap() error { return e.Err }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidModule}, args...)...)
}

// timeoutError is ErrTimeout with the deadline that passed.
type timeoutError struct{ after time.Duration }

func (e *timeoutError) Error() string        { return fmt.Sprintf("timed out after %v", e.after) }
func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }

// memoryLimitError is ErrMemoryLimit with the failure that followed.
type memoryLimitError struct {
	limit uint64
	cause error
}

func (e *memoryLimitError) Error() string {
	return fmt.Sprintf("memory limit of %d KiB reached, then %v", e.limit>>10, e.cause)
}
func (e *memoryLimitError) Is(target error) bool { return target == ErrMemoryLimit }
func (e *memoryLimitError) Unwrap() error        { return e.cause }

// markedError is a message that errors.Is matches against several
// sentinels.
type markedError struct {
	msg   string
	marks []error
}

func (e *markedError) Error() string   { return e.msg }
func (e *markedError) Unwrap() []error { return e.marks }
