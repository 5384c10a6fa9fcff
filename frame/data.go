package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/bits"
	"unsafe"
)

// Data is a data frame: a tagged payload with its routing and backflow
// fields. Its body is the compact encoding of spec.md, section 5: a flags
// byte saying which optional fields follow, varints, length-prefixed
// fields and the payload as the rest of the body.
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

	// Seq (optional; only between zippers) is the mesh sequence of the
	// frame, written in the extension area: the flow id of the writer at
	// the zipper where the frame entered the mesh, then one SeqNum per
	// entry of Names (one, for backflow). AppendSeq builds it,
	// ParseSeq reads it. Frames of one flow to one name are numbered
	// without gaps, so the zipper that delivers them drops duplicates and
	// restores their order after a reroute.
	Seq []byte

	// Datagram is not part of the encoding: it marks a frame that
	// travels in datagrams (AppendDatagram, spec.md section 8) rather
	// than on a data stream, unreliably, at every hop. The receiver of a
	// datagram sets it after Decode, which clears it.
	Datagram bool
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
	// StatusLost marks a zipper's loss notice to a Source (TIDReplyOnly
	// without TIDRequest): LostCountKey of its frames of the tag were lost
	// in the mesh, at the zipper LostAtKey names.
	StatusLost   = "lost"
	LostCountKey = "yomo-lost"
	LostAtKey    = "yomo-lost-at"
	// ErrorKey carries the explanation of a status reply.
	ErrorKey = "yomo-error"
)

// The flags byte, the first of a data frame body: which optional fields
// follow the tag, in this order (spec.md, section 5). Every bit has a
// meaning; flagExtension announces a length-prefixed area that this
// version skips, reserved for later revisions.
const (
	flagOrigin       = 0x01 // origin: 8 bytes, big endian
	flagTID          = 0x02 // tid: uvarint
	flagTarget       = 0x04 // target: uvarint length, bytes
	flagMetadata     = 0x08 // metadata: uvarint length, a msgpack map
	flagKey          = 0x10 // key: uvarint length, bytes
	flagOriginZipper = 0x20 // origin zipper: uvarint length, bytes
	flagMesh         = 0x40 // path, then names: each a uvarint length and a msgpack array of str
	flagExtension    = 0x80 // extension area (the mesh sequence): uvarint length, bytes
)

// hasMetadata reports whether m is written: an encoding of one byte can
// only be an empty map (0x80) or nil (0xc0), which mean none.
func hasMetadata(m Metadata) bool {
	return len(m) > 1 || len(m) == 1 && m[0] != 0x80 && m[0] != 0xc0
}

// flags returns the flags byte d is written with.
func (d *Data) flags() byte {
	var f byte
	if d.Origin != 0 {
		f |= flagOrigin
	}
	if d.TID != 0 {
		f |= flagTID
	}
	if len(d.Target) > 0 {
		f |= flagTarget
	}
	if hasMetadata(d.Metadata) {
		f |= flagMetadata
	}
	if len(d.Key) > 0 {
		f |= flagKey
	}
	if len(d.OriginZipper) > 0 {
		f |= flagOriginZipper
	}
	if len(d.Path) > 0 || len(d.Names) > 0 {
		f |= flagMesh
	}
	if len(d.Seq) > 0 {
		f |= flagExtension
	}
	return f
}

