package yomo_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
)

// connectStreamFn connects a function with only a stream handler, closed
// when the test ends.
func connectStreamFn(t testing.TB, addr string, opts []yomo.ClientOption, name string, tag yomo.Tag, h yomo.StreamHandler) *yomo.StreamFunction {
	t.Helper()
	f := yomo.NewStreamFunction(name, addr, opts...)
	f.SetObserveDataTags(tag)
	f.SetStreamHandler(h)
	t.Cleanup(func() { f.Close() })
	if err := f.Connect(ctxT(t)); err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	return f
}

// writeBody writes size deterministic bytes (from seed) to w in chunks
// and returns their SHA-256. It stops at the first error.
func writeBody(w io.Writer, size int64, seed uint64) ([32]byte, error) {
	h := sha256.New()
	g := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 256<<10)
	for left := size; left > 0; {
		b := buf[:min(int64(len(buf)), left)]
		g.Read(b)
		h.Write(b)
		if _, err := w.Write(b); err != nil {
			return [32]byte{}, err
		}
		left -= int64(len(b))
	}
	return [32]byte(h.Sum(nil)), nil
}

// bodyResult is what a stream handler saw of a body.
type bodyResult struct {
	sum      [32]byte
	n        int64
	tag      yomo.Tag
	key, md  string
	err      error
	instance string
}

// hashingHandler hashes every body it gets and sends what it saw on out.
func hashingHandler(instance string, out chan<- bodyResult) yomo.StreamHandler {
	return func(r *yomo.StreamReader) error {
		h := sha256.New()
		n, err := io.Copy(h, r)
		md, _ := r.Metadata("name")
		out <- bodyResult{sum: [32]byte(h.Sum(nil)), n: n, tag: r.Tag(), key: r.Key(), md: md, err: err, instance: instance}
		return err
	}
}

func TestStreamBodyArrivesIntact(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		got := make(chan bodyResult, 1)
		connectStreamFn(t, tz.addr, tz.clients, "store", 0x20, hashingHandler("store", got))
		src := connectSource(t, tz, "src", tz.clients)

		size := int64(64 << 20)
		if raceEnabled && tr == quicTransport {
			size = 16 << 20 // QUIC under the race detector moves about 8 MB/s
		}
		w, err := src.OpenStreamMessage(ctxT(t), yomo.Message{Tag: 0x20, Key: "file-7",
			Metadata: map[string]string{"name": "video.mp4"}})
		if err != nil {
			t.Fatal(err)
		}
		want, err := writeBody(w, size, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		// Close returned nil: the handler has returned, its result is sent.
		r := <-got
		if r.err != nil || r.n != size || r.sum != want {
			t.Fatalf("handler read %d bytes (err %v), checksum equal: %v; want %d bytes", r.n, r.err, r.sum == want, size)
		}
		if r.tag != 0x20 || r.key != "file-7" || r.md != "video.mp4" {
			t.Fatalf("tag %#x key %q metadata %q", r.tag, r.key, r.md)
		}
		eventually(t, 2*time.Second, func() bool { return tz.Stats().Streams.Open == 0 }, func() string {
			return fmt.Sprintf("%+v", tz.Stats().Streams)
		})
		if s := tz.Stats().Streams; s.Delivered != 1 || s.Bytes != uint64(size) || s.Buffered != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestStreamSlowReaderBoundsWriter runs in a synctest bubble over the
// in-memory transport: synctest.Wait returns once every goroutine is
// blocked, so the writer has then gone as far ahead of the reader as flow
// control lets it. That lead must stay within the stream windows and the
// zipper's buffer, however large the body; and the zipper's buffered
// bytes within one buffer.
func TestStreamSlowReaderBoundsWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tz := newZipper(t, memTransport)
		const size, chunk = 16 << 20, 128 << 10
		permit, quit := make(chan struct{}), make(chan struct{})
		var read atomic.Int64
		connectStreamFn(t, tz.addr, tz.clients, "slow", 0x20, func(r *yomo.StreamReader) error {
			buf := make([]byte, chunk)
			for {
				select {
				case <-permit:
				case <-quit:
					return errors.New("the test ended")
				}
				n, err := io.ReadFull(r, buf)
				read.Add(int64(n))
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return nil
				}
				if err != nil {
					return err
				}
			}
		})
		t.Cleanup(func() { close(quit) }) // before the function closes: a failed test ends too
		src := connectSource(t, tz, "src", tz.clients)
		w, err := src.OpenStream(ctxT(t), 0x20)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { // owned by the test: ends when the body is written and closed
			_, err := writeBody(w, size, 2)
			done <- errors.Join(err, w.Close())
		}()
		// Two stream windows (source to zipper, zipper to function) and
		// the zipper's buffer.
		const bound = 2*transport.MemStreamWindow + 32<<10
		var maxAhead int64
		for {
			synctest.Wait()
			ahead := w.Written() - read.Load()
			maxAhead = max(maxAhead, ahead)
			if ahead > bound {
				t.Fatalf("the writer is %d bytes ahead of the reader, bound %d", ahead, bound)
			}
			if b := tz.Stats().Streams.Buffered; b > 32<<10 {
				t.Fatalf("the zipper buffers %d bytes of the body", b)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				if read.Load() != size {
					t.Fatalf("read %d of %d", read.Load(), size)
				}
				if maxAhead < transport.MemStreamWindow {
					t.Fatalf("the writer was at most %d bytes ahead: the path never filled", maxAhead)
				}
				return
			default:
			}
			permit <- struct{}{}
		}
	})
}

