package frame

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// dataEqual compares two data frames field by field: nil and empty slices
// are equal, and metadata is compared by its entries.
func dataEqual(a, b *Data) bool {
	return a.Tag == b.Tag && bytes.Equal(a.Target, b.Target) &&
		a.Origin == b.Origin && a.TID == b.TID &&
		a.Metadata.Equal(b.Metadata) && bytes.Equal(a.Payload, b.Payload) &&
		bytes.Equal(a.OriginZipper, b.OriginZipper) && bytes.Equal(a.Path, b.Path) && bytes.Equal(a.Names, b.Names) &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Seq, b.Seq)
}

// controlEqual compares two decoded control values, treating nil and empty
// tag lists as equal (omitempty drops an empty list).
func controlEqual(a, b any) bool {
	return reflect.DeepEqual(tagsNormal(a), tagsNormal(b))
}

// tagsNormal returns a copy of a Handshake or Subscribe whose empty tag
// list is nil: an empty list and none mean the same (no tags observed)
// and encode the same (absent). Other frames are returned as they are.
func tagsNormal(v any) any {
	switch x := v.(type) {
	case *Handshake:
		c := *x
		if len(c.ObserveTags) == 0 {
			c.ObserveTags = nil
		}
		return c
	case *Subscribe:
		c := *x
		if len(c.ObserveTags) == 0 {
			c.ObserveTags = nil
		}
		return c
	}
	return v
}

func TestTypeString(t *testing.T) {
	for typ := Type(0); typ < 10; typ++ {
		s := typ.String()
		if typ.Known() == strings.HasPrefix(s, "type(") {
			t.Errorf("%d: Known %v, String %q", typ, typ.Known(), s)
		}
	}
	if s := Type(0xab).String(); s != "type(0xab)" {
		t.Errorf("got %q", s)
	}
	if KindFunction.String() != "function" || ClientKind(9).String() != "kind(9)" {
		t.Error("ClientKind.String")
	}
}

func TestHeader(t *testing.T) {
	h := AppendHeader(nil, TypeData, 0x01020304)
	if !bytes.Equal(h, []byte{0x04, 0x01, 0x02, 0x03, 0x04}) {
		t.Fatalf("got %x", h)
	}
	typ, n, err := ParseHeader(h, 1<<30)
	if typ != TypeData || n != 0x01020304 || err != nil {
		t.Fatalf("ParseHeader: %v %d %v", typ, n, err)
	}
	if _, _, err := ParseHeader(h[:4], 1<<30); err != io.ErrUnexpectedEOF {
		t.Fatalf("short header: %v", err)
	}
	// The largest length field must not wrap around (32-bit platforms).
	_, _, err = ParseHeader([]byte{0x04, 0xff, 0xff, 0xff, 0xff}, DefaultMaxSize)
	var se *SizeError
	if !errors.As(err, &se) || se.Max != DefaultMaxSize || se.Type != TypeData {
		t.Fatalf("got %v", err)
	}
	// Control frames are bounded by MaxControlSize whatever max is, in
	// either direction.
	for _, max := range []int{100, DefaultMaxSize} {
		if _, _, err := ParseHeader(AppendHeader(nil, TypeHandshake, MaxControlSize), max); err != nil {
			t.Errorf("max %d: control frame of MaxControlSize refused: %v", max, err)
		}
		_, _, err := ParseHeader(AppendHeader(nil, TypePing, MaxControlSize+1), max)
		if !errors.As(err, &se) || se.Max != MaxControlSize {
			t.Errorf("max %d: control frame over MaxControlSize: %v", max, err)
		}
	}
}

// frameStream concatenates frames.
func frameStream(t testing.TB, ds []Data) []byte {
	var b []byte
	for i := range ds {
		b = AppendData(b, &ds[i])
	}
	return b
}