// uvarintSize returns the size of v's uvarint encoding: 1 to 10 bytes.
func uvarintSize(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// fieldSize returns the size of a length-prefixed field of n bytes.
func fieldSize(n int) int { return uvarintSize(uint64(n)) + n }

// DataSize returns the encoded size of d's body, without the header.
func DataSize(d *Data) int { return d.size(d.flags()) }

// maxDataOverhead bounds what a data frame adds to its variable-length
// fields: the header, the flags, the tag, origin and transaction id, and
// a length prefix for each of the seven length-prefixed fields.
const maxDataOverhead = HeaderSize + 1 + binary.MaxVarintLen32 + 8 + binary.MaxVarintLen64 + 7*binary.MaxVarintLen64

// DataSizeBound returns at least the encoded size of d as a complete frame
// (header and body), AppendData's length, and at most maxDataOverhead
// bytes more: cheaper than DataSize, for a caller that only needs to
// know that the frame fits.
func DataSizeBound(d *Data) int {
	return maxDataOverhead + len(d.Payload) + len(d.Target) + len(d.Metadata) + len(d.Key) +
		len(d.OriginZipper) + len(d.Path) + len(d.Names) + len(d.Seq)
}

// size returns the encoded size of d's body written with the flags f.
func (d *Data) size(f byte) int {
	n := 1 + uvarintSize(uint64(d.Tag)) + len(d.Payload)
	if f&flagOrigin != 0 {
		n += 8
	}
	if f&flagTID != 0 {
		n += uvarintSize(d.TID)
	}
	if f&flagTarget != 0 {
		n += fieldSize(len(d.Target))
	}
	if f&flagMetadata != 0 {
		n += fieldSize(len(d.Metadata))
	}
	if f&flagKey != 0 {
		n += fieldSize(len(d.Key))
	}
	if f&flagOriginZipper != 0 {
		n += fieldSize(len(d.OriginZipper))
	}
	if f&flagMesh != 0 {
		n += fieldSize(len(d.Path)) + fieldSize(len(d.Names))
	}
	if f&flagExtension != 0 {
		n += fieldSize(len(d.Seq))
	}
	return n
}

// AppendData appends d as a complete frame (header and body) to dst.
// It allocates only when dst must grow.
func AppendData(dst []byte, d *Data) []byte {
	f := d.flags()
	dst = AppendHeader(dst, TypeData, d.size(f))
	return appendBody(dst, d, f)
}

// AppendDataBody appends d's body (AppendData without the header: what a
// datagram carries, AppendDatagram) to dst. Its length is DataSize(d).
func AppendDataBody(dst []byte, d *Data) []byte { return appendBody(dst, d, d.flags()) }

func appendBody(dst []byte, d *Data, f byte) []byte {
	dst = append(dst, f)
	dst = appendUvarint(dst, uint64(d.Tag))
	if f&flagOrigin != 0 {
		dst = binary.BigEndian.AppendUint64(dst, d.Origin)
	}
	if f&flagTID != 0 {
		dst = appendUvarint(dst, d.TID)
	}
	if f&flagTarget != 0 {
		dst = appendField(dst, d.Target)
	}
	if f&flagMetadata != 0 {
		dst = appendField(dst, d.Metadata)
	}
	if f&flagKey != 0 {
		dst = appendField(dst, d.Key)
	}
	if f&flagOriginZipper != 0 {
		dst = appendField(dst, d.OriginZipper)
	}
	if f&flagMesh != 0 {
		dst = appendField(dst, d.Path)
		dst = appendField(dst, d.Names)
	}
	if f&flagExtension != 0 {
		dst = appendField(dst, d.Seq)
	}
	return append(dst, d.Payload...)
}

// appendField appends b with its length as a uvarint.
func appendField(dst, b []byte) []byte {
	dst = appendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// appendUvarint is binary.AppendUvarint with the one-byte case inlined.
func appendUvarint(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return binary.AppendUvarint(dst, v)
}

// Errors of the compact encoding's primitives, wrapped by malformed.
var (
	errVarintLong    = errors.New("uvarint longer than 10 bytes or above 2^64-1")
	errVarintNotLean = errors.New("uvarint not in its shortest form")
)

// readUvarint reads a uvarint in its shortest form: at most 10 bytes,
// at most 2^64-1, and no trailing 0x00 group (0x80 0x00 is malformed).
func readUvarint(b []byte) (uint64, []byte, error) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint64(b[0]), b[1:], nil
	}
	v, n := binary.Uvarint(b)
	switch {
	case n == 0:
		return 0, nil, errShort
	case n < 0:
		return 0, nil, errVarintLong
	case b[n-1] == 0:
		return 0, nil, errVarintNotLean
	}
	return v, b[n:], nil
}

// readField reads a length-prefixed field, aliasing b; its length is
// checked against the bytes left before anything is sliced.
func readField(b []byte) ([]byte, []byte, error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return nil, nil, err
	}
	if n > uint64(len(b)) {
		return nil, nil, errShort
	}
	return b[:n:n], b[n:], nil
}

// readListField reads a length-prefixed msgpack array of strings (nil
// when empty) that must fill its field exactly.
func readListField(b []byte) (StrList, []byte, error) {
	f, b, err := readField(b)
	if err != nil || len(f) == 0 {
		return nil, b, err
	}
	l, rest, err := readList(f)
	if err != nil {
		return nil, nil, err
	}
	if len(rest) != 0 {
		return nil, nil, errTrailing
	}
	return l, b, nil
}

var errTrailing = errors.New("bytes after the value in its field")

