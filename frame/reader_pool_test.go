package frame

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"
	"time"
)

// A control stream's Reader gives its buffer back while idle and gets one
// again for the next frame: frames split anywhere, bodies larger than the
// buffer, and the end of the stream arriving with the last bytes all read
// as with an owned buffer.
func TestControlReaderReleasesBuffer(t *testing.T) {
	stream := readsEveryFrame(t, TypeHandshakeAck, []int{0, 1, 58, 59, 60, 1000, ControlBufferSize, 3 * ControlBufferSize, 7},
		func(r io.Reader) *Reader { return NewReaderSize(r, MaxControlSize, ControlBufferSize) })
	// Truncated inside a frame: not a clean end.
	rd := NewReaderSize(bytes.NewReader(stream[:len(stream)-3]), MaxControlSize, ControlBufferSize)
	var err error
	for err == nil {
		_, _, err = rd.Next()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated stream: %v, want io.ErrUnexpectedEOF", err)
	}
}

// countingReader counts the Reads that reach the stream.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(b []byte) (int, error) {
	c.reads++
	return c.r.Read(b)
}

// Ready says true exactly when the next Next returns without reading the
// stream: frames of every size (some longer than the read buffer), the
// stream arriving whole, in small pieces and in halves, for data and
// control Readers.
func TestReaderReady(t *testing.T) {
	var stream []byte
	var sizes []int
	for i := range 400 {
		n := (i * 37) % 300
		if i%50 == 7 {
			n = readBufferSize + i // longer than the buffer: never ready
		}
		sizes = append(sizes, n)
		stream = append(AppendHeader(stream, TypeData, n), bytes.Repeat([]byte{byte(i)}, n)...)
	}
	for _, tc := range []struct {
		name string
		r    func() io.Reader
		buf  int
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }, readBufferSize},
		{"97-byte reads", func() io.Reader { return &trickleReader{b: stream, n: 97} }, readBufferSize},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }, readBufferSize},
		{"control buffer", func() io.Reader { return &trickleReader{b: stream, n: 700} }, ControlBufferSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingReader{r: tc.r()}
			rd := NewReaderSize(src, DefaultMaxSize, tc.buf)
			if rd.Ready() {
				t.Fatal("ready before any read")
			}
			readies := 0
			for i, n := range sizes {
				ready, before := rd.Ready(), src.reads
				typ, body, err := rd.Next()
				if err != nil || typ != TypeData || len(body) != n {
					t.Fatalf("frame %d: %v %d bytes %v; want %d bytes", i, typ, len(body), err, n)
				}
				if read := src.reads > before; ready == read {
					t.Fatalf("frame %d (%d bytes): Ready said %v, and Next read the stream: %v", i, n, ready, read)
				}
				if ready {
					readies++
				}
			}
			if rd.Ready() {
				t.Fatal("ready at the end of the stream")
			}
			if tc.name == "whole" && readies < len(sizes)/2 {
				t.Fatalf("only %d of %d frames were ready", readies, len(sizes))
			}
		})
	}
}

// chunkReader returns one chunk per Read (never more than asked for) and
// records how large a buffer each Read was given: 64 bytes is a pooled
// Reader waiting without its buffer, more is a wait in the buffer.
type chunkReader struct {
	chunks [][]byte
	sizes  []int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	c.sizes = append(c.sizes, len(b))
	n := copy(b, c.chunks[0])
	if c.chunks[0] = c.chunks[0][n:]; len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// fakeWaits makes the Reader's waits take the given durations, in order
// (then short ones), for the rest of the test.
func fakeWaits(t *testing.T, d ...time.Duration) {
	t.Cleanup(func() { sinceWait = time.Since })
	sinceWait = func(time.Time) time.Duration {
		if len(d) == 0 {
			return 0
		}
		w := d[0]
		d = d[1:]
		return w
	}
}

// A data stream's Reader keeps its buffer across the next wait only when
// the last wait was short (a busy stream): after a long one it gives the
// buffer back and waits with its own 64 bytes, and at the end of the
// stream it holds none.
func TestDataReaderKeepsBufferOnlyWhileBusy(t *testing.T) {
	long, short := time.Second, time.Microsecond
	fakeWaits(t, short, short, short, long, short)
	src := &chunkReader{}
	for i := range 6 { // a frame per Read
		src.chunks = append(src.chunks, append(AppendHeader(nil, TypeData, 10+i), bytes.Repeat([]byte{byte(i)}, 10+i)...))
	}
	rd := NewReader(src, DefaultMaxSize)
	for i := range 6 {
		typ, body, err := rd.Next()
		if err != nil || typ != TypeData || len(body) != 10+i || body[0] != byte(i) {
			t.Fatalf("frame %d: %v %d bytes %v", i, typ, len(body), err)
		}
	}
	if _, _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
	// The waits: the first without a buffer (none yet), and short, but
	// the first says nothing of the stream's pace: the next without; short,
	// short: the next two in the buffer; long: the next without; short:
	// the last wait (EOF) in the buffer.
	want := []int{64, 64, readBufferSize, readBufferSize, 64, readBufferSize}
	if !slices.Equal(src.sizes, want) {
		t.Fatalf("the Reader waited with buffers of %v bytes, want %v", src.sizes, want)
	}
	if rd.br != nil {
		t.Fatal("the Reader holds a buffer at the end of its stream")
	}
}

// A slow data stream's Reader, which gives its buffer back at every wait,
// reads every frame as one that keeps it: frames split anywhere, bodies
// larger than the buffer, the end of the stream arriving with its last
// bytes.
func TestSlowDataReaderReadsEveryFrame(t *testing.T) {
	sinceWait = func(time.Time) time.Duration { return time.Hour }
	t.Cleanup(func() { sinceWait = time.Since })
	readsEveryFrame(t, TypeData, []int{0, 1, 58, 59, 60, 1000, readBufferSize - 1, readBufferSize, 3 * readBufferSize, 7},
		func(r io.Reader) *Reader { return NewReader(r, DefaultMaxSize) })
}

// readsEveryFrame writes frames of type typ with bodies of the given
// sizes into a stream and checks that a pooled Reader made by open reads
// each whole, then io.EOF, holding no buffer at the end, whether the
// stream arrives whole, a byte at a time, in halves, in 97-byte reads or
// with its end of stream along with its last bytes. It returns the stream.
func readsEveryFrame(t *testing.T, typ Type, sizes []int, open func(io.Reader) *Reader) []byte {
	t.Helper()
	var stream []byte
	var want [][]byte
	for i, n := range sizes {
		body := bytes.Repeat([]byte{byte(i + 1)}, n)
		stream = append(AppendHeader(stream, typ, n), body...)
		want = append(want, body)
	}
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"97-byte reads", func() io.Reader { return &trickleReader{b: stream, n: 97} }},
		{"EOF with the data", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd := open(tc.r())
			for i, w := range want {
				got, body, err := rd.Next()
				if err != nil || got != typ || !bytes.Equal(body, w) {
					t.Fatalf("frame %d: %v %d bytes %v; want %d bytes", i, got, len(body), err, len(w))
				}
			}
			if _, _, err := rd.Next(); !errors.Is(err, io.EOF) {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
			if rd.br != nil {
				t.Fatal("the Reader holds a buffer at the end of its stream")
			}
		})
	}
	return stream
}
