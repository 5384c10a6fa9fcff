// Package transport carries yomo's connections: multiplexed, flow-controlled
// streams between clients and zippers (and between zippers), and
// unreliable datagrams of up to MaxDatagramSize bytes (SendDatagram,
// ReceiveDatagram).
//
// It is internal. The rest of the project programs against the small
// interfaces in transport.go (Conn, Stream, SendStream, ReceiveStream,
// Listener) and never sees the implementation behind them.
//
// Two implementations are provided:
//
//   - QUIC (Listen, Dial), over TLS 1.3 with the ALPN "yomo/1". This file set
//     is the only place in the project that imports github.com/quic-go/quic-go;
//     upgrading or replacing the QUIC library only touches quic.go. Errors are
//     translated at this boundary: a connection closed with CloseWithError
//     (by either side) yields a *CloseError, a stream aborted with CancelRead
//     or CancelWrite yields a *StreamError, any other loss of the connection
//     (idle timeout, stateless reset, transport error) yields an error that
//     satisfies errors.Is(err, net.ErrClosed), and deadlines yield errors that
//     satisfy errors.Is(err, os.ErrDeadlineExceeded).
//
//   - An in-memory transport (Pipe) with the same semantics and the same
//     error values, for tests and for functions that run in the same process
//     as their zipper. It has no background goroutines, so it cannot leak
//     any.
//
// SelfSigned creates a throw-away certificate for tests and local
// development.
package transport