// Decode parses a data frame body into d. d aliases body afterwards.
// It allocates nothing. An error wraps ErrMalformed; d is then left in an
// unspecified state.
func (d *Data) Decode(body []byte) error {
	if len(body) == 0 {
		return malformed(TypeData, "empty body")
	}
	f := body[0]
	v, b, err := readUvarint(body[1:])
	if err != nil {
		return malformed(TypeData, "tag: "+err.Error())
	}
	if v > math.MaxUint32 {
		return malformed(TypeData, "tag out of range")
	}
	d.Tag = Tag(v)
	d.Origin, d.TID = 0, 0
	d.Target, d.Metadata, d.Key, d.OriginZipper, d.Path, d.Names, d.Seq = nil, nil, nil, nil, nil, nil, nil
	d.Datagram = false
	if f&flagOrigin != 0 {
		if len(b) < 8 {
			return malformed(TypeData, "origin: "+errShort.Error())
		}
		d.Origin = binary.BigEndian.Uint64(b)
		b = b[8:]
	}
	if f&flagTID != 0 {
		if d.TID, b, err = readUvarint(b); err != nil {
			return malformed(TypeData, "tid: "+err.Error())
		}
	}
	if f&flagTarget != 0 {
		if d.Target, b, err = readField(b); err != nil {
			return malformed(TypeData, "target: "+err.Error())
		}
	}
	if f&flagMetadata != 0 {
		var m []byte
		if m, b, err = readField(b); err != nil {
			return malformed(TypeData, "metadata: "+err.Error())
		}
		if len(m) > 0 {
			n, rest, err := validMetadata(m)
			if err == nil && len(rest) != 0 {
				err = errTrailing
			}
			if err != nil {
				return malformed(TypeData, "metadata: "+err.Error())
			}
			if n > 0 {
				d.Metadata = Metadata(m)
			}
		}
	}
	if f&flagKey != 0 {
		if d.Key, b, err = readField(b); err != nil {
			return malformed(TypeData, "key: "+err.Error())
		}
	}
	if f&flagOriginZipper != 0 {
		if d.OriginZipper, b, err = readField(b); err != nil {
			return malformed(TypeData, "origin zipper: "+err.Error())
		}
	}
	if f&flagMesh != 0 {
		if d.Path, b, err = readListField(b); err != nil {
			return malformed(TypeData, "path: "+err.Error())
		}
		if d.Names, b, err = readListField(b); err != nil {
			return malformed(TypeData, "names: "+err.Error())
		}
	}
	if f&flagExtension != 0 {
		if d.Seq, b, err = readField(b); err != nil {
			return malformed(TypeData, "extension: "+err.Error())
		}
		if len(d.Seq) == 0 {
			d.Seq = nil
		}
	}
	d.Payload = b[:len(b):len(b)]
	// Empty fields decode as nil, whether absent or written with length 0.
	if len(d.Target) == 0 {
		d.Target = nil
	}
	if len(d.Key) == 0 {
		d.Key = nil
	}
	if len(d.OriginZipper) == 0 {
		d.OriginZipper = nil
	}
	return nil
}

// MaxMetadataEntries bounds the number of metadata entries of one frame.
const MaxMetadataEntries = 64

// validMetadata checks the msgpack map at the start of b and returns its
// number of entries and the bytes after it.
func validMetadata(b []byte) (int, []byte, error) {
	n, b, err := readMapLen(b)
	if err != nil {
		return 0, nil, err
	}
	if n > MaxMetadataEntries {
		return 0, nil, errors.New("too many entries")
	}
	for i := 0; i < 2*n; i++ {
		if _, b, err = readStr(b); err != nil {
			return 0, nil, err
		}
	}
	return n, b, nil
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

// SeqNum is a frame's place in its flow towards one function name (or
// one origin Source, for backflow).
type SeqNum struct {
	// N is the frame's number: the flow's frames are numbered 1, 2, 3...
	// without gaps; 0 means the frame is not sequenced.
	N uint64
	// Back is how many numbers just below N a zipper that has not seen
	// the flow before should wait for: the writer's zipper sent them
	// recently over another path, which may be slower. 0 when none;
	// always below N.
	Back uint64
}

// AppendSeq appends to dst the mesh sequence area of a frame of the flow
// flow: the flow id (8 bytes, big endian), then for each number N and
// Back as two uvarints.
func AppendSeq(dst []byte, flow uint64, seqs ...SeqNum) []byte {
	dst = binary.BigEndian.AppendUint64(dst, flow)
	for _, s := range seqs {
		dst = appendUvarint(dst, s.N)
		dst = appendUvarint(dst, s.Back)
	}
	return dst
}

// ParseSeq splits a mesh sequence area into its flow id and the encoded
// sequence numbers, read one by one with NextSeq.
func ParseSeq(b []byte) (flow uint64, seqs []byte, err error) {
	if len(b) < 8 {
		return 0, nil, malformed(TypeData, "sequence: flow id: "+errShort.Error())
	}
	return binary.BigEndian.Uint64(b), b[8:], nil
}

// NextSeq reads the first sequence number of seqs and returns the rest.
// A Back that is not below N (or not 0 when N is 0) is malformed.
func NextSeq(seqs []byte) (SeqNum, []byte, error) {
	n, rest, err := readUvarint(seqs)
	if err != nil {
		return SeqNum{}, seqs, malformed(TypeData, "sequence: "+err.Error())
	}
	back, rest, err := readUvarint(rest)
	if err != nil {
		return SeqNum{}, seqs, malformed(TypeData, "sequence: back: "+err.Error())
	}
	if back >= max(n, 1) {
		return SeqNum{}, seqs, malformed(TypeData, "sequence: back not below the number")
	}
	return SeqNum{N: n, Back: back}, rest, nil
}
