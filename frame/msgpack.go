package frame

import (
	"encoding/binary"
	"errors"
	"math"
)

// A minimal msgpack reader and writer for the hot path (data frames), so
// that encoding and decoding allocate nothing. Control frames use the
// msgpack library (control.go). The formats are standard msgpack; the
// library decodes what these functions write and vice versa (tested).

var errShort = errors.New("truncated")

func appendStr(dst []byte, s []byte) []byte {
	n := len(s)
	switch {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}

func strSize(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

// readLen reads a big-endian length of size bytes.
func readLen(b []byte, size int) (int, []byte, error) {
	if len(b) < size {
		return 0, nil, errShort
	}
	var n uint64
	switch size {
	case 1:
		n = uint64(b[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b))
	}
	if n > uint64(maxInt) { // only on 32-bit platforms
		return 0, nil, errShort
	}
	return int(n), b[size:], nil
}

func readArrayLen(b []byte) (int, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errShort
	}
	c := b[0]
	switch {
	case c&0xf0 == 0x90:
		return int(c & 0x0f), b[1:], nil
	case c == 0xdc:
		return readLen(b[1:], 2)
	case c == 0xdd:
		return readLen(b[1:], 4)
	}
	return 0, nil, errors.New("want an array")
}

// readUint reads a non-negative integer. The encoder writes uint 32 and
// uint 64, but any integer format is accepted (other encoders use the
// shortest one, some use the signed formats for non-negative values); a
// negative value is an error.
func readUint(b []byte) (uint64, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errShort
	}
	c := b[0]
	b = b[1:]
	var size int
	signed := false
	switch {
	case c <= 0x7f: // positive fixint
		return uint64(c), b, nil
	case c >= 0xe0: // negative fixint
		return 0, nil, errNegative
	case c == 0xcc:
		size = 1
	case c == 0xcd:
		size = 2
	case c == 0xce:
		size = 4
	case c == 0xcf:
		size = 8
	case c == 0xd0:
		size, signed = 1, true
	case c == 0xd1:
		size, signed = 2, true
	case c == 0xd2:
		size, signed = 4, true
	case c == 0xd3:
		size, signed = 8, true
	default:
		return 0, nil, errors.New("want an unsigned integer")
	}
	if len(b) < size {
		return 0, nil, errShort
	}
	var v uint64
	switch size {
	case 1:
		v = uint64(b[0])
	case 2:
		v = uint64(binary.BigEndian.Uint16(b))
	case 4:
		v = uint64(binary.BigEndian.Uint32(b))
	case 8:
		v = binary.BigEndian.Uint64(b)
	}
	// The sign bit of a signed format is the top bit of its big-endian
	// value.
	if signed && v>>(8*size-1) != 0 {
		return 0, nil, errNegative
	}
	return v, b[size:], nil
}

var errNegative = errors.New("negative integer")

// readBytes reads a str, a bin or nil (as empty) and returns its content,
// aliasing b.
func readBytes(b []byte) ([]byte, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errShort
	}
	if b[0] == 0xc0 {
		return nil, b[1:], nil
	}
	return readStr(b)
}

// readStr reads a str or a bin (not nil) and returns its content, aliasing
// b.
func readStr(b []byte) ([]byte, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errShort
	}
	c := b[0]
	var n int
	var err error
	rest := b[1:]
	switch {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n, rest, err = readLen(rest, 1)
	case c == 0xda || c == 0xc5:
		n, rest, err = readLen(rest, 2)
	case c == 0xdb || c == 0xc6:
		n, rest, err = readLen(rest, 4)
	default:
		return nil, nil, errNotStr
	}
	if err != nil {
		return nil, nil, err
	}
	if n > len(rest) {
		return nil, nil, errShort
	}
	return rest[:n:n], rest[n:], nil
}

var errNotStr = errors.New("want a string or binary")

func readMapLen(b []byte) (int, []byte, error) {
	if len(b) == 0 {
		return 0, nil, errShort
	}
	c := b[0]
	switch {
	case c == 0xc0:
		return 0, b[1:], nil
	case c&0xf0 == 0x80:
		return int(c & 0x0f), b[1:], nil
	case c == 0xde:
		return readLen(b[1:], 2)
	case c == 0xdf:
		return readLen(b[1:], 4)
	}
	return 0, nil, errors.New("want a map")
}

// maxDepth bounds the nesting of arrays and maps skipValue accepts.
const maxDepth = 16

// skipValue skips one msgpack value of any type, checking its structure:
// every declared length must be backed by the bytes that follow, so a
// value that passes holds at most len(b) elements in all. depth is the
// current nesting level; values nested deeper than maxDepth are refused.
func skipValue(b []byte, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deeply")
	}
	if len(b) == 0 {
		return nil, errShort
	}
	c := b[0]
	var err error
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return b[1:], nil
	case c&0xf0 == 0x80 || c == 0xde || c == 0xdf:
		var n int
		n, b, err = readMapLen(b)
		if err != nil {
			return nil, err
		}
		if 2*uint64(n) > uint64(len(b)) { // every entry needs at least 2 bytes
			return nil, errShort
		}
		for i := 0; i < 2*n; i++ {
			if b, err = skipValue(b, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case c&0xf0 == 0x90 || c == 0xdc || c == 0xdd:
		var n int
		n, b, err = readArrayLen(b)
		if err != nil {
			return nil, err
		}
		if n > len(b) {
			return nil, errShort
		}
		for i := 0; i < n; i++ {
			if b, err = skipValue(b, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case c&0xe0 == 0xa0 || c == 0xd9 || c == 0xda || c == 0xdb || c == 0xc4 || c == 0xc5 || c == 0xc6:
		_, b, err = readBytes(b)
		return b, err
	}
	var size int
	switch c {
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2, 0xca:
		size = 4
	case 0xcf, 0xd3, 0xcb:
		size = 8
	case 0xd4:
		size = 2
	case 0xd5:
		size = 3
	case 0xd6:
		size = 5
	case 0xd7:
		size = 9
	case 0xd8:
		size = 17
	case 0xc7, 0xc8, 0xc9: // ext 8/16/32: length, type byte, data
		lsize := 1 << (c - 0xc7) // 1, 2, 4
		var n int
		var rest []byte
		n, rest, err = readLen(b[1:], lsize)
		if err != nil {
			return nil, err
		}
		if len(rest) < n+1 {
			return nil, errShort
		}
		return rest[n+1:], nil
	default: // 0xc1 is never used
		return nil, errors.New("invalid msgpack byte")
	}
	if len(b) < 1+size {
		return nil, errShort
	}
	return b[1+size:], nil
}

// appendString is appendStr for a string, without converting it.
func appendString(dst []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		dst = append(dst, 0xa0|byte(n))
	case n <= math.MaxUint8:
		dst = append(dst, 0xd9, byte(n))
	case n <= math.MaxUint16:
		dst = append(dst, 0xda, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(dst, s...)
}
