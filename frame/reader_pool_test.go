package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// A control stream's Reader gives its buffer back while idle and gets one
// again for the next frame: frames split anywhere, bodies larger than the
// buffer, and the end of the stream arriving with the last bytes all read
// as with an owned buffer.
func TestControlReaderReleasesBuffer(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i, n := range []int{0, 1, 58, 59, 60, 1000, ControlBufferSize, 3 * ControlBufferSize, 7} {
		body := bytes.Repeat([]byte{byte(i + 1)}, n)
		stream = append(AppendHeader(stream, TypeHandshakeAck, n), body...)
		want = append(want, body)
	}
	for _, tc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(stream) }},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream)) }},
		{"EOF with the data", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd := NewReaderSize(tc.r(), MaxControlSize, ControlBufferSize)
			for i, w := range want {
				typ, body, err := rd.Next()
				if err != nil || typ != TypeHandshakeAck || !bytes.Equal(body, w) {
					t.Fatalf("frame %d: %v %d bytes %v; want %d bytes", i, typ, len(body), err, len(w))
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
