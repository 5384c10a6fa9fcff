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

// Message is one frame as an application writes it: Source.WriteMessage,
// and MessageContext.WriteMessage in a handler. Fields may be added in
// later versions; a zero field means "none".
type Message struct {
	// Tag selects the functions that receive the frame.
	Tag Tag
	// Data is the payload; it is copied before the write returns.
	Data []byte
	// Target, when not empty, restricts delivery to the instances whose
	// wanted target equals it (SetWantedTarget).
	Target string
	// Key, when not empty, is the frame's affinity key.
	Key string
	// Metadata travels with the frame and with everything functions write
	// while handling it (a W3C "traceparent" set here reaches every
	// function of the chain). At most frame.MaxMetadataEntries entries.
	Metadata map[string]string
}

// MessageContext is what every Context the library hands to a Handler
// also implements, and so does the yomotest package's fake: the frame's
// transaction and key, and writes of a whole Message. Context itself
// stays as it is, so code that implements it keeps compiling; reach
// these with a type assertion (ctx.(yomo.MessageContext)). Do not
// implement Context or MessageContext yourself to test a handler: use
// package yomotest, which follows them as they grow.
type MessageContext interface {
	Context
	// TID identifies the origin Source's write that started the chain
	// this frame belongs to: frames written while handling it carry it on.
	TID() string
	// Key is the frame's affinity key; "" when it has none.
	Key() string
	// WriteMessage writes m as a result of the frame being handled: it
	// carries the frame's origin (for backflow), its metadata (m's entries
	// added or replacing) and, when m.Key is empty, its key.
	WriteMessage(m Message) error
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
	// ErrNoResponders is returned by Request, at once, when no function
	// observes the request's tag, here or anywhere in the mesh.
	ErrNoResponders = errors.New("yomo: no responders: nothing observes the request's tag")
	// ErrMigrationUnsupported is returned by Source.Migrate for a
	// connection that cannot move to another socket (in memory).
	ErrMigrationUnsupported = errors.New("yomo: this connection cannot migrate (in-memory)")
	// ErrGoAway is the reason of a state change when the zipper asked the
	// client to reconnect (it is shutting down).
	ErrGoAway = errGoAway
	// ErrNoTokens is returned by NewZipper for WithAuthToken() with no
	// token: authentication asked for, with nothing to accept.
	ErrNoTokens = errors.New("yomo: WithAuthToken without any token: authentication would be off")
)

// HandlerError is returned by Request when a function failed on the
// request instead of answering it: its handler panicked (Status "panic").
type HandlerError struct {
	Status  string // why: "panic"
	Message string // the function's name and the panic value
}

func (e *HandlerError) Error() string { return "yomo: request failed: " + e.Message }

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

// LostError is reported to a Source's error handler when frames it wrote
// (or that functions wrote while handling them) were lost in the mesh: a
// zipper on the way had no path to their function for 2 s, or they came
// after newer frames of their flow. Reports are coalesced: one per
// zipper and tag every 100 ms at most. Frames a function's full queue
// dropped are reported to the function (*DroppedError), not here.
type LostError struct {
	Tag    Tag    // the tag of the lost frames
	Count  uint64 // frames lost since the previous report for this tag from that zipper
	Zipper string // the zipper that dropped them
}

func (e *LostError) Error() string {
	return fmt.Sprintf("yomo: %d frames of tag %d lost in the mesh at zipper %q (no path)", e.Count, e.Tag, e.Zipper)
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

// goAwayClose reports whether err is the zipper closing the connection
// with the goaway code (frame/spec.md §4.1): like a GOAWAY frame, it
// sends the client to its next address.
func goAwayClose(err error) bool {
	var ce *transport.CloseError
	return errors.As(err, &ce) && ce.Remote && frame.CloseCode(ce.Code) == frame.CloseGoAway
}

var errContextDone = errors.New("yomo: Context used after its handler returned")
