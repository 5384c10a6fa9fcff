package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait on a condition in these tests. It is
// generous: it only matters when a test is failing.
const waitTimeout = 10 * time.Second

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// async runs f in a goroutine and returns a channel with its result.
func async[T any](f func() T) <-chan T {
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	return ch
}

func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func waitDone(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s to be done", what)
	}
}

// poll waits until cond is true.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitBlocked waits until a goroutine whose stack contains marker (the name
// of one of the block* helpers below) is parked, so that a test can act on
// an operation that is really blocked rather than one not yet started.
func waitBlocked(t *testing.T, marker string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	poll(t, marker+" to block", func() bool {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if !strings.Contains(g, "transport."+marker+"(") {
				continue
			}
			if strings.Contains(header, "[select") || strings.Contains(header, "[chan receive") ||
				strings.Contains(header, "[sync.Cond.Wait") {
				return true
			}
		}
		return false
	})
}

// The block* helpers only exist to be recognisable in stack traces.

//go:noinline
func blockRead(r io.Reader, b []byte) (int, error) { return r.Read(b) }

//go:noinline
func blockWrite(w io.Writer, b []byte) (int, error) { return w.Write(b) }

//go:noinline
func blockAccept(c Conn, ctx context.Context) (Stream, error) { return c.AcceptStream(ctx) }

//go:noinline
func blockAcceptUni(c Conn, ctx context.Context) (ReceiveStream, error) {
	return c.AcceptUniStream(ctx)
}

//go:noinline
func blockListenerAccept(l Listener, ctx context.Context) (Conn, error) { return l.Accept(ctx) }

type result[T any] struct {
	v   T
	err error
}

func randBytes(n int, seed uint64) []byte {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// writeChunks writes b in chunks of chunk bytes.
func writeChunks(w io.Writer, b []byte, chunk int) error {
	for len(b) > 0 {
		k := min(chunk, len(b))
		n, err := w.Write(b[:k])
		if err != nil {
			return err
		}
		if n != k {
			return io.ErrShortWrite
		}
		b = b[k:]
	}
	return nil
}

// readExactlyThenEOF reads len(want) bytes, compares them, and expects io.EOF.
func readExactlyThenEOF(r io.Reader, want []byte) error {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		return err
	}
	if !bytes.Equal(got, want) {
		return errors.New("data mismatch")
	}
	var one [1]byte
	n, err := r.Read(one[:])
	if n != 0 || err != io.EOF {
		return fmt.Errorf("expected io.EOF after the data, got n=%d err=%v", n, err)
	}
	return nil
}

// testCert is one self-signed certificate shared by the tests.
var testCert = sync.OnceValues(func() (struct {
	cert tls.Certificate
	pool *x509.CertPool
}, error) {
	cert, pool, err := SelfSigned()
	return struct {
		cert tls.Certificate
		pool *x509.CertPool
	}{cert, pool}, err
})

func mustCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	c, err := testCert()
	if err != nil {
		t.Fatal(err)
	}
	return c.cert, c.pool
}

// quicEnv is a listener on 127.0.0.1 with a self-signed certificate.
type quicEnv struct {
	pc   net.PacketConn
	ln   Listener
	pool *x509.CertPool
}

func newQUICEnv(t *testing.T, cfg QUICConfig) *quicEnv {
	t.Helper()
	cert, pool := mustCert(t)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	ln, err := Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &quicEnv{pc: pc, ln: ln, pool: pool}
}

func (e *quicEnv) addr() string { return e.ln.Addr().String() }

// connect dials the listener and returns both ends; they are closed when the
// test ends.
func (e *quicEnv) connect(t *testing.T, cfg QUICConfig) (client, server Conn) {
	t.Helper()
	ctx := testCtx(t)
	acc := async(func() result[Conn] {
		c, err := e.ln.Accept(ctx)
		return result[Conn]{c, err}
	})
	client, err := Dial(ctx, e.addr(), &tls.Config{RootCAs: e.pool}, cfg)
	if err != nil {
		t.Fatal("Dial:", err)
	}
	t.Cleanup(func() { client.CloseWithError(0, "") })
	r := await(t, acc, "Accept")
	if r.err != nil {
		t.Fatal("Accept:", r.err)
	}
	t.Cleanup(func() { r.v.CloseWithError(0, "") })
	return client, r.v
}

//go:noinline
func blockSendDatagram(c Conn, p []byte) error { return c.SendDatagram(p) }