func TestDataRoundTrip(t *testing.T) {
	var ds []Data
	for _, c := range dataCases {
		ds = append(ds, c.d)
	}
	ds = append(ds,
		Data{Tag: 8, Payload: pattern(readBufferSize - HeaderSize)}, // largest body that fits the buffer
		Data{Tag: 9, Payload: pattern(readBufferSize)},              // smallest that does not
		Data{Tag: 10, Payload: pattern(1 << 20)},                    // above keepBuffer after growth
		Data{Tag: 11, Payload: pattern(3 << 20)},
		Data{Tag: 12, Payload: []byte("small after large")},
	)
	stream := frameStream(t, ds)
	// A reader that returns at most 7 bytes per Read exercises partial
	// fills of the buffer.
	for name, src := range map[string]io.Reader{
		"whole":   bytes.NewReader(stream),
		"trickle": &trickleReader{b: stream, n: 7},
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src, 0)
			for i := range ds {
				typ, body, err := r.Next()
				if err != nil || typ != TypeData {
					t.Fatalf("frame %d: %v %v", i, typ, err)
				}
				if want := DataSize(&ds[i]); len(body) != want {
					t.Fatalf("frame %d: body of %d bytes, DataSize says %d", i, len(body), want)
				}
				var d Data
				if err := d.Decode(body); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if !dataEqual(&d, &ds[i]) {
					t.Fatalf("frame %d: got %+v, want %+v", i, d, ds[i])
				}
			}
			if _, _, err := r.Next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

type trickleReader struct {
	b []byte
	n int
}

func (r *trickleReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestAppendDataAppends(t *testing.T) {
	d := &Data{Tag: 1, Payload: []byte("x")}
	prefix := []byte("prefix")
	b := AppendData(append([]byte(nil), prefix...), d)
	if !bytes.HasPrefix(b, prefix) || !bytes.Equal(b[len(prefix):], AppendData(nil, d)) {
		t.Fatalf("got %x", b)
	}
}

func TestControlRoundTrip(t *testing.T) {
	cases := append([]controlCase{
		{"handshake-zero", TypeHandshake, &Handshake{}},
		{"ack-zero", TypeHandshakeAck, &HandshakeAck{}},
		{"rejected-zero", TypeRejected, &Rejected{}},
		{"goaway-zero", TypeGoAway, &GoAway{}},
		{"ping-zero", TypePing, &Ping{}},
		{"handshake-many-tags", TypeHandshake, &Handshake{Version: 1, ObserveTags: []Tag{0, 1, 1<<32 - 1}}},
		{"handshake-resumed", TypeHandshake, &Handshake{Version: 1, Kind: KindSource, ID: 7, Resumed: true}},
		{"rejected-long", TypeRejected, &Rejected{Code: RejectShutdown, Reason: strings.Repeat("é", 1000)}},
	}, controlCases...)
	var stream []byte
	for _, c := range cases {
		stream = append(stream, encodeControlCase(t, c)...)
	}
	r := NewReader(bytes.NewReader(stream), 0)
	for _, c := range cases {
		typ, body, err := r.Next()
		if err != nil || typ != c.t {
			t.Fatalf("%s: Next: %v %v", c.name, typ, err)
		}
		v, err := DecodeControl(typ, body)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !controlEqual(v, c.v) {
			t.Fatalf("%s: got %+v, want %+v", c.name, v, c.v)
		}
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("got %v, want io.EOF", err)
	}
}

func TestAppendControlErrors(t *testing.T) {
	dst := []byte("keep")
	for _, v := range []any{Handshake{}, &Data{}, nil, "x"} {
		b, err := AppendControl(dst, v)
		if err == nil || string(b) != "keep" {
			t.Errorf("AppendControl(%T): %q %v", v, b, err)
		}
	}
	big := &Handshake{Credential: strings.Repeat("x", MaxControlSize)}
	b, err := AppendControl(dst, big)
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrFrameTooLarge) || se.Max != MaxControlSize || string(b) != "keep" {
		t.Fatalf("oversized control frame: %q %v", b, err)
	}
}

func TestDecodeControlErrors(t *testing.T) {
	valid := readGolden(t, "handshake-function")[HeaderSize:]
	cases := []struct {
		name string
		t    Type
		body []byte
		want error
	}{
		{"data type", TypeData, valid, nil},
		{"unknown type", 0x42, valid, ErrUnknownType},
		{"too large", TypeHandshake, make([]byte, MaxControlSize+1), ErrFrameTooLarge},
		{"empty", TypeHandshake, nil, ErrMalformed},
		{"nil", TypeHandshake, []byte{0xc0}, ErrMalformed},
		{"array", TypeHandshake, []byte{0x91, 0x01}, ErrMalformed},
		{"truncated", TypeHandshake, valid[:len(valid)-1], ErrMalformed},
		{"trailing", TypeHandshake, append(append([]byte(nil), valid...), 0xc0), ErrMalformed},
		{"wrong field type", TypeRejected, []byte{0x81, 0xa4, 'c', 'o', 'd', 'e', 0xa1, 'x'}, ErrMalformed},
		{"invalid byte", TypeGoAway, []byte{0x81, 0xc1, 0xc0}, ErrMalformed},
		{"integer key", TypeGoAway, []byte{0x81, 0x01, 0xc0}, ErrMalformed},
		// A 10-byte body declaring 2^32-1 tags: refused before the library
		// could allocate for them.
		{"huge tags", TypeHandshake, []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0xdd, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		{"huge map", TypeHandshake, []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, ErrMalformed},
		// Integers must be non-negative and fit their field.
		{"negative code", TypeRejected, []byte{0x81, 0xa4, 'c', 'o', 'd', 'e', 0xfb}, ErrMalformed},
		{"negative int8 code", TypeRejected, []byte{0x81, 0xa4, 'c', 'o', 'd', 'e', 0xd0, 0x80}, ErrMalformed},
		{"code over 16 bits", TypeRejected, []byte{0x81, 0xa4, 'c', 'o', 'd', 'e', 0xce, 0, 1, 0, 1}, ErrMalformed},
		{"version over 32 bits", TypeHandshake, []byte{0x81, 0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xcf, 0, 0, 0, 1, 0, 0, 0, 1}, ErrMalformed},
		{"kind over 8 bits", TypeHandshake, []byte{0x81, 0xa4, 'k', 'i', 'n', 'd', 0xcd, 0x01, 0x2c}, ErrMalformed},
		{"negative tag", TypeHandshake, []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0x92, 0x01, 0xff}, ErrMalformed},
		{"tag over 32 bits", TypeHandshake, []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0x91, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, ErrMalformed},
		{"string tag", TypeHandshake, []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0x91, 0xa1, 'x'}, ErrMalformed},
		{"tags not an array", TypeHandshake, []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0x01}, ErrMalformed},
		{"float value", TypePing, []byte{0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0xca, 0x3f, 0x80, 0, 0}, ErrMalformed},
		{"string max_frame", TypeHandshakeAck, []byte{0x81, 0xa9, 'm', 'a', 'x', '_', 'f', 'r', 'a', 'm', 'e', 0xa1, '1'}, ErrMalformed},
		{"too deep", TypePing, append(append([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 40)...), 0xc0), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := DecodeControl(c.t, c.body)
			if err == nil || v != nil {
				t.Fatalf("got %v, %v", v, err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	// Unknown keys are ignored, whatever their values.
	body := []byte{0x83,
		0xa5, 'v', 'a', 'l', 'u', 'e', 0x07,
		0xa6, 'f', 'u', 't', 'u', 'r', 'e', 0x92, 0x81, 0xa1, 'a', 0xc3, 0xd6, 0x01, 1, 2, 3, 4,
		0xa1, 'z', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0}
	v, err := DecodeControl(TypePong, body)
	if err != nil || !reflect.DeepEqual(v, &Ping{Value: 7}) {
		t.Fatalf("unknown keys: %+v %v", v, err)
	}

	// Accepted: any integer format with a value in range, nil for zero,
	// bin for a string, keys in any order, missing keys, bin keys.
	accepted := []struct {
		t    Type
		body []byte
		want any
	}{
		{TypeRejected, []byte{0x82, 0xa6, 'r', 'e', 'a', 's', 'o', 'n', 0xc4, 1, 'x', 0xa4, 'c', 'o', 'd', 'e', 0xd1, 0x7f, 0xff},
			&Rejected{Code: 0x7fff, Reason: "x"}},
		{TypeRejected, []byte{0x82, 0xa4, 'c', 'o', 'd', 'e', 0xc0, 0xa6, 'r', 'e', 'a', 's', 'o', 'n', 0xc0}, &Rejected{}},
		{TypeRejected, []byte{0x81, 0xc4, 4, 'c', 'o', 'd', 'e', 0xcd, 0xff, 0xff}, &Rejected{Code: 0xffff}},
		{TypeGoAway, []byte{0x80}, &GoAway{}},
		{TypeHandshake, []byte{0x83, 0xa4, 't', 'a', 'g', 's', 0x93, 0x00, 0xd3, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xcc, 0x21,
			0xa4, 'k', 'i', 'n', 'd', 0xd0, 0x03, 0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
			&Handshake{Version: 1<<32 - 1, Kind: KindZipper, ObserveTags: []Tag{0, 1<<32 - 1, 33}}},
		{TypeHandshake, []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0xc0}, &Handshake{}},
	}
	for _, c := range accepted {
		v, err := DecodeControl(c.t, c.body)
		if err != nil || !controlEqual(v, c.want) {
			t.Errorf("DecodeControl(%v, %x) = %+v, %v; want %+v", c.t, c.body, v, err, c.want)
		}
	}
}

func TestDecodeControlBoundedAllocation(t *testing.T) {
	// Before DecodeControl checked bodies itself, the library allocated
	// 4 bytes per declared tag: 64 MiB here.
	body := []byte{0x81, 0xa4, 't', 'a', 'g', 's', 0xdd, 0x01, 0x00, 0x00, 0x00, 0x01}
	if got := allocatedBytes(func() { DecodeControl(TypeHandshake, body) }); got > 64<<10 {
		t.Fatalf("DecodeControl allocated %d bytes for a %d-byte body", got, len(body))
	}
}

// allocatedBytes returns how many bytes fn allocates.
func allocatedBytes(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestAppendPing(t *testing.T) {
	for _, pong := range []bool{false, true} {
		b := AppendPing(nil, 99, pong)
		typ, n, err := ParseHeader(b, 0)
		want := TypePing
		if pong {
			want = TypePong
		}
		if err != nil || typ != want || n != len(b)-HeaderSize {
			t.Fatalf("pong=%v: %v %d %v", pong, typ, n, err)
		}
		v, err := DecodeControl(typ, b[HeaderSize:])
		if err != nil || v.(*Ping).Value != 99 {
			t.Fatalf("pong=%v: %+v %v", pong, v, err)
		}
	}
}

// specData is a data frame as spec.md, section 5, describes it, decoded
// independently of data.go: encoding/binary for the varints, the msgpack
// library for metadata and lists.
type specData struct {
	Flags                     byte
	Tag                       uint64
	Origin, TID               uint64
	Target, Key, OriginZipper string
	Metadata                  map[string]string
	Path, Names               []string
	Payload                   []byte
}

func specDecode(t *testing.T, body []byte) specData {
	t.Helper()
	r := bytes.NewReader(body)
	var s specData
	var err error
	must := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	field := func() []byte {
		n, e := binary.ReadUvarint(r)
		must(e)
		b := make([]byte, n)
		_, e = io.ReadFull(r, b)
		must(e)
		return b
	}
	var e error
	s.Flags, e = r.ReadByte()
	must(e)
	s.Tag, e = binary.ReadUvarint(r)
	must(e)
	if s.Flags&0x01 != 0 {
		must(binary.Read(r, binary.BigEndian, &s.Origin))
	}
	if s.Flags&0x02 != 0 {
		s.TID, e = binary.ReadUvarint(r)
		must(e)
	}
	if s.Flags&0x04 != 0 {
		s.Target = string(field())
	}
	if s.Flags&0x08 != 0 {
		must(msgpack.Unmarshal(field(), &s.Metadata))
	}
	if s.Flags&0x10 != 0 {
		s.Key = string(field())
	}
	if s.Flags&0x20 != 0 {
		s.OriginZipper = string(field())
	}
	if s.Flags&0x40 != 0 {
		for _, l := range []*[]string{&s.Path, &s.Names} {
			if b := field(); len(b) > 0 {
				must(msgpack.Unmarshal(b, l))
			}
		}
	}
	if s.Flags&0x80 != 0 {
		field()
	}
	s.Payload, _ = io.ReadAll(r)
	if err != nil {
		t.Fatalf("spec decoding of %x: %v", body, err)
	}
	return s
}

// TestDataLayout checks AppendData's bodies against spec.md's layout,
// decoded independently (specDecode), and the flags byte against the
// fields that are set: a field is written exactly when it is not empty.
func TestDataLayout(t *testing.T) {
	list := func(l StrList) []string {
		var out []string
		l.Range(func(s []byte) bool { out = append(out, string(s)); return true })
		return out
	}
	for _, c := range dataCases {
		t.Run(c.name, func(t *testing.T) {
			d := c.d
			got := specDecode(t, AppendData(nil, &d)[HeaderSize:])
			var flags byte
			for bit, set := range map[byte]bool{0x01: d.Origin != 0, 0x02: d.TID != 0, 0x04: len(d.Target) > 0,
				0x08: d.Metadata.Len() > 0, 0x10: len(d.Key) > 0, 0x20: len(d.OriginZipper) > 0,
				0x40: d.Path.Len()+d.Names.Len() > 0} {
				if set {
					flags |= bit
				}
			}
			meta := map[string]string(nil)
			d.Metadata.Range(func(k, v []byte) bool {
				if meta == nil {
					meta = map[string]string{}
				}
				meta[string(k)] = string(v)
				return true
			})
			want := specData{Flags: flags, Tag: uint64(d.Tag), Origin: d.Origin, TID: d.TID,
				Target: string(d.Target), Key: string(d.Key), OriginZipper: string(d.OriginZipper),
				Metadata: meta, Path: list(d.Path), Names: list(d.Names), Payload: d.Payload}
			if len(want.Payload) == 0 {
				want.Payload = []byte{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("spec decoding gives\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

// TestDataMsgpackFields checks that the metadata and list fields hold
// what the msgpack library writes, in any of its formats.
func TestDataMsgpackFields(t *testing.T) {
	meta, err := msgpack.Marshal(map[string]any{"k": []byte("v")}) // bin value
	if err != nil {
		t.Fatal(err)
	}
	path, err := msgpack.Marshal([]string{"eu", "us"})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{0x48, 0x21}
	body = append(binary.AppendUvarint(body, uint64(len(meta))), meta...)
	body = append(binary.AppendUvarint(body, uint64(len(path))), path...)
	body = append(body, 0x00) // names: empty
	body = append(body, "hello"...)
	var d Data
	if err := d.Decode(body); err != nil {
		t.Fatal(err)
	}
	want := Data{Tag: 33, Metadata: MetadataOf("k", "v"), Path: AppendStrList(nil, "eu", "us"), Payload: []byte("hello")}
	if !dataEqual(&d, &want) {
		t.Fatalf("got %+v", d)
	}
}

// TestControlWithLibraryMaps checks that control bodies written as plain
// maps by another encoder (shortest ints, keys in another order) decode.
func TestControlWithLibraryMaps(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	err := enc.Encode(map[string]any{"target": "sfn-1", "kind": 2, "tags": []int{33, 300}, "version": 1, "name": "f", "id": 5, "new": "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := DecodeControl(TypeHandshake, buf.Bytes())
	want := &Handshake{Version: 1, Name: "f", Kind: KindFunction, ID: 5, ObserveTags: []Tag{33, 300}, WantedTarget: "sfn-1"}
	if err != nil || !controlEqual(v, want) {
		t.Fatalf("got %+v %v", v, err)
	}
}

func TestReaderErrors(t *testing.T) {
	valid := AppendData(nil, &Data{Tag: 1, Payload: []byte("abc")})
	large := AppendData(nil, &Data{Tag: 1, Payload: pattern(100 << 10)})
	cases := []struct {
		name   string
		stream []byte
		max    int
		frames int // valid frames before the error
		want   error
	}{
		{"empty stream", nil, 0, 0, io.EOF},
		{"clean end", append(append([]byte(nil), valid...), valid...), 0, 2, io.EOF},
		{"truncated header", []byte{0x04, 0x00, 0x00}, 0, 0, io.ErrUnexpectedEOF},
		{"truncated header after frame", append(append([]byte(nil), valid...), 0x04), 0, 1, io.ErrUnexpectedEOF},
		{"truncated body", valid[:len(valid)-1], 0, 0, io.ErrUnexpectedEOF},
		{"header only", valid[:HeaderSize], 0, 0, io.ErrUnexpectedEOF},
		{"truncated large body", large[:len(large)-1], 0, 0, io.ErrUnexpectedEOF},
		{"unknown type 0", []byte{0x00, 0, 0, 0, 0}, 0, 0, ErrUnknownType},
		{"unknown type 18", []byte{0x12, 0, 0, 0, 0}, 0, 0, ErrUnknownType},
		{"unknown type ff", append(append([]byte(nil), valid...), 0xff, 0, 0, 0, 0), 0, 1, ErrUnknownType},
		{"data over max", AppendData(nil, &Data{Payload: make([]byte, 100)}), 100, 0, ErrFrameTooLarge},
		{"data over default", AppendHeader(nil, TypeData, DefaultMaxSize+1), 0, 0, ErrFrameTooLarge},
		{"control over MaxControlSize", AppendHeader(nil, TypeRejected, MaxControlSize+1), 0, 0, ErrFrameTooLarge},
		{"length 2^32-1", AppendHeader(nil, TypeData, 1<<32-1), 1<<31 - 1, 0, ErrFrameTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(c.stream), c.max)
			for i := 0; i < c.frames; i++ {
				if _, _, err := r.Next(); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			typ, body, err := r.Next()
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v %d-byte body %v, want %v", typ, len(body), err, c.want)
			}
			var te *TypeError
			var se *SizeError
			switch c.want {
			case ErrUnknownType:
				if !errors.As(err, &te) || te.Type != Type(c.stream[len(c.stream)-HeaderSize]) {
					t.Fatalf("got %#v", err)
				}
			case ErrFrameTooLarge:
				if !errors.As(err, &se) || se.Size <= se.Max || se.Type != typ {
					t.Fatalf("got %#v", err)
				}
			}
			// A bad header stays bad.
			if c.want == ErrUnknownType || c.want == ErrFrameTooLarge {
				if _, _, err2 := r.Next(); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("second Next: %v", err2)
				}
			}
		})
	}
}

// lyingReader declares a frame of size bytes and then sends only a few.
type lyingReader struct{ b []byte }

func (r *lyingReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestReaderNoLargeAllocation(t *testing.T) {
	for _, size := range []int{DefaultMaxSize, DefaultMaxSize + 1, MaxControlSize + 1, 1<<32 - 1} {
		for _, typ := range []Type{TypeData, TypeHandshake} {
			stream := append(AppendHeader(nil, typ, size), "0123456789"...)
			var err error
			got := allocatedBytes(func() {
				r := NewReader(&lyingReader{b: stream}, 0)
				_, _, err = r.Next()
			})
			if err == nil {
				t.Fatalf("%v of %d bytes: no error", typ, size)
			}
			// The reader's own buffer (32 KiB) plus one growth chunk
			// (256 KiB) at most.
			if got >= 512<<10 {
				t.Errorf("%v of %d bytes with 10 sent: allocated %d bytes (%v)", typ, size, got, err)
			}
		}
	}
}

func TestDecodeMalformed(t *testing.T) {
	valid := AppendData(nil, &dataCases[1].d)[HeaderSize:]
	// body returns a data body made of the flags byte and the given parts.
	body := func(flags byte, parts ...string) []byte {
		return append([]byte{flags}, strings.Join(parts, "")...)
	}
	// field returns s with its length as a uvarint.
	field := func(s string) string { return string(binary.AppendUvarint(nil, uint64(len(s)))) + s }
	entries := func(n int) string {
		m := []byte{0xde, 0x00, byte(n)}
		for i := 0; i < n; i++ {
			m = append(m, 0xa1, 'k', 0xa0)
		}
		return string(m)
	}
	if err := new(Data).Decode(body(0x08, "\x21", field(entries(MaxMetadataEntries)), "p")); err != nil {
		t.Fatalf("MaxMetadataEntries entries refused: %v", err)
	}
	many := make([]string, MaxListEntries+1)
	for i := range many {
		many[i] = "z"
	}
	const tag = "\x21"
	cases := map[string][]byte{
		"empty":                      nil,
		"flags only":                 {0x00},
		"tag truncated":              {0x00, 0x80},
		"tag 11 bytes":               body(0, strings.Repeat("\xff", 10)+"\x01"),
		"tag above 2^64-1":           body(0, strings.Repeat("\xff", 9)+"\x02"),
		"tag not shortest":           body(0, "\xa1\x00"),
		"tag zero not shortest":      body(0, "\x80\x80\x00"),
		"tag over 32 bits":           body(0, "\x80\x80\x80\x80\x10"),
		"origin truncated":           body(0x01, tag, "\x00\x00\x00\x00\x00\x00\x07"),
		"tid truncated":              body(0x02, tag, "\x81"),
		"tid not shortest":           body(0x02, tag, "\x81\x00"),
		"target missing":             body(0x04, tag),
		"target runs past the body":  body(0x04, tag, "\x05abcd"),
		"target length huge":         body(0x04, tag, "\xff\xff\xff\xff\x0fabc"),
		"target length 2^64-1":       body(0x04, tag, strings.Repeat("\xff", 9)+"\x01abc"),
		"target length overflow":     body(0x04, tag, strings.Repeat("\xff", 10)+"\x01abc"),
		"metadata is an array":       body(0x08, tag, field("\x90")),
		"metadata is a string":       body(0x08, tag, field("\xa0")),
		"metadata int value":         body(0x08, tag, field("\x81\xa1k\x01")),
		"metadata nil value":         body(0x08, tag, field("\x81\xa1k\xc0")),
		"metadata int key":           body(0x08, tag, field("\x81\x01\xa1v")),
		"metadata map value":         body(0x08, tag, field("\x81\xa1k\x80")),
		"metadata truncated":         body(0x08, tag, field("\x82\xa1k\xa1v")),
		"metadata too many":          body(0x08, tag, field(entries(MaxMetadataEntries+1))),
		"metadata map32 huge":        body(0x08, tag, field("\xdf\xff\xff\xff\xff")),
		"metadata trailing bytes":    body(0x08, tag, field("\x81\xa1k\xa1v\x00"), "payload"),
		"metadata past its field":    body(0x08, tag, "\x03\x81\xa1k\xa1v"),
		"key runs past the body":     body(0x10, tag, "\x09dev"),
		"origin zipper past body":    body(0x20, tag, "\x03eu"),
		"path is a map":              body(0x40, tag, field("\x80"), "\x00"),
		"path of ints":               body(0x40, tag, field("\x91\x01"), "\x00"),
		"path too long":              body(0x40, tag, field(string(AppendStrList(nil, many...))), "\x00"),
		"path trailing bytes":        body(0x40, tag, field("\x91\xa1a\xa1b"), "\x00"),
		"path array32 huge":          body(0x40, tag, field("\xdd\xff\xff\xff\xff"), "\x00"),
		"names missing":              body(0x40, tag, field("\x91\xa1a")),
		"names truncated":            body(0x40, tag, "\x00", "\x05\x91\xa1a"),
		"extension truncated":        body(0x80, tag, "\x05abc"),
		"extension length not short": body(0x80, tag, "\x80\x00"),
		"all flags, truncated":       body(0xff, tag, "\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00\x00\x00"),
		"truncated example":          valid[:2+8+1+1+3],
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			var d Data
			err := d.Decode(body)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%x) = %v, want ErrMalformed", body, err)
			}
		})
	}
}

// TestDecodeAccepts lists the encodings a decoder must accept besides the
// ones AppendData writes.
func TestDecodeAccepts(t *testing.T) {
	cases := []struct {
		name string
		body string
		want Data
	}{
		{"flags and tag only", "\x00\x05", Data{Tag: 5}},
		{"tag 0", "\x00\x00", Data{}},
		{"tag 2^32-1, 5 bytes", "\x00\xff\xff\xff\xff\x0fx", Data{Tag: 1<<32 - 1, Payload: []byte("x")}},
		{"origin and tid present but 0", "\x03\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00", Data{Tag: 1}},
		{"tid 2^64-1, 10 bytes", "\x02\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", Data{Tag: 1, TID: 1<<64 - 1}},
		{"fields present with length 0", "\x7c\x01\x00\x00\x00\x00\x00\x00p", Data{Tag: 1, Payload: []byte("p")}},
		{"metadata nil", "\x08\x01\x01\xc0", Data{Tag: 1}},
		{"metadata empty map 16", "\x08\x01\x03\xde\x00\x00", Data{Tag: 1}},
		{"metadata map 16, bin key, str 8 value", "\x08\x01\x09\xde\x00\x01\xc4\x01k\xd9\x01v", Data{Tag: 1, Metadata: MetadataOf("k", "v")}},
		{"metadata map 32", "\x08\x01\x09\xdf\x00\x00\x00\x01\xa1k\xa1v", Data{Tag: 1, Metadata: MetadataOf("k", "v")}},
		{"empty lists as 0x90", "\x40\x01\x01\x90\x01\x90", Data{Tag: 1}},
		{"path entries as bin", "\x40\x01\x06\x92\xc4\x01a\xa1b\x00", Data{Tag: 1, Path: StrList("\x92\xc4\x01a\xa1b")}},
		{"spec.md example: extension area", // keep in sync with spec.md, section 7.1
			"\x80\x01\x03new", Data{Tag: 1, Seq: []byte("new")}},
		{"extension area then payload", "\x92\x21\x07\x03dev\x02\x00\x01hi", Data{Tag: 33, TID: 7, Key: []byte("dev"), Seq: []byte{0, 1}, Payload: []byte("hi")}},
		{"empty extension area", "\x80\x01\x00", Data{Tag: 1}},
		{"payload of 0x00 bytes", "\x00\x01\x00\x00", Data{Tag: 1, Payload: []byte{0, 0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var d Data
			if err := d.Decode([]byte(c.body)); err != nil {
				t.Fatal(err)
			}
			if !dataEqual(&d, &c.want) {
				t.Fatalf("got %+v, want %+v", d, c.want)
			}
			// Re-encoding gives the canonical form, which decodes the same.
			var d2 Data
			if err := d2.Decode(AppendData(nil, &d)[HeaderSize:]); err != nil || !dataEqual(&d, &d2) {
				t.Fatalf("re-encoded: %+v %v", d2, err)
			}
		})
	}
}

func TestDecodeAliases(t *testing.T) {
	body := AppendData(nil, &dataCases[1].d)[HeaderSize:]
	var d Data
	if err := d.Decode(body); err != nil {
		t.Fatal(err)
	}
	// The fields alias body, and appending to one cannot overwrite the next.
	d.Target = append(d.Target, '!')
	var d2 Data
	if err := d2.Decode(body); err != nil || !dataEqual(&d2, &dataCases[1].d) {
		t.Fatalf("appending to Target changed the body: %v", err)
	}
	if &d2.Payload[0] != &body[len(body)-5] {
		t.Fatal("Payload does not alias the body")
	}
}

// cycleReader returns its bytes over and over.
type cycleReader struct {
	b   []byte
	off int
}

func (r *cycleReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.b[r.off:])
		n += c
		r.off = (r.off + c) % len(r.b)
	}
	return n, nil
}

func TestZeroAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	var large Data
	for _, c := range dataCases {
		d := c.d
		if HeaderSize+DataSize(&d) > readBufferSize {
			large = d // its body is read into a buffer that grows
			continue
		}
		buf := make([]byte, 0, HeaderSize+DataSize(&d))
		if n := testing.AllocsPerRun(100, func() { buf = AppendData(buf[:0], &d) }); n != 0 {
			t.Errorf("%s: AppendData: %v allocations", c.name, n)
		}
		r := NewReader(&cycleReader{b: AppendData(nil, &d)}, 0)
		var got Data
		n := testing.AllocsPerRun(100, func() {
			_, body, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Decode(body); err != nil {
				t.Fatal(err)
			}
		})
		if n != 0 {
			t.Errorf("%s: Next and Decode: %v allocations", c.name, n)
		}
		if !dataEqual(&got, &d) {
			t.Errorf("%s: got %+v", c.name, got)
		}
	}
	// Large frames reuse the reader's buffer once it has grown.
	r := NewReader(&cycleReader{b: AppendData(nil, &large)}, 0)
	r.Next()
	if n := testing.AllocsPerRun(20, func() { r.Next() }); n != 0 {
		t.Errorf("large frame: %v allocations", n)
	}
	m := MetadataOf("a", "1", "bb", "22")
	if n := testing.AllocsPerRun(100, func() {
		m.Range(func(k, v []byte) bool { return true })
		m.Len()
		m.Equal(m)
		m.lookup("bb")
	}); n != 0 {
		t.Errorf("Metadata: %v allocations", n)
	}
}

// TestDecodeControlRoutesOverflow: the integers of a route, nested in the
// "routes" array, are range-checked like a handshake's. Before the frame
// types had one descriptor each, Routes had no entry in the table of
// integer fields and kind=257, tag=2^32+5, cost=2^33+7 decoded silently
// as 1, 5 and 7.
func TestDecodeControlRoutesOverflow(t *testing.T) {
	route := func(kind, tag, cost any) []byte {
		b, err := msgpack.Marshal(map[string]any{"routes": []any{
			map[string]any{"kind": kind, "tag": tag, "name": "f", "cost": cost, "path": []string{"eu"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name      string
		body      []byte
		wantField string // in the error
	}{
		{"all three", route(uint64(257), uint64(1<<32+5), uint64(1<<33+7)), "out of range"}, // keys in any order
		{"kind over 8 bits", route(uint64(257), uint64(5), uint64(7)), "kind: 257 out of range"},
		{"tag over 32 bits", route(uint64(1), uint64(1<<32+5), uint64(7)), "tag: 4294967301 out of range"},
		{"cost over 32 bits", route(uint64(1), uint64(5), uint64(1<<33+7)), "cost: 8589934599 out of range"},
		{"negative cost", route(uint64(1), uint64(5), int64(-1)), "cost: negative integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := DecodeControl(TypeRoutes, c.body)
			if err == nil || v != nil {
				t.Fatalf("decoded %+v, %v; want an error", v, err)
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "malformed routes frame: routes[0].") || !strings.Contains(err.Error(), c.wantField) {
				t.Fatalf("got %v, want ErrMalformed naming the routes frame, routes[0] and %q", err, c.wantField)
			}
		})
	}
	// The largest values of each field still decode.
	v, err := DecodeControl(TypeRoutes, route(uint64(255), uint64(1<<32-1), uint64(1<<32-1)))
	want := &RouteUpdate{Routes: []Route{{Kind: 255, Tag: 1<<32 - 1, Name: "f", Cost: 1<<32 - 1, Path: []string{"eu"}}}}
	if err != nil || !reflect.DeepEqual(v, want) {
		t.Fatalf("in range: %+v, %v", v, err)
	}
}

// TestIntegerFields pins the integer ranges derived from the control
// structs: they are those of the table that used to be written by hand
// (for the types it covered), plus the fields of a route.
func TestIntegerFields(t *testing.T) {
	ints := func(d *descriptor) map[string]uint64 {
		m := make(map[string]uint64)
		var walk func(prefix string, s mapSchema)
		walk = func(prefix string, s mapSchema) {
			for k, f := range s {
				if f.array {
					k += "[]"
				}
				if f.sub != nil {
					walk(prefix+k+".", f.sub)
				} else {
					m[prefix+k] = f.max
				}
			}
		}
		walk("", d.fields)
		return m
	}
	want := map[Type]map[string]uint64{
		TypeHandshake:    {"version": math.MaxUint32, "kind": math.MaxUint8, "id": math.MaxUint64, "tags[]": math.MaxUint32, "max_frame": math.MaxUint32, "acked": math.MaxUint64},
		TypeHandshakeAck: {"conn_id": math.MaxUint64, "max_frame": math.MaxUint32},
		TypeRejected:     {"code": math.MaxUint16},
		TypeGoAway:       {},
		TypePing:         {"value": math.MaxUint64},
		TypePong:         {"value": math.MaxUint64},
		TypeDropped:      {"count": math.MaxUint64, "total": math.MaxUint64},
		TypeRoutes:       {"routes[].kind": math.MaxUint8, "routes[].tag": math.MaxUint32, "routes[].cost": math.MaxUint32},
		TypeSubscribe:    {"seq": math.MaxUint64, "tags[]": math.MaxUint32},
		TypeSubscribed:   {"seq": math.MaxUint64},
		TypeFlush:        {"frames": math.MaxUint64},
		TypeFlushed:      {"frames": math.MaxUint64},
		TypeCustody:      {"frames": math.MaxUint64},
		TypeBodies:       {},
		TypeDataStream:   {},
	}
	for _, typ := range controlTypes {
		if got := ints(describe(typ)); !reflect.DeepEqual(got, want[typ]) {
			t.Errorf("%v: integer fields %v, want %v", typ, got, want[typ])
		}
	}
	if len(controlTypes) != len(want) {
		t.Errorf("%d control types, want %d", len(controlTypes), len(want))
	}
	defer func() {
		if recover() == nil {
			t.Error("schemaOf accepted a signed integer field")
		}
	}()
	schemaOf(reflect.TypeFor[struct {
		N int `msgpack:"n"`
	}]())
}

// TestDescriptors checks that the descriptors agree with one another: a
// data type has no control value and the data limit, a control type both
// a value and a limit, names are unique, and AppendControl writes each
// value as the first type that decodes into it.
func TestDescriptors(t *testing.T) {
	names := make(map[string]Type)
	for i := range types {
		typ := Type(i)
		d := describe(typ)
		if d == nil {
			continue
		}
		if prev, dup := names[d.name]; dup {
			t.Errorf("%#x and %#x are both named %q", uint8(prev), i, d.name)
		}
		names[d.name] = typ
		data := d.stream == dataStream
		if d.stream == bodyStream {
			// A body stream's first frame: the data encoding, a fixed limit.
			if d.newValue != nil || d.maxBody != MaxEnvelope || d.from == "" {
				t.Errorf("%v: value %v, limit %d, from %q", typ, d.newValue != nil, d.maxBody, d.from)
			}
			continue
		}
		if data != (d.newValue == nil) || data != (d.maxBody == 0) || d.stream == 0 || d.from == "" {
			t.Errorf("%v: stream %d, value %v, limit %d, from %q", typ, d.stream, d.newValue != nil, d.maxBody, d.from)
		}
		if data {
			continue
		}
		b, err := AppendControl(nil, d.newValue())
		want := typ
		if typ == TypePong {
			want = TypePing // AppendPing writes pongs
		}
		if err != nil || Type(b[0]) != want {
			t.Errorf("AppendControl(%T): %x %v, want a %v frame", d.newValue(), b, err, want)
		}
	}
}

// TestParseDatagramRejects: every malformed datagram is refused with a
// typed error, never a panic.
func TestParseDatagramRejects(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"type only", []byte{byte(TypeData)}, ErrMalformed},
		{"sequence 0", []byte{byte(TypeData), 0, 0, 1}, ErrMalformed},
		{"sequence not shortest", []byte{byte(TypeData), 0x81, 0x00, 0, 1}, ErrMalformed},
		{"sequence truncated", []byte{byte(TypeData), 0x81}, ErrMalformed},
		{"no body", []byte{byte(TypeData), 1}, ErrMalformed},
		{"control type", []byte{byte(TypePing), 1, 0, 1}, ErrUnknownType},
		{"unknown type", []byte{0xff, 1, 0, 1}, ErrUnknownType},
	} {
		if _, _, err := ParseDatagram(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: ParseDatagram(%x) = %v, want %v", c.name, c.b, err, c.want)
		}
	}
}

// DataSizeBound is never below the encoded frame's length, with every
// field present and the integers at their widest, nor far above it.
func TestDataSizeBound(t *testing.T) {
	for _, d := range []*Data{
		{},
		{Tag: 1, Payload: []byte("x")},
		{
			Tag: math.MaxUint32, Origin: math.MaxUint64, TID: math.MaxUint64,
			// Each field longer than the bound's slack, so that the bound
			// fails if it leaves any out.
			Target: bytes.Repeat([]byte("t"), 300), Metadata: metadataFrom("k\x00" + strings.Repeat("v", 300)),
			Key: bytes.Repeat([]byte("k"), 300), OriginZipper: bytes.Repeat([]byte("z"), 300),
			Path: AppendStrList(nil, strings.Repeat("a", 300)), Names: AppendStrList(nil, strings.Repeat("f", 300)),
			Seq: bytes.Repeat([]byte{7}, 300), Payload: make([]byte, 70000),
		},
	} {
		n := len(AppendData(nil, d))
		if b := DataSizeBound(d); b < n || b > n+maxDataOverhead {
			t.Fatalf("DataSizeBound %d for a frame of %d bytes", b, n)
		}
	}
}
