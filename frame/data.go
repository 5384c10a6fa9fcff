package frame

import (
	"bytes"
	"errors"
	"unsafe"
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
	// TID is the transaction id the origin Source gave its write. Its two
	// top bits are flags (TIDRequest, TIDReplyOnly); the rest numbers the
	// origin's writes.
	TID uint64
	// Metadata is an encoded msgpack map of string to string (nil = none),
	// as built by MetadataOf or With or filled by Decode. It is written
	// verbatim, so it must be a valid encoding of at most
	// MaxMetadataEntries entries, or receivers refuse the frame.
	Metadata Metadata
	// Payload is the application data; it may be empty.
	Payload []byte

	// Mesh fields (optional; written only when set).

	// OriginZipper names the zipper the origin Source is connected to,
	// so backflow can find it across zipper links. Functions carry it
	// over to what they write, like Origin.
	OriginZipper []byte
	// Path lists the zippers a frame has crossed (only between zippers);
	// a zipper never forwards a frame to a zipper on its path.
	Path StrList
	// Names lists the function names a frame crossing a zipper link is
	// for; empty on a link, the frame is backflow for OriginZipper.
	Names StrList

	// Key (optional; written only when set) is the frame's affinity key:
	// frames with one key reach one instance of each function group.
	Key []byte
}

// MaxEnvelope bounds what a data frame body holds besides its payload
// (target, metadata, key, mesh fields and the encoding): a limit on data
// frames is a limit on payloads, and a reader allows bodies up to the
// payload limit plus MaxEnvelope.
const MaxEnvelope = 64 << 10

// EnvelopeSize returns the encoded size of d's body without its payload.
func EnvelopeSize(d *Data) int { return DataSize(d) - len(d.Payload) }

// Flags in a data frame's TID (spec.md, section 5).
const (
	// TIDRequest marks a Source's request and everything written while
	// handling it: every such result goes back to the origin Source,
	// whatever its tag.
	TIDRequest uint64 = 1 << 63
	// TIDReplyOnly marks a frame that goes only back to its origin
	// Source, never to functions: a status reply (StatusKey metadata).
	TIDReplyOnly uint64 = 1 << 62
)

// StatusKey is the metadata key of a status reply to a request (a frame
// with TIDReplyOnly), and its values.
const (
	StatusKey          = "yomo-status"
	StatusNoResponders = "no-responders" // nothing observes the request's tag
	StatusPanic        = "panic"         // a handler panicked on the request
	// ErrorKey carries the explanation of a status reply.
	ErrorKey = "yomo-error"
)

// dataFields is the number of array elements every data frame has;
// fields 6 to 8 are optional (mesh), field 9 is the key. Decoders skip
// elements beyond those they know (forward compatibility).
const (
	dataFields    = 6
	dataFieldsMax = 10
)

// fields returns how many array elements d is written with.
func (d *Data) fields() int {
	switch {
	case len(d.Key) > 0:
		return 10
	case len(d.Path) > 0 || len(d.Names) > 0:
		return 9
	case len(d.OriginZipper) > 0:
		return 7
	}
	return dataFields
}

func listSize(l StrList) int {
	if len(l) == 0 {
		return 1
	}
	return len(l)
}

// DataSize returns the encoded size of d's body, without the header.
func DataSize(d *Data) int {
	m := len(d.Metadata)
	if m == 0 {
		m = 1
	}
	n := 1 + 5 + strSize(len(d.Target)) + 9 + 9 + m + binHeaderSize(len(d.Payload)) + len(d.Payload)
	switch d.fields() {
	case 10:
		n += strSize(len(d.OriginZipper)) + listSize(d.Path) + listSize(d.Names) + strSize(len(d.Key))
	case 9:
		n += strSize(len(d.OriginZipper)) + listSize(d.Path) + listSize(d.Names)
	case 7:
		n += strSize(len(d.OriginZipper))
	}
	return n
}

