package frame

import (
	"bytes"
	"errors"
)

// Data is a data frame: a tagged payload with its routing and backflow
// fields. Its body is a msgpack array; see spec.md.
//
// A Data filled by Decode aliases the decoded body: its slices are valid
// only as long as that body is.
type Data struct {
	// Tag says what the payload is; it selects the functions that receive
	// the frame.
	Tag Tag
	// Target, when not empty, restricts delivery to functions whose wanted
	// target equals it.
	Target []byte
	// Origin is the id of the Source whose write started the chain this
	// frame belongs to; 0 when unknown. The zipper sets it on frames
	// written by Sources; functions carry it over to what they write.
	Origin uint64
	// TID is the transaction id the origin Source gave its write.
	TID uint64
	// Metadata is an encoded msgpack map of string to string (nil = none),
	// as built by MetadataOf or With or filled by Decode. It is written
	// verbatim, so it must be a valid encoding of at most
	// MaxMetadataEntries entries, or receivers refuse the frame.
	Metadata Metadata
	// Payload is the application data; it may be empty.
	Payload []byte
}

// dataFields is the number of array elements this version writes. Decoders
// accept longer arrays and skip the extra elements (forward compatibility).
const dataFields = 6

// DataSize returns the encoded size of d's body, without the header.
func DataSize(d *Data) int {
	m := len(d.Metadata)
	if m == 0 {
		m = 1
	}
	return 1 + 5 + strSize(len(d.Target)) + 9 + 9 + m + binHeaderSize(len(d.Payload)) + len(d.Payload)
}

// AppendData appends d as a complete frame (header and body) to dst.
// It allocates only when dst must grow.
func AppendData(dst []byte, d *Data) []byte {
	dst = AppendHeader(dst, TypeData, DataSize(d))
	dst = append(dst, 0x90|dataFields)
	dst = appendUint32(dst, d.Tag)
	dst = appendStr(dst, d.Target)
	dst = appendUint64(dst, d.Origin)
	dst = appendUint64(dst, d.TID)
	if len(d.Metadata) == 0 {
		dst = append(dst, 0x80)
	} else {
		dst = append(dst, d.Metadata...)
	}
	dst = appendBinHeader(dst, len(d.Payload))
	return append(dst, d.Payload...)
}

// Decode parses a data frame body into d. d aliases body afterwards.
// It allocates nothing. An error wraps ErrMalformed; d is then left in an
// unspecified state.
func (d *Data) Decode(body []byte) error {
	n, b, err := readArrayLen(body)
	if err != nil {
		return malformed(TypeData, err.Error())
	}
	if n < dataFields {
		return malformed(TypeData, "too few fields")
	}
	var v uint64
	if v, b, err = readUint(b); err != nil {
		return malformed(TypeData, "tag: "+err.Error())
	}
	if v > 0xffffffff {
		return malformed(TypeData, "tag out of range")
	}
	d.Tag = Tag(v)
	if d.Target, b, err = readBytes(b); err != nil {
		return malformed(TypeData, "target: "+err.Error())
	}
	if d.Origin, b, err = readUint(b); err != nil {
		return malformed(TypeData, "origin: "+err.Error())
	}
	if d.TID, b, err = readUint(b); err != nil {
		return malformed(TypeData, "tid: "+err.Error())
	}
	rest, err := validMetadata(b)
	if err != nil {
		return malformed(TypeData, "metadata: "+err.Error())
	}
	d.Metadata = Metadata(b[: len(b)-len(rest) : len(b)-len(rest)])
	if len(d.Metadata) == 1 && (d.Metadata[0] == 0x80 || d.Metadata[0] == 0xc0) {
		d.Metadata = nil
	}
	if d.Payload, b, err = readBytes(rest); err != nil {
		return malformed(TypeData, "payload: "+err.Error())
	}
	for i := dataFields; i < n; i++ {
		if b, err = skipValue(b, 0); err != nil {
			return malformed(TypeData, "extension field: "+err.Error())
		}
	}
	if len(b) != 0 {
		return malformed(TypeData, "trailing bytes")
	}
	return nil
}

// MaxMetadataEntries bounds the number of metadata entries of one frame.
const MaxMetadataEntries = 64

