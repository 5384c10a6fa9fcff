package yomo

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/yomo-dev/yomo/internal/transport"
)

// Body credit (frame/spec.md §9.2): QUIC's flow control would let the
// bodies on a connection whose readers stall fill the whole connection's
// receive window, and the frames on that connection would stop with them.
// So an opener keeps the body bytes it has written on one connection and
// the acceptor has not yet read (as the acceptor's counts on each reply
// say) within bodyWindow, half QUIC's initial connection window: frames
// always have the other half.

// bodyWindow bounds the body bytes in flight on one connection: written
// by its opener, not yet read by the acceptor.
const bodyWindow = 2 << 20

// bodyAckEvery is how many bytes an acceptor reads before it sends a
// count. maxBodies of these stay well within bodyWindow, so bytes read but
// not yet counted never hold up a connection.
const bodyAckEvery = 16 << 10

// errBodyEnded is returned by sentBody.write once the body is over.
var errBodyEnded = errors.New("yomo: the body ended")

// bodyCredit is an opener's account of the body bytes in flight on one
// connection. The zero value is ready.
type bodyCredit struct {
	mu       sync.Mutex
	inflight int64
	wake     chan struct{} // closed (and dropped) when inflight goes down; nil while nobody waits
}

// take waits for room and returns how many of want bytes (at least 1) may
// be written now, or false when stop was closed first.
func (b *bodyCredit) take(want int, stop <-chan struct{}) (int, bool) {
	for {
		b.mu.Lock()
		if room := bodyWindow - b.inflight; room > 0 {
			k := int(min(int64(want), room))
			b.inflight += int64(k)
			b.mu.Unlock()
			return k, true
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-stop:
			return 0, false
		}
	}
}

// give returns n bytes of room.
func (b *bodyCredit) give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.inflight -= n
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	b.mu.Unlock()
}

// sentBody is a body stream as its opener writes it: its bytes in flight
// against its connection's credit.
type sentBody struct {
	credit *bodyCredit
	st     transport.Stream
	dead   chan struct{} // closed by end

	mu      sync.Mutex
	written int64 // guarded by mu
	acked   int64 // guarded by mu
	ended   bool  // guarded by mu
}

func newSentBody(credit *bodyCredit, st transport.Stream) *sentBody {
	return &sentBody{credit: credit, st: st, dead: make(chan struct{})}
}

// write writes p as the connection's credit allows. It fails with
// errBodyEnded once end was called, or with the stream's error.
func (s *sentBody) write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		k, ok := s.credit.take(len(p), s.dead)
		if !ok {
			return total, errBodyEnded
		}
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			s.credit.give(int64(k))
			return total, errBodyEnded
		}
		s.written += int64(k)
		s.mu.Unlock()
		n, err := s.st.Write(p[:k])
		total += n
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	return total, nil
}

// ack records the acceptor's count of the bytes it has read.
func (s *sentBody) ack(count int64) {
	s.mu.Lock()
	if s.ended || count <= s.acked {
		s.mu.Unlock()
		return
	}
	count = min(count, s.written) // a count beyond what was written frees nothing more
	d := count - s.acked
	s.acked = count
	s.mu.Unlock()
	s.credit.give(d)
}

// end gives back what the body still holds of the connection's credit:
// its reply ended, or its opener gave it up. Writes fail from now on.
// Idempotent.
func (s *sentBody) end() {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	d := s.written - s.acked
	s.acked = s.written
	s.mu.Unlock()
	close(s.dead)
	s.credit.give(d)
}

// readReply reads the acceptor's counts, 8 bytes each, until the reply
// ends: nil at FIN, otherwise the stream's error. The caller ends s.
func (s *sentBody) readReply() error {
	var b [8]byte
	for {
		if _, err := io.ReadFull(s.st, b[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.ack(int64(binary.BigEndian.Uint64(b[:])))
	}
}

// bodyAcker is an acceptor's side of the credit: it counts the body
// bytes read and sends the count on the reply every bodyAckEvery bytes.
type bodyAcker struct {
	st         transport.Stream
	read, sent int64
	b          [8]byte
}

// add counts n bytes read, and sends the count when it is due.
func (a *bodyAcker) add(n int) error {
	a.read += int64(n)
	if a.read-a.sent < bodyAckEvery {
		return nil
	}
	return a.send()
}

// send writes the count now (a zipper's first, 0, says it routed the
// body).
func (a *bodyAcker) send() error {
	binary.BigEndian.PutUint64(a.b[:], uint64(a.read))
	a.sent = a.read
	_, err := a.st.Write(a.b[:])
	return err
}