// writeUntilError writes up to limit bytes to w and returns the first
// error (nil when all went).
func writeUntilError(w *yomo.StreamWriter, limit int) error {
	buf := make([]byte, 64<<10)
	for n := 0; n < limit; n += len(buf) {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func TestStreamReaderStopsTheWriter(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		// A reader that returns after 1 MiB, one that closes its reader,
		// one whose handler fails after reading it all, and a function
		// with no stream handler.
		connectStreamFn(t, tz.addr, tz.clients, "early", 1, func(r *yomo.StreamReader) error {
			_, err := io.ReadFull(r, make([]byte, 1<<20))
			return err
		})
		connectStreamFn(t, tz.addr, tz.clients, "closes", 2, func(r *yomo.StreamReader) error {
			io.ReadFull(r, make([]byte, 1<<10))
			r.Close()
			if _, err := r.Read(make([]byte, 1)); !errors.Is(err, yomo.ErrStreamClosed) {
				t.Errorf("Read after Close: %v", err)
			}
			return nil
		})
		connectStreamFn(t, tz.addr, tz.clients, "fails", 3, func(r *yomo.StreamReader) error {
			io.Copy(io.Discard, r)
			return errors.New("disk full")
		})
		connectFn(t, tz, "frames-only", tz.clients, []yomo.Tag{4}, func(yomo.Context) {})
		src := connectSource(t, tz, "src", tz.clients)

		for _, c := range []struct {
			tag  yomo.Tag
			want error
		}{{1, yomo.ErrStreamRefused}, {2, yomo.ErrStreamRefused}, {4, yomo.ErrStreamRefused}} {
			w, err := src.OpenStream(ctxT(t), c.tag)
			if err != nil {
				// A receiver that refuses at once may do so before the
				// zipper's routed byte arrives.
				if !errors.Is(err, c.want) {
					t.Errorf("tag %d: OpenStream: %v, want nil or %v", c.tag, err, c.want)
				}
				continue
			}
			// Far more than the windows hold: the writer must be stopped.
			if err := writeUntilError(w, 256<<20); !errors.Is(err, c.want) {
				t.Errorf("tag %d: Write: %v, want %v", c.tag, err, c.want)
			}
			if err := w.Close(); !errors.Is(err, c.want) {
				t.Errorf("tag %d: Close: %v, want %v", c.tag, err, c.want)
			}
		}
		w, err := src.OpenStream(ctxT(t), 3)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeUntilError(w, 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); !errors.Is(err, yomo.ErrStreamFailed) {
			t.Errorf("Close of a body whose handler failed: %v", err)
		}
		eventually(t, 2*time.Second, func() bool { return tz.Stats().Streams.Refused == 4 }, func() string {
			return fmt.Sprintf("%+v", tz.Stats().Streams)
		})
	})
}

func TestStreamWriterAbortReachesTheReader(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		got := make(chan bodyResult, 2)
		// The handler says when it has the body's first byte: a body
		// aborted before its header reached the function is reset there
		// and never handed to the handler, so the test aborts only a body
		// being read.
		started := make(chan struct{}, 2)
		hash := hashingHandler("store", got)
		connectStreamFn(t, tz.addr, tz.clients, "store", 0x20, func(r *yomo.StreamReader) error {
			var first [1]byte
			if _, err := io.ReadFull(r, first[:]); err != nil {
				got <- bodyResult{err: err}
				return err
			}
			started <- struct{}{}
			return hash(r)
		})
		src := connectSource(t, tz, "src", tz.clients)

		// CloseWithError.
		w, err := src.OpenStream(ctxT(t), 0x20)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeUntilError(w, 1<<20); err != nil {
			t.Fatal(err)
		}
		<-started
		cause := errors.New("upload cancelled")
		w.CloseWithError(cause)
		if r := <-got; !errors.Is(r.err, yomo.ErrStreamAborted) {
			t.Fatalf("reader of an aborted body: %d bytes, err %v", r.n, r.err)
		}
		if err := w.Close(); !errors.Is(err, yomo.ErrStreamAborted) || !errors.Is(err, cause) {
			t.Fatalf("Close after CloseWithError: %v", err)
		}

		// The context ends.
		ctx, cancel := context.WithCancel(ctxT(t))
		w, err = src.OpenStream(ctx, 0x20)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeUntilError(w, 1<<20); err != nil {
			t.Fatal(err)
		}
		<-started
		cancel()
		if r := <-got; !errors.Is(r.err, yomo.ErrStreamAborted) {
			t.Fatalf("reader of a body whose context ended: %d bytes, err %v", r.n, r.err)
		}
		if _, err := w.Write([]byte("more")); !errors.Is(err, yomo.ErrStreamAborted) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Write after the context ended: %v", err)
		}
		eventually(t, 2*time.Second, func() bool { return tz.Stats().Streams.Aborted == 2 }, func() string {
			return fmt.Sprintf("%+v", tz.Stats().Streams)
		})
	})
}