func validMetadata(b []byte) ([]byte, error) {
	n, b, err := readMapLen(b)
	if err != nil {
		return nil, err
	}
	if n > MaxMetadataEntries {
		return nil, errors.New("too many entries")
	}
	for i := 0; i < 2*n; i++ {
		if _, b, err = readStr(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Metadata is the encoded form of a frame's metadata: a msgpack map whose
// keys and values are strings. Its zero value is empty. Lookups scan the
// encoding and allocate only the returned string. Methods treat a
// malformed encoding as ending where it stops being valid.
type Metadata []byte

// Get returns the value of key (of its first entry, should a foreign
// encoder have written the key twice) and whether key is present.
func (m Metadata) Get(key string) (string, bool) {
	v, ok := m.lookup(key)
	return string(v), ok
}

func (m Metadata) lookup(key string) ([]byte, bool) {
	if len(m) == 0 {
		return nil, false
	}
	n, b, err := readMapLen(m)
	if err != nil {
		return nil, false
	}
	for i := 0; i < n; i++ {
		var k, v []byte
		if k, b, err = readStr(b); err != nil {
			return nil, false
		}
		if v, b, err = readStr(b); err != nil {
			return nil, false
		}
		if string(k) == key {
			return v, true
		}
	}
	return nil, false
}

// Range calls fn for each entry in encoding order until fn returns false.
// The slices alias m.
func (m Metadata) Range(fn func(key, value []byte) bool) {
	if len(m) == 0 {
		return
	}
	n, b, err := readMapLen(m)
	if err != nil {
		return
	}
	for i := 0; i < n; i++ {
		var k, v []byte
		if k, b, err = readStr(b); err != nil {
			return
		}
		if v, b, err = readStr(b); err != nil {
			return
		}
		if !fn(k, v) {
			return
		}
	}
}

// Len returns the number of entries.
func (m Metadata) Len() int {
	if len(m) == 0 {
		return 0
	}
	n, _, err := readMapLen(m)
	if err != nil {
		return 0
	}
	return n
}

// With returns a new Metadata holding m's entries with key set to value:
// an existing entry with that key keeps its position and gets the new
// value (later duplicates of it are dropped); otherwise the entry is
// appended. m is not modified.
func (m Metadata) With(key, value string) Metadata {
	n, size, found := 0, 0, false
	m.Range(func(k, v []byte) bool {
		switch {
		case string(k) != key:
			n++
			size += strSize(len(k)) + strSize(len(v))
		case !found:
			found = true
			n++
			size += strSize(len(k)) + strSize(len(value))
		}
		return true
	})
	if !found {
		n++
		size += strSize(len(key)) + strSize(len(value))
	}
	out := appendMapHeader(make([]byte, 0, 5+size), n)
	found = false
	m.Range(func(k, v []byte) bool {
		switch {
		case string(k) != key:
			out = appendStr(out, k)
			out = appendStr(out, v)
		case !found:
			found = true
			out = appendStr(out, k)
			out = appendString(out, value)
		}
		return true
	})
	if !found {
		out = appendString(out, key)
		out = appendString(out, value)
	}
	return out
}

// MetadataOf encodes kv, alternating keys and values, as metadata. Entries
// are written in the order given, duplicates included. It panics if kv
// has an odd length. MetadataOf() is an empty map, not nil.
func MetadataOf(kv ...string) Metadata {
	if len(kv)%2 != 0 {
		panic("frame: MetadataOf needs key-value pairs")
	}
	size := 5
	for _, s := range kv {
		size += strSize(len(s))
	}
	out := appendMapHeader(make([]byte, 0, size), len(kv)/2)
	for _, s := range kv {
		out = appendString(out, s)
	}
	return out
}

func appendMapHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= 0xffff:
		return append(dst, 0xde, byte(n>>8), byte(n))
	}
	return append(dst, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// Equal reports whether m and o hold the same entries in the same order.
// It compares the decoded keys and values, so encodings that differ only
// in the msgpack formats they use (fixstr or str 8, str or bin, map 16 for
// a small map) are equal. Two empty metadata (nil included) are equal.
func (m Metadata) Equal(o Metadata) bool {
	n, a, err1 := readMapLenOrEmpty(m)
	p, b, err2 := readMapLenOrEmpty(o)
	if err1 != nil || err2 != nil {
		return bytes.Equal(m, o)
	}
	if n != p {
		return false
	}
	for i := 0; i < 2*n; i++ {
		var x, y []byte
		x, a, err1 = readStr(a)
		y, b, err2 = readStr(b)
		if err1 != nil || err2 != nil {
			return bytes.Equal(m, o)
		}
		if !bytes.Equal(x, y) {
			return false
		}
	}
	return true
}

func readMapLenOrEmpty(m Metadata) (int, []byte, error) {
	if len(m) == 0 {
		return 0, nil, nil
	}
	return readMapLen(m)
}
