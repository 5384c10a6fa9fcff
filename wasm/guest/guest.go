//go:build wasip1

package guest

import (
	"errors"
	"os"
	"unsafe"
)

// Tag identifies the kind of data a frame carries (yomo.Tag on the host).
type Tag = uint32

// Handler handles one frame: its tag and its payload. data is valid only
// until the handler returns; copy what must outlive the call.
type Handler func(tag Tag, data []byte)

// Errors returned by Write and WriteWithTarget.
var (
	// ErrOutOfRange means the host could not read the data or the target
	// from this module's memory (status 1). It does not happen with slices
	// and strings made by Go.
	ErrOutOfRange = errors.New("guest: data out of the module's memory")
	// ErrWriteFailed means the host could not send the frame (status 2),
	// for example because it is too large or the client's queue stayed
	// full.
	ErrWriteFailed = errors.New("guest: the host failed to write the frame")
	// ErrNoContext means Write was called outside the handler: results can
	// only be written while a frame is being handled.
	ErrNoContext = errors.New("guest: write outside the handler")
)

var (
	tags    []Tag
	target  string
	handler Handler
	initFn  func() error
	buf     []byte
	inCall  bool
)

// ObserveDataTags adds tags to the ones the function handles. Call it from
// an init function, before the host loads the module's tags.
func ObserveDataTags(t ...Tag) { tags = append(tags, t...) }

// SetWantedTarget makes the function also receive the frames written with
// this target (see yomo.StreamFunction.SetWantedTarget). Call it from an
// init function.
func SetWantedTarget(t string) { target = t }

// SetHandler sets the function called for every frame. Call it from an
// init function. A module without a handler ignores the frames it gets.
func SetHandler(h Handler) { handler = h }

// SetInit sets a function that the host calls once per instance, after the
// package init functions and before any frame. A non-nil error fails the
// load (or the instance's replacement); its text is written to stderr,
// which the host may show (wasm.Config.Stderr).
func SetInit(fn func() error) { initFn = fn }

// Write sends a frame with tag and data from inside the handler. The data
// is copied before Write returns.
func Write(tag Tag, data []byte) error {
	if !inCall {
		return ErrNoContext
	}
	return status(hostWrite(tag, unsafe.Pointer(unsafe.SliceData(data)), uint32(len(data))))
}

// WriteWithTarget is Write for the instances of functions whose wanted
// target is target.
func WriteWithTarget(tag Tag, data []byte, target string) error {
	if !inCall {
		return ErrNoContext
	}
	return status(hostWriteWithTarget(tag, unsafe.Pointer(unsafe.SliceData(data)), uint32(len(data)), target))
}

func status(s uint32) error {
	switch s {
	case 0:
		return nil
	case 1:
		return ErrOutOfRange
	default:
		return ErrWriteFailed
	}
}

//go:wasmimport env yomo_observe_datatag
func hostObserveDataTag(tag uint32)

//go:wasmimport env yomo_context_tag
func hostContextTag() uint32

//go:wasmimport env yomo_context_data_size
func hostContextDataSize() uint32

//go:wasmimport env yomo_context_data
func hostContextData(ptr unsafe.Pointer, capacity uint32) uint32

//go:wasmimport env yomo_write
func hostWrite(tag uint32, ptr unsafe.Pointer, size uint32) uint32

//go:wasmimport env yomo_write_with_target
func hostWriteWithTarget(tag uint32, ptr unsafe.Pointer, size uint32, target string) uint32

//go:wasmimport env yomo_get_wanted_target
func hostSetWantedTarget(target string)

//go:wasmexport yomo_init
func exportInit() int32 {
	if initFn == nil {
		return 0
	}
	if err := initFn(); err != nil {
		_, _ = os.Stderr.WriteString("yomo_init: " + err.Error() + "\n")
		return 1
	}
	return 0
}

//go:wasmexport yomo_observe_datatags
func exportObserveDataTags() {
	for _, t := range tags {
		hostObserveDataTag(t)
	}
}

//go:wasmexport yomo_wanted_target
func exportWantedTarget() {
	if target != "" {
		hostSetWantedTarget(target)
	}
}

//go:wasmexport yomo_handler
func exportHandler() {
	if handler == nil {
		return
	}
	tag := hostContextTag()
	n := hostContextDataSize()
	for {
		if uint32(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:cap(buf)]
		// The payload cannot change during a call, but the ABI lets the
		// host answer "need more room": loop until it fits.
		got := hostContextData(unsafe.Pointer(unsafe.SliceData(buf)), uint32(len(buf)))
		if got <= uint32(len(buf)) {
			n = got
			break
		}
		n = got
	}
	inCall = true
	defer func() { inCall = false }()
	handler(tag, buf[:n:n])
}
