//go:build wasip1

package guest

import (
	"encoding/json"
	"errors"
	"fmt"
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

// Metadata returns the value of a metadata key of the frame being
// handled, such as "traceparent" (the W3C trace context of the frame's
// trace), and whether the frame has the key. Outside the handler it finds
// nothing. It needs a host that provides env.yomo_context_metadata, as
// package github.com/yomo-dev/yomo/wasm does; YoMo's host does not.
func Metadata(key string) (string, bool) {
	if !inCall || key == "" {
		return "", false
	}
	var small [64]byte
	n := hostContextMetadata(key, unsafe.Pointer(&small[0]), uint32(len(small)))
	switch {
	case int32(n) < 0:
		return "", false
	case n <= uint32(len(small)):
		return string(small[:n]), true
	}
	b := make([]byte, n)
	// The value cannot change during the call.
	n = hostContextMetadata(key, unsafe.Pointer(unsafe.SliceData(b)), n)
	return string(b[:n]), true
}

// HTTPRequest is a request for HTTPSend, YoMo's. Timeout is in
// milliseconds (0: the host's default, 10 s); the host also ends it at the
// call's deadline.
type HTTPRequest struct {
	Method  string
	URL     string
	Header  map[string][]string
	Timeout int64
	Body    []byte
}

// HTTPResponse is the answer to HTTPSend, YoMo's. A header's values are
// joined with ", ".
type HTTPResponse struct {
	Status     string
	StatusCode int
	Header     map[string]string
	Body       []byte
}

// HTTPStatusError is an HTTPSend that got no response; Status is the
// host's code (see package github.com/yomo-dev/yomo/wasm: 4 is a network
// error or timeout, 8 a host that gives the guest no network).
type HTTPStatusError struct{ Status uint32 }

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("guest: HTTP request failed with host status %d", e.Status)
}

// HTTPSend performs an HTTP request through the host (yomo_http_send),
// in the handler or in the init function. Any HTTP status code is a
// response; an error means there was none.
func HTTPSend(req *HTTPRequest) (*HTTPResponse, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var ptr, size uint32
	st := hostHTTPSend(unsafe.Pointer(unsafe.SliceData(b)), uint32(len(b)), unsafe.Pointer(&ptr), unsafe.Pointer(&size))
	if st != 0 {
		return nil, &HTTPStatusError{Status: st}
	}
	out := allocated
	allocated = nil
	if uint32(len(out)) != size || (size > 0 && uint32(uintptr(unsafe.Pointer(unsafe.SliceData(out)))) != ptr) {
		return nil, errors.New("guest: the host answered outside the buffer it was given")
	}
	resp := new(HTTPResponse)
	if err := json.Unmarshal(out, resp); err != nil {
		return nil, fmt.Errorf("guest: HTTP response: %w", err)
	}
	return resp, nil
}

// allocated is the buffer yomo_alloc gave the host last: referenced here
// until HTTPSend has read it.
var allocated []byte

//go:wasmexport yomo_alloc
func exportAlloc(size uint32) uint32 {
	allocated = make([]byte, size)
	if size == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(allocated))))
}

//go:wasmimport env yomo_context_metadata
func hostContextMetadata(key string, ptr unsafe.Pointer, capacity uint32) uint32

//go:wasmimport env yomo_http_send
func hostHTTPSend(req unsafe.Pointer, size uint32, respPtr, respSize unsafe.Pointer) uint32

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
