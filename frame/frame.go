package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Tag identifies the kind of data a data frame carries. Functions announce
// the tags they observe in their handshake.
type Tag = uint32

const (
	// HeaderSize is the size of a frame header: type (1 byte) and body
	// length (4 bytes, big endian).
	HeaderSize = 5
	// DefaultMaxSize is the default limit on a frame's body length.
	DefaultMaxSize = 4 << 20
	// MaxControlSize bounds the body of every frame other than data frames,
	// independently of the limit on data frames.
	MaxControlSize = 64 << 10
	// ProtocolVersion is the version a client announces in its handshake.
	// Version 2 has the compact data frame body (spec.md, section 5); a
	// zipper refuses a handshake of any other version (RejectVersion).
	ProtocolVersion = 2
)

// Errors. Decoding errors wrap one of these; test with errors.Is.
var (
	// ErrFrameTooLarge: a frame's declared body length exceeds the limit.
	// Reported before anything is allocated for the body.
	ErrFrameTooLarge = errors.New("frame: too large")
	// ErrUnknownType: the header names a type this version does not know.
	ErrUnknownType = errors.New("frame: unknown type")
	// ErrMalformed: the body is not a valid encoding of its frame type.
	ErrMalformed = errors.New("frame: malformed")
)

// SizeError reports a frame whose length exceeds the limit.
type SizeError struct {
	Type Type // the frame's type
	Size int  // declared (or attempted) body length
	Max  int  // the limit that applied
}

// Error describes the oversized frame.
func (e *SizeError) Error() string {
	return fmt.Sprintf("frame: %s frame of %d bytes exceeds the limit of %d", e.Type, e.Size, e.Max)
}

// Is makes errors.Is(err, ErrFrameTooLarge) true.
func (e *SizeError) Is(target error) bool { return target == ErrFrameTooLarge }

// TypeError reports an unknown frame type.
type TypeError struct {
	Type Type // the type byte that was read
}

// Error describes the unknown type.
func (e *TypeError) Error() string { return fmt.Sprintf("frame: unknown type 0x%02x", uint8(e.Type)) }

// Is makes errors.Is(err, ErrUnknownType) true.
func (e *TypeError) Is(target error) bool { return target == ErrUnknownType }

func malformed(t Type, what string) error {
	return fmt.Errorf("%w %s frame: %s", ErrMalformed, t, what)
}

// AppendHeader appends a frame header for a body of n bytes. n must be in
// [0, 1<<32); the length field holds its low 32 bits.
func AppendHeader(dst []byte, t Type, n int) []byte {
	return append(dst, byte(t), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// ParseHeader parses the frame header at the start of h and checks it: the
// type must be known, a data frame's body length must not exceed max, and
// any other frame's body length must not exceed MaxControlSize. It returns
// the type and the declared body length; on a *TypeError or *SizeError
// both are still reported. An h shorter than HeaderSize gives
// io.ErrUnexpectedEOF.
func ParseHeader(h []byte, max int) (Type, int, error) {
	if len(h) < HeaderSize {
		return 0, 0, io.ErrUnexpectedEOF
	}
	t := Type(h[0])
	n32 := binary.BigEndian.Uint32(h[1:HeaderSize])
	// Compare in 64 bits: on 32-bit platforms int(n32) may be negative.
	n := int(n32)
	if uint64(n32) > uint64(maxInt) {
		n = maxInt
	}
	d := describe(t)
	if d == nil {
		return t, n, &TypeError{Type: t}
	}
	limit := d.limit(max)
	if limit < 0 || uint64(n32) > uint64(limit) {
		return t, n, &SizeError{Type: t, Size: n, Max: limit}
	}
	return t, n, nil
}

const maxInt = int(^uint(0) >> 1)