func TestStreamNoResponders(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		src := connectSource(t, tz, "src", tz.clients)
		if _, err := src.OpenStream(ctxT(t), 0x99); !errors.Is(err, yomo.ErrNoResponders) {
			t.Fatalf("OpenStream of an unobserved tag: %v", err)
		}
		if s := tz.Stats().Streams; s.Unroutable != 1 {
			t.Fatalf("stats %+v", s)
		}
		if _, err := src.OpenStreamMessage(ctxT(t), yomo.Message{Tag: 1, Data: []byte("x")}); err == nil {
			t.Fatal("OpenStreamMessage with Data: no error")
		}
	})
}

func TestStreamAcrossMesh(t *testing.T) {
	t.Parallel()
	n := newMeshNet(t, "a", "b")
	n.start("a", []mesh.Peer{n.peer("b")})
	n.start("b", nil)
	got := make(chan bodyResult, 1)
	connectStreamFn(t, n.addrs["b"], n.client, "store", 0x20, hashingHandler("store", got))
	connectStreamFn(t, n.addrs["b"], n.client, "early", 0x21, func(r *yomo.StreamReader) error {
		_, err := io.ReadFull(r, make([]byte, 1<<20))
		return err
	})
	n.waitRoute("a", 0x20, "store")
	n.waitRoute("a", 0x21, "early")
	src := n.source("a", "src")
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	size := int64(16 << 20)
	if raceEnabled {
		size = 4 << 20
	}
	w, err := src.OpenStreamMessage(ctxT(t), yomo.Message{Tag: 0x20, Metadata: map[string]string{"name": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := writeBody(w, size, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if r := <-got; r.err != nil || r.n != size || r.sum != want || r.md != "x" {
		t.Fatalf("across the mesh: %d bytes, err %v, checksum equal %v, metadata %q", r.n, r.err, r.sum == want, r.md)
	}

	// A reader that stops, two hops away.
	w, err = src.OpenStream(ctxT(t), 0x21)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeUntilError(w, 512<<20); !errors.Is(err, yomo.ErrStreamRefused) {
		t.Fatalf("Write to a reader that stopped across the mesh: %v", err)
	}
	// A writer that aborts, two hops away.
	w, err = src.OpenStream(ctxT(t), 0x20)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeUntilError(w, 1<<20); err != nil {
		t.Fatal(err)
	}
	w.CloseWithError(errors.New("stop"))
	if r := <-got; !errors.Is(r.err, yomo.ErrStreamAborted) {
		t.Fatalf("reader of a body aborted across the mesh: %v", r.err)
	}
	for _, name := range []string{"a", "b"} {
		z := n.zippers[name]
		eventually(t, 2*time.Second, func() bool {
			s := z.Stats().Streams
			return s.Delivered == 1 && s.Refused == 1 && s.Aborted == 1 && s.Open == 0
		}, func() string { return fmt.Sprintf("zipper %s: %+v", name, z.Stats().Streams) })
	}
}

// TestStreamsConcurrentWithFrames runs many bodies at once, one of them
// stuck at a reader that does not read, while frames flow on another
// tag: the frames all arrive while the stuck body holds its windows.
func TestStreamsConcurrentWithFrames(t *testing.T) {
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr)
		const bodies = 8
		size := int64(2 << 20)
		if raceEnabled && tr == quicTransport {
			size = 512 << 10
		}
		got := make(chan bodyResult, bodies)
		release := make(chan struct{})
		unblock := sync.OnceFunc(func() { close(release) })
		for i := range 2 { // two instances share the bodies
			connectStreamFn(t, tz.addr, tz.clients, "store", 0x20, hashingHandler(fmt.Sprint(i), got))
		}
		connectStreamFn(t, tz.addr, tz.clients, "stuck", 0x21, func(r *yomo.StreamReader) error {
			<-release
			_, err := io.Copy(io.Discard, r)
			return err
		})
		t.Cleanup(unblock) // before the function closes: a failed test ends too
		var frames recorder
		connectFn(t, tz, "frames", tz.clients, []yomo.Tag{0x30}, func(c yomo.Context) { frames.add(c.Tag(), c.Data()) })
		src := connectSource(t, tz, "src", tz.clients)

		// The stuck body: written until flow control stops its writer.
		stuck, err := src.OpenStream(ctxT(t), 0x21)
		if err != nil {
			t.Fatal(err)
		}
		stuckDone := make(chan error, 1)
		go func() { // owned by the test: ends once release lets the reader read
			_, err := writeBody(stuck, 16<<20, 9) // more than the windows on its path take
			stuckDone <- errors.Join(err, stuck.Close())
		}()

		var wg sync.WaitGroup
		sums := make(map[[32]byte]bool)
		var mu sync.Mutex
		errc := make(chan error, bodies)
		for i := range bodies {
			wg.Add(1)
			go func() { // owned by the test (wg)
				defer wg.Done()
				w, err := src.OpenStream(ctxT(t), 0x20)
				if err != nil {
					errc <- err
					return
				}
				sum, err := writeBody(w, size, uint64(10+i))
				if err == nil {
					err = w.Close()
				}
				mu.Lock()
				sums[sum] = true
				mu.Unlock()
				errc <- err
			}()
		}
		const count = 2000
		for i := range count {
			if err := src.Write(0x30, []byte(fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 5*time.Second, func() bool { return frames.len() == count }, func() string {
			return fmt.Sprintf("%d of %d frames arrived while a body is stuck", frames.len(), count)
		})
		wg.Wait()
		for range bodies {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		instances := map[string]int{}
		for range bodies {
			r := <-got
			if r.err != nil || r.n != size || !sums[r.sum] {
				t.Fatalf("a body: %d bytes, err %v, checksum known %v", r.n, r.err, sums[r.sum])
			}
			instances[r.instance]++
		}
		if len(instances) != 2 {
			t.Errorf("bodies per instance: %v, want both instances used", instances)
		}
		select {
		case err := <-stuckDone:
			t.Fatalf("the stuck body finished before its reader read: %v", err)
		default:
		}
		unblock()
		if err := <-stuckDone; err != nil {
			t.Fatal(err)
		}
	})
}

// TestStreamStalledBodiesLeaveRoomForFrames stalls four bodies from one
// Source at a reader that does not read, until their writers block, then
// writes frames on the same connection: QUIC's connection window is
// shared by every stream of the connection, and the body credit keeps
// the stalled bodies from taking all of it (without it, two stalled
// bodies stopped the frames). QUIC only: the in-memory transport has no
// connection window.
func TestStreamStalledBodiesLeaveRoomForFrames(t *testing.T) {
	t.Parallel()
	tz := newZipper(t, quicTransport)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	connectStreamFn(t, tz.addr, tz.clients, "stuck", 0x21, func(r *yomo.StreamReader) error {
		<-release
		_, err := io.Copy(io.Discard, r)
		return err
	})
	t.Cleanup(unblock) // before the function closes: a failed test ends too
	var frames recorder
	connectFn(t, tz, "frames", tz.clients, []yomo.Tag{0x30}, func(c yomo.Context) { frames.add(c.Tag(), c.Data()) })
	src := connectSource(t, tz, "src", tz.clients)

	const stalled = 4
	ws := make([]*yomo.StreamWriter, stalled)
	done := make(chan error, stalled)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // -race on a loaded machine moves a few MB/s
	defer cancel()
	for i := range ws {
		w, err := src.OpenStream(ctx, 0x21)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = w
		go func() { // owned by the test: ends once release lets the reader read
			_, err := writeBody(w, 3<<20, uint64(i)) // 12 MiB in all: far more than the windows take
			done <- errors.Join(err, w.Close())
		}()
	}
	written := func() (n int64) {
		for _, w := range ws {
			n += w.Written()
		}
		return n
	}
	// Until the writers are blocked: what they wrote stops growing (a
	// pause taken for a block only weakens the test, it cannot fail it).
	var last int64
	eventually(t, 5*time.Second, func() bool {
		time.Sleep(100 * time.Millisecond) // the poll interval, not a synchronisation
		cur := written()
		stable := cur == last && cur >= 2<<20
		last = cur
		return stable
	}, func() string { return fmt.Sprintf("the stalled bodies wrote %d bytes", written()) })
	const count = 2000
	for i := range count {
		if err := src.Write(0x30, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, func() bool { return frames.len() == count }, func() string {
		return fmt.Sprintf("%d of %d frames arrived next to %d stalled bodies (%d bytes written)", frames.len(), count, stalled, written())
	})
	unblock()
	for range stalled {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
