package transport

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"time"
)

// Conn is one multiplexed, authenticated connection between a client and a
// zipper (or between two zippers). It is safe for concurrent use.
type Conn interface {
	// OpenStream opens a bidirectional stream. The peer's AcceptStream
	// returns it once the first byte has been written.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the peer to open a bidirectional stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// OpenUniStream opens a unidirectional stream towards the peer.
	OpenUniStream(ctx context.Context) (SendStream, error)
	// AcceptUniStream waits for the peer to open a unidirectional stream.
	AcceptUniStream(ctx context.Context) (ReceiveStream, error)
	// Context is cancelled when the connection is closed, by either side.
	Context() context.Context
	// CloseWithError closes the connection, sending code and reason to the
	// peer. Idempotent.
	CloseWithError(code uint64, reason string) error
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// PeerCertificates returns the peer's verified certificate chain, leaf
	// first; nil when the peer presented none or the transport has no TLS.
	PeerCertificates() []*x509.Certificate
	// RTT is the smoothed round-trip time of the connection (0 when it has
	// no network path, or no sample yet). Safe to call concurrently.
	RTT() time.Duration
	// SendDatagram sends p as one unreliable datagram (QUIC DATAGRAM
	// frames, RFC 9221): delivered whole or not at all, never
	// retransmitted, in no particular order relative to streams or other
	// datagrams. p is copied. A p longer than MaxDatagramSize fails with
	// ErrDatagramTooLarge and sends nothing. It blocks while the
	// transport's own send queue is full (quic-go holds 32 datagrams until
	// congestion control lets them out; the in-memory transport 128 until
	// the peer takes them), and fails once the connection is closed.
	SendDatagram(p []byte) error
	// ReceiveDatagram waits for the next datagram from the peer. The
	// returned slice is the caller's. Datagrams that arrive while the
	// transport's receive queue is full (128 in both transports) are
	// discarded by QUIC, silently: only a gap in a sequence number the
	// application puts in them can show it.
	ReceiveDatagram(ctx context.Context) ([]byte, error)
}

// MaxDatagramSize is the largest datagram SendDatagram accepts, on every
// path. quic-go accepts as much as fits the packet size it currently
// assumes for the path minus the largest packet and frame overhead; that
// size starts at 1280 bytes and falls to QUIC's minimum of 1200 after a
// migration to a new path (Path MTU discovery may raise it, but not
// reliably). 1200 - 37 (packet overhead) - 3 (frame type and length) is
// 1160. The in-memory transport applies the same limit, so that both
// behave alike.
const MaxDatagramSize = 1160

// Migrator is implemented by connections that can move to another local
// socket without ending (QUIC client connections): see quicConn.Migrate.
type Migrator interface {
	Migrate(ctx context.Context, pc net.PacketConn) error
}

// SendStream is the sending half of a stream.
type SendStream interface {
	io.Writer
	// Close ends the stream gracefully (FIN) after the data written so far.
	Close() error
	// CancelWrite abandons the stream; unsent data is discarded.
	CancelWrite(code uint64)
	SetWriteDeadline(t time.Time) error
}

// ReceiveStream is the receiving half of a stream.
type ReceiveStream interface {
	io.Reader
	CancelRead(code uint64)
	SetReadDeadline(t time.Time) error
}

// Stream is a bidirectional stream. Close closes only the sending half.
type Stream interface {
	io.Reader
	io.Writer
	Close() error
	CancelWrite(code uint64)
	CancelRead(code uint64)
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
}

// Listener accepts connections.
type Listener interface {
	// Accept waits for the next connection whose transport handshake has
	// completed. It returns an error wrapping net.ErrClosed once closed.
	Accept(ctx context.Context) (Conn, error)
	// Close stops accepting; established connections are unaffected.
	Close() error
	Addr() net.Addr
}

// CloseError is the error that operations on a connection return after the
// connection was closed with CloseWithError, by either side.
type CloseError struct {
	Code   uint64
	Reason string
	Remote bool // closed by the peer
}

func (e *CloseError) Error() string {
	side := "local"
	if e.Remote {
		side = "peer"
	}
	if e.Reason == "" {
		return "transport: connection closed by " + side
	}
	return "transport: connection closed by " + side + ": " + e.Reason
}

// Unwrap makes errors.Is(err, net.ErrClosed) true.
func (e *CloseError) Unwrap() error { return net.ErrClosed }