// AppendData appends d as a complete frame (header and body) to dst.
// It allocates only when dst must grow.
func AppendData(dst []byte, d *Data) []byte {
	dst = AppendHeader(dst, TypeData, DataSize(d))
	nf := d.fields()
	dst = append(dst, 0x90|byte(nf))
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
	dst = append(dst, d.Payload...)
	if nf >= 7 {
		dst = appendStr(dst, d.OriginZipper)
	}
	if nf >= 9 {
		dst = appendList(dst, d.Path)
		dst = appendList(dst, d.Names)
	}
	if nf >= 10 {
		dst = appendStr(dst, d.Key)
	}
	return dst
}

func appendList(dst []byte, l StrList) []byte {
	if len(l) == 0 {
		return append(dst, 0x90)
	}
	return append(dst, l...)
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
	d.OriginZipper, d.Path, d.Names, d.Key = nil, nil, nil, nil
	if n > 6 {
		if d.OriginZipper, b, err = readBytes(b); err != nil {
			return malformed(TypeData, "origin zipper: "+err.Error())
		}
	}
	if n > 7 {
		if d.Path, b, err = readList(b); err != nil {
			return malformed(TypeData, "path: "+err.Error())
		}
	}
	if n > 8 {
		if d.Names, b, err = readList(b); err != nil {
			return malformed(TypeData, "names: "+err.Error())
		}
	}
	if n > 9 {
		if d.Key, b, err = readBytes(b); err != nil {
			return malformed(TypeData, "key: "+err.Error())
		}
	}
	for i := dataFieldsMax; i < n; i++ {
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

// MaxListEntries bounds the entries of a frame's Path and Names.
const MaxListEntries = 64

// readList reads a msgpack array of strings, returning its encoding
// (nil when empty).
func readList(b []byte) (StrList, []byte, error) {
	n, rest, err := readArrayLen(b)
	if err != nil {
		return nil, nil, err
	}
	if n > MaxListEntries {
		return nil, nil, errors.New("too many entries")
	}
	for i := 0; i < n; i++ {
		if _, rest, err = readBytes(rest); err != nil {
			return nil, nil, err
		}
	}
	if n == 0 {
		return nil, rest, nil
	}
	used := len(b) - len(rest)
	return StrList(b[:used:used]), rest, nil
}

// StrList is the encoding of a msgpack array of strings (nil = empty).
// Lookups scan the encoding and allocate nothing.
type StrList []byte

// Len returns the number of entries.
func (l StrList) Len() int {
	if len(l) == 0 {
		return 0
	}
	n, _, err := readArrayLen(l)
	if err != nil {
		return 0
	}
	return n
}

// Range calls fn for each entry in order until fn returns false; the
// slices alias l.
func (l StrList) Range(fn func(s []byte) bool) {
	if len(l) == 0 {
		return
	}
	n, b, err := readArrayLen(l)
	if err != nil {
		return
	}
	for i := 0; i < n; i++ {
		var s []byte
		if s, b, err = readBytes(b); err != nil || !fn(s) {
			return
		}
	}
}

// Contains reports whether s is an entry.
func (l StrList) Contains(s string) bool {
	found := false
	l.Range(func(e []byte) bool {
		found = string(e) == s
		return !found
	})
	return found
}

// AppendStrList appends the encoding of items to dst.
func AppendStrList(dst []byte, items ...string) []byte {
	dst = appendArrayHeader(dst, len(items))
	for _, s := range items {
		dst = appendStr(dst, unsafeBytes(s))
	}
	return dst
}

// AppendWith appends to dst the encoding of l's entries followed by s.
func (l StrList) AppendWith(dst []byte, s string) []byte {
	n := l.Len()
	dst = appendArrayHeader(dst, n+1)
	if n > 0 {
		_, body, _ := readArrayLen(l)
		dst = append(dst, body...)
	}
	return appendStr(dst, unsafeBytes(s))
}

func appendArrayHeader(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= 0xffff:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	}
	return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// unsafeBytes views s as bytes without copying; the result is only read.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
