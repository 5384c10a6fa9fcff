package transport

import (
	"errors"
	"fmt"
	"net"
	"unicode/utf8"
)

// Limits of what CloseWithError, CancelRead and CancelWrite transmit, imposed
// by QUIC's wire format (codes are 62-bit varints; the reason must fit in one
// packet). Both transports clamp larger codes to MaxErrorCode and truncate
// longer reasons to at most MaxReasonLength bytes (on a UTF-8 boundary).
const (
	MaxErrorCode    = 1<<62 - 1
	MaxReasonLength = 1000
)

func clampCode(code uint64) uint64 { return min(code, MaxErrorCode) }

func truncateReason(reason string) string {
	if len(reason) <= MaxReasonLength {
		return reason
	}
	i := MaxReasonLength
	for i > 0 && !utf8.RuneStart(reason[i]) {
		i--
	}
	return reason[:i]
}

// StreamError is the error that stream operations return after the stream
// was aborted: by CancelWrite on the sending side (the receiver's Read fails)
// or by CancelRead on the receiving side (the sender's Write fails).
//
// Code is the code passed to CancelRead or CancelWrite. Remote is true when
// the peer aborted the stream, false when this side did (for example, Read
// after this side called CancelRead).
//
// A StreamError affects one stream only; the connection stays usable, so it
// does not match net.ErrClosed.
type StreamError struct {
	Code   uint64
	Remote bool
}

func (e *StreamError) Error() string {
	side := "local"
	if e.Remote {
		side = "peer"
	}
	return fmt.Sprintf("transport: stream aborted by %s with code %d", side, e.Code)
}

// ErrDatagramTooLarge is returned by SendDatagram for a datagram longer
// than MaxDatagramSize.
var ErrDatagramTooLarge = errors.New("transport: datagram too large")

// ErrStreamClosed is returned by Write after Close was called on the same
// sending half.
var ErrStreamClosed = errors.New("transport: write on closed stream")

// goneError marks an error after which the connection is gone for a reason
// other than CloseWithError (idle timeout, stateless reset, transport error,
// closed socket...). It keeps the original text and matches net.ErrClosed.
//
// It deliberately does not unwrap to the underlying quic-go error: some of
// those implement net.Error with Timeout() == true (the idle timeout), which
// callers could mistake for a deadline.
type goneError struct{ msg string }

func (e *goneError) Error() string { return e.msg }
func (e *goneError) Unwrap() error { return net.ErrClosed }

// ErrRefused matches (errors.Is) the error of Dial when the server refused
// the connection during the QUIC handshake (CONNECTION_REFUSED: quic-go
// does so when its accept queue is full or its listener is closing). The
// refusal is about the server's state, not the client: trying again later
// may succeed. The error also matches net.ErrClosed.
var ErrRefused = errors.New("transport: connection refused by the server")

// refusedError is a goneError that also matches ErrRefused.
type refusedError struct{ msg string }

func (e *refusedError) Error() string   { return e.msg }
func (e *refusedError) Unwrap() []error { return []error{ErrRefused, net.ErrClosed} }

// errListenerClosed is returned by Listener.Accept after Close.
var errListenerClosed = fmt.Errorf("transport: listener closed: %w", net.ErrClosed)
