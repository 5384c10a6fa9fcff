package frame

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// checkBodyFrame checks a Body frame's body: it decodes or fails with
// ErrMalformed, and what decodes survives a round trip through AppendBody
// and ReadBody.
func checkBodyFrame(t *testing.T, body []byte) {
	t.Helper()
	var d Data
	if err := d.DecodeBody(body); err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("DecodeBody: %v", err)
		}
		return
	}
	b := AppendBody(nil, &d)
	var d2 Data
	if err := ReadBody(bytes.NewReader(b), &d2); err != nil {
		t.Fatalf("re-encoded body frame %x: %v", b, err)
	}
	if !dataEqual(&d, &d2) {
		t.Fatalf("round trip: got %+v, want %+v", d2, d)
	}
}

// FuzzReadBody feeds ReadBody arbitrary streams: it returns one of its
// documented errors or a frame that round-trips, never reads past the
// frame, and never allocates more than MaxEnvelope for it.
func FuzzReadBody(f *testing.F) {
	for _, c := range bodyCases {
		b := readGolden(f, c.name)
		f.Add(b)
		f.Add(append(b, "body bytes"...))
	}
	f.Add(readGolden(f, "data-minimal"))
	f.Add([]byte{byte(TypeBody), 0, 1, 0, 1}) // declares MaxEnvelope + 1
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		var d Data
		err := ReadBody(r, &d)
		if err != nil {
			var te *TypeError
			var se *SizeError
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &te) && !errors.As(err, &se) &&
				!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("ReadBody: unexpected error %v", err)
			}
			return
		}
		n := len(in) - r.Len() // the frame; the rest is the body's
		if _, l, _ := ParseHeader(in, 0); n != HeaderSize+l {
			t.Fatalf("read %d bytes of a frame of %d", n, HeaderSize+l)
		}
		checkBodyFrame(t, in[HeaderSize:n])
	})
}

func TestReadBodyRejects(t *testing.T) {
	valid := AppendBody(nil, &Data{Tag: 7, Target: []byte("t")})
	withPayload := AppendData(nil, &Data{Tag: 7, Payload: []byte("x")})
	withPayload[0] = byte(TypeBody)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty stream", nil, io.EOF},
		{"truncated header", valid[:3], io.ErrUnexpectedEOF},
		{"truncated body", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"a data frame", AppendData(nil, &Data{Tag: 7}), ErrMalformed},
		{"a payload", withPayload, ErrMalformed},
		{"too large", []byte{byte(TypeBody), 0, 1, 0, 1}, ErrFrameTooLarge},
		{"unknown type", []byte{0x12, 0, 0, 0, 1, 0}, ErrUnknownType},
		{"empty body", []byte{byte(TypeBody), 0, 0, 0, 0}, ErrMalformed},
	}
	for _, tt := range tests {
		var d Data
		if err := ReadBody(bytes.NewReader(tt.in), &d); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	var d Data
	r := bytes.NewReader(append(valid, "rest"...))
	if err := ReadBody(r, &d); err != nil || d.Tag != 7 || string(d.Target) != "t" || r.Len() != 4 {
		t.Errorf("valid: %v %+v, %d bytes left", err, d, r.Len())
	}
}
