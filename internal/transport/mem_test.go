package transport

import (
	"context"
	"io"
	"testing"
	"time"
)

func TestPipeAddrsAndCertificates(t *testing.T) {
	c, s := Pipe("fn-1")
	defer c.CloseWithError(0, "")
	for _, conn := range []Conn{c, s} {
		for _, a := range []interface {
			Network() string
			String() string
		}{conn.LocalAddr(), conn.RemoteAddr()} {
			if a.Network() != "mem" || a.String() != "fn-1" {
				t.Errorf("addr %q/%q; want mem/fn-1", a.Network(), a.String())
			}
		}
		if conn.PeerCertificates() != nil {
			t.Error("PeerCertificates is not nil")
		}
	}
}

// Unlike QUIC, an in-memory stream reaches the peer as soon as it is opened.
func TestMemStreamDeliveredOnOpen(t *testing.T) {
	c, s := Pipe("p")
	defer c.CloseWithError(0, "")
	ctx := testCtx(t)
	if _, err := c.OpenStream(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.OpenUniStream(ctx); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if _, err := s.AcceptStream(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcceptUniStream(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestMemFlowControl(t *testing.T) {
	c, s := Pipe("p")
	defer c.CloseWithError(0, "")
	cs, ss := openPair(t, c, s)

	// A full window is accepted without a reader...
	full := randBytes(MemStreamWindow, 3)
	if err := cs.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if n, err := cs.Write(full); err != nil || n != len(full) {
		t.Fatalf("writing one window: %d, %v", n, err)
	}
	// ...one more byte is not.
	more := async(func() result[int] { n, err := blockWrite(cs, []byte("+tail")); return result[int]{n, err} })
	waitBlocked(t, "blockWrite")
	select {
	case r := <-more:
		t.Fatalf("Write beyond the window returned %d, %v", r.v, r.err)
	default:
	}
	// Reading makes room.
	got := make([]byte, len(full)+5)
	if _, err := io.ReadFull(ss, got[:100]); err != nil {
		t.Fatal(err)
	}
	if r := await(t, more, "Write after the reader made room"); r.err != nil || r.v != 5 {
		t.Fatalf("Write after room was made: %d, %v", r.v, r.err)
	}
	if _, err := io.ReadFull(ss, got[100:]); err != nil {
		t.Fatal(err)
	}
	if string(got[len(full):]) != "+tail" || string(got[:len(full)]) != string(full) {
		t.Fatal("data mismatch")
	}
}

// The hot path of the in-memory transport does not allocate.
func TestMemNoAllocs(t *testing.T) {
	c, s := Pipe("p")
	defer c.CloseWithError(0, "")
	cs, ss := openPair(t, c, s)
	wbuf := make([]byte, 32<<10)
	rbuf := make([]byte, 64<<10)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := cs.Write(wbuf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(ss, rbuf[:len(wbuf)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Fatalf("%v allocations per Write+Read", allocs)
	}
}

func BenchmarkMemStream(b *testing.B) {
	c, s := Pipe("bench")
	defer c.CloseWithError(0, "")
	ctx := context.Background()
	cs, err := c.OpenStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ss, err := s.AcceptStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	const batch = 32 << 10
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := ss.Read(buf); err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- err
				return
			}
		}
	}()
	wbuf := make([]byte, batch)
	b.SetBytes(batch)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := cs.Write(wbuf); err != nil {
			b.Fatal(err)
		}
	}
	cs.Close()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// TestPipeDatagramsLossless: the in-memory transport loses no datagram:
// a sender waits while the peer holds memDatagramQueue of them unread,
// and goes on once one is taken, in order.
func TestPipeDatagramsLossless(t *testing.T) {
	c, s := Pipe("dgram")
	defer c.CloseWithError(0, "")
	ctx := testCtx(t)
	for i := range memDatagramQueue {
		if err := c.SendDatagram([]byte{byte(i)}); err != nil {
			t.Fatalf("SendDatagram %d: %v", i, err)
		}
	}
	sent := async(func() error { return blockSendDatagram(c, []byte{byte(memDatagramQueue)}) })
	waitBlocked(t, "blockSendDatagram")
	for i := range memDatagramQueue + 1 {
		b, err := s.ReceiveDatagram(ctx)
		if err != nil || len(b) != 1 || b[0] != byte(i) {
			t.Fatalf("datagram %d: got %v, %v", i, b, err)
		}
		if i == 0 {
			if err := await(t, sent, "the waiting SendDatagram"); err != nil {
				t.Fatalf("the waiting SendDatagram: %v", err)
			}
		}
	}
}
