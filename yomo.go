package yomo

import (
	"errors"
	"fmt"
	"net"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// Tag identifies the kind of data a frame carries. Functions observe tags;
// Sources and functions write frames with a tag.
type Tag = frame.Tag

// ALPN is the TLS application protocol id of this wire protocol version.
// The library sets it on every TLS configuration it uses.
const ALPN = transport.ALPN

// Handler processes one frame. It is called with a Context that is valid
// only until the handler returns. A panic is recovered and reported to the
// function's error handler as a *PanicError.
type Handler func(ctx Context)

// Context is what a Handler sees of the frame it handles.
//
// A Context and the slices it returns are valid only until the handler
// returns; copy what must outlive the call. Writes made through it carry
// the frame's origin (its Source and transaction), so their results can
// flow back to that Source (backflow), and the frame's metadata.
type Context interface {
	// Tag is the frame's tag.
	Tag() Tag
	// Data is the frame's payload, valid until the handler returns.
	Data() []byte
	// Metadata returns the value of a metadata key of the frame.
	Metadata(key string) (string, bool)
	// Write sends a new frame with tag and data (copied before returning).
	// A failure is returned and also reported to the function's error
	// handler, so a handler may ignore the result.
	Write(tag Tag, data []byte) error
	// WriteWithTarget is Write for functions whose wanted target is target.
	WriteWithTarget(tag Tag, data []byte, target string) error
}

// Errors. Closed-state errors unwrap to net.ErrClosed.
var (
	// ErrClosed is returned by operations on a closed Zipper, Source or
	// StreamFunction. errors.Is(ErrClosed, net.ErrClosed) is true.
	ErrClosed error = &closedError{}
	// ErrNotConnected is returned by operations that need Connect first.
	ErrNotConnected = errors.New("yomo: not connected")
	// ErrAlreadyConnected is returned by a second Connect.
	ErrAlreadyConnected = errors.New("yomo: already connected")
	// ErrWriteTimeout is returned by a write that could not be queued
	// within the client's write timeout (the queue stayed full).
	ErrWriteTimeout = errors.New("yomo: write timed out: queue full")
	// ErrFrameTooLarge is returned for a frame over the size limit.
	ErrFrameTooLarge = frame.ErrFrameTooLarge
	// ErrNoHandler is returned by Connect of a StreamFunction without a handler.
	ErrNoHandler = errors.New("yomo: no handler set")
)

type closedError struct{}

func (*closedError) Error() string { return "yomo: closed" }
func (*closedError) Unwrap() error { return net.ErrClosed }

// RejectedError is returned by Connect (and reported to the error handler)
// when the zipper refused the client. It is final — the client stops and
// does not retry — except for Code frame.RejectShutdown ("the zipper is
// shutting down"), after which a connected client keeps reconnecting.
type RejectedError struct {
	// Code is one of the frame.Reject* values.
	Code int
	// Reason is the zipper's explanation; it never contains a secret.
	Reason string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("yomo: rejected by zipper: %s", e.Reason)
}

// DroppedError is reported to a StreamFunction's error handler when the
// zipper dropped frames meant for it: its queue was full because it fell
// behind or got stuck (see OverflowPolicy), or frames were lost with a
// broken connection. Reports are coalesced, a few per second at most.
type DroppedError struct {
	Count uint64 // frames dropped since the previous report
	Total uint64 // frames dropped for this connection so far
}

func (e *DroppedError) Error() string {
	return fmt.Sprintf("yomo: zipper dropped %d frames for this function (%d on this connection)", e.Count, e.Total)
}

func rejectedFromClose(err error) (*RejectedError, bool) {
	var ce *transport.CloseError
	if errors.As(err, &ce) && ce.Remote {
		if code, ok := frame.CloseCode(ce.Code).Reject(); ok && code > 0 && code < 0x100 {
			return &RejectedError{Code: int(code), Reason: ce.Reason}, true
		}
	}
	return nil, false
}

var errContextDone = errors.New("yomo: Context used after its handler returned")
