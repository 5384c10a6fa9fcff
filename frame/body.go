package frame

import (
	"errors"
	"fmt"
	"io"
)

// A body stream (spec.md §9) carries one body of any size on a stream of
// its own: a Body frame first, then the body's bytes, unframed, to the
// end of the stream. The Body frame's body is a data frame body (§5)
// whose payload is empty.

// AppendBody appends the Body frame that opens a body stream: d encoded
// as a data frame body without its payload (d.Payload is ignored).
func AppendBody(dst []byte, d *Data) []byte {
	e := *d
	e.Payload = nil
	n := len(dst)
	dst = AppendData(dst, &e)
	dst[n] = byte(TypeBody)
	return dst
}

// DecodeBody parses the body of a Body frame into d, which aliases body
// afterwards. It accepts what Data.Decode accepts, except a payload. An
// error wraps ErrMalformed.
func (d *Data) DecodeBody(body []byte) error {
	if err := d.Decode(body); err != nil {
		return err
	}
	if len(d.Payload) > 0 {
		return malformed(TypeBody, "a payload after the fields")
	}
	return nil
}

// ReadBody reads the Body frame that opens a body stream from r and
// decodes it into d. It reads exactly the frame, nothing of the body's
// bytes after it, and allocates at most the frame's declared length
// (MaxEnvelope at most, checked before). Errors: io.EOF when the stream
// ended before any byte, io.ErrUnexpectedEOF inside the frame, a
// *TypeError or *SizeError for a bad header, an error wrapping
// ErrMalformed for another frame type or a bad body, or r's error.
func ReadBody(r io.Reader, d *Data) error {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	t, n, err := ParseHeader(h[:], MaxEnvelope)
	if err != nil {
		return err
	}
	if t != TypeBody {
		return fmt.Errorf("%w: a %s frame opens a body stream", ErrMalformed, t)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	return d.DecodeBody(body)
}

// StreamCode is the application error code with which a side resets or
// stops a body stream (spec.md §9.2): why the body did not go through.
type StreamCode uint64

// Stream codes.
const (
	StreamNoResponders StreamCode = 0x1 // nothing observes the body's tag
	StreamRefused      StreamCode = 0x2 // a receiver stopped reading before the end
	StreamAborted      StreamCode = 0x3 // the writer abandoned the body
	StreamLost         StreamCode = 0x4 // a connection on the body's path closed
	StreamLimit        StreamCode = 0x5 // too many bodies at once on a connection
	StreamFailed       StreamCode = 0x6 // the receiving handler returned an error
)

// streamNames holds the name of every stream code; StreamCode.String and
// spec.md's table of stream codes derive from it.
var streamNames = [...]string{
	StreamNoResponders: "no_responders",
	StreamRefused:      "refused",
	StreamAborted:      "aborted",
	StreamLost:         "lost",
	StreamLimit:        "limit",
	StreamFailed:       "failed",
}

// Known reports whether c is a stream code of this protocol version.
func (c StreamCode) Known() bool { return c < StreamCode(len(streamNames)) && streamNames[c] != "" }

// String returns the name of c, or "stream(0xN)" for an unknown code.
func (c StreamCode) String() string {
	if c.Known() {
		return streamNames[c]
	}
	return fmt.Sprintf("stream(%#x)", uint64(c))
}
