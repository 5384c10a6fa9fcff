package frame

import (
	"bytes"
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
		bytes.Equal(a.Key, b.Key)
}

// controlEqual compares two decoded control values, treating nil and empty
// tag lists as equal (omitempty drops an empty list).
func controlEqual(a, b any) bool {
	ha, ok1 := a.(*Handshake)
	hb, ok2 := b.(*Handshake)
	if ok1 && ok2 {
		x, y := *ha, *hb
		if len(x.ObserveTags) == 0 && len(y.ObserveTags) == 0 {
			x.ObserveTags, y.ObserveTags = nil, nil
		}
		return reflect.DeepEqual(x, y)
	}
	return reflect.DeepEqual(a, b)
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

// TestDataWithLibrary checks the hand-written msgpack of data frames
// against the msgpack library, in both directions.
func TestDataWithLibrary(t *testing.T) {
	in := dataCases[1].d // data-example
	frame := AppendData(nil, &in)
	var fields []any
	if err := msgpack.Unmarshal(frame[HeaderSize:], &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 6 {
		t.Fatalf("got %d fields: %v", len(fields), fields)
	}
	want := []any{uint32(33), "sfn-1", uint64(7), uint64(42), map[string]any{"trace": "ab12"}, []byte("hello")}
	if !reflect.DeepEqual(fields, want) {
		t.Fatalf("library decoded\n%#v\nwant\n%#v", fields, want)
	}

	// Bodies written by the library: default encoding (typed ints in fixed
	// widths: uint64 as uint 64, int64 as int 64), compact ints (the
	// shortest format), str or bin, extra trailing fields.
	meta := map[string]string{"k": "v"}
	type libCase struct {
		name    string
		fields  []any
		compact bool
	}
	// Elements 6-8 are the mesh fields (origin zipper, path, names), 9 the
	// key; what follows them is from a later version and skipped.
	extra := []any{"", []string{}, []string{}, "", "future", map[string]any{"x": []any{1, -2, 3.5, nil, true}}, 1.5, nil, []byte{1}}
	cases := []libCase{
		{"uint64", []any{uint64(33), "sfn-1", uint64(7), uint64(42), meta, []byte("hello")}, false},
		{"uint64 compact", []any{uint64(33), "sfn-1", uint64(7), uint64(42), meta, []byte("hello")}, true},
		{"int64", []any{int64(33), "sfn-1", int64(7), int64(42), meta, []byte("hello")}, false},
		{"int compact", []any{33, "sfn-1", 7, 42, meta, []byte("hello")}, true},
		{"payload as str", []any{uint64(33), "sfn-1", uint64(7), uint64(42), meta, "hello"}, true},
		{"target as bin", []any{uint64(33), []byte("sfn-1"), uint64(7), uint64(42), meta, []byte("hello")}, true},
		{"extra fields", append([]any{uint64(33), "sfn-1", uint64(7), uint64(42), meta, []byte("hello")}, extra...), false},
		{"extra fields compact", append([]any{33, "sfn-1", 7, 42, meta, []byte("hello")}, extra...), true},
	}
	wantData := Data{Tag: 33, Target: []byte("sfn-1"), Origin: 7, TID: 42, Metadata: MetadataOf("k", "v"), Payload: []byte("hello")}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			enc := msgpack.NewEncoder(&buf)
			enc.UseCompactInts(c.compact)
			if err := enc.Encode(c.fields); err != nil {
				t.Fatal(err)
			}
			var d Data
			if err := d.Decode(buf.Bytes()); err != nil {
				t.Fatalf("%x: %v", buf.Bytes(), err)
			}
			if !dataEqual(&d, &wantData) {
				t.Fatalf("got %+v", d)
			}
		})
	}

	// Larger values and the boundaries of every str and bin format.
	for _, c := range dataCases {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		m := map[string]string{}
		c.d.Metadata.Range(func(k, v []byte) bool { m[string(k)] = string(v); return true })
		if len(m) > 1 { // the library writes map entries in random order
			continue
		}
		fields := []any{uint64(c.d.Tag), string(c.d.Target), c.d.Origin, c.d.TID, m, c.d.Payload}
		if len(c.d.Key) > 0 {
			fields = append(fields, string(c.d.OriginZipper), []string{}, []string{}, string(c.d.Key))
		}
		if err := enc.Encode(fields); err != nil {
			t.Fatal(err)
		}
		var d Data
		if err := d.Decode(buf.Bytes()); err != nil || !dataEqual(&d, &c.d) {
			t.Errorf("%s: library encoding: %v", c.name, err)
		}
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
		{"unknown type 14", []byte{0x0e, 0, 0, 0, 0}, 0, 0, ErrUnknownType},
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
	// fields returns a data body made of the given encoded fields.
	fields := func(head byte, parts ...string) []byte {
		b := []byte{head}
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	const (
		tag     = "\x21"
		target  = "\xa1t"
		origin  = "\x07"
		tid     = "\x2a"
		meta    = "\x80"
		payload = "\xc4\x01p"
	)
	manyEntries := []byte{0xde, 0x00, MaxMetadataEntries + 1}
	for i := 0; i < MaxMetadataEntries+1; i++ {
		manyEntries = append(manyEntries, 0xa1, 'k', 0xa0)
	}
	maxEntries := []byte{0xde, 0x00, MaxMetadataEntries}
	for i := 0; i < MaxMetadataEntries; i++ {
		maxEntries = append(maxEntries, 0xa1, 'k', 0xa0)
	}
	if err := new(Data).Decode(fields(0x96, tag, target, origin, tid, string(maxEntries), payload)); err != nil {
		t.Fatalf("MaxMetadataEntries entries refused: %v", err)
	}
	cases := map[string][]byte{
		"empty":                 nil,
		"not an array":          {0x86},
		"nil":                   {0xc0},
		"five fields":           fields(0x95, tag, target, origin, tid, meta),
		"truncated":             valid[:len(valid)-1],
		"truncated array16":     {0xdc, 0x00},
		"trailing bytes":        append(append([]byte(nil), valid...), 0xc0),
		"tag is a string":       fields(0x96, "\xa1x", target, origin, tid, meta, payload),
		"tag negative":          fields(0x96, "\xff", target, origin, tid, meta, payload),
		"tag negative int8":     fields(0x96, "\xd0\x80", target, origin, tid, meta, payload),
		"tag negative int64":    fields(0x96, "\xd3\xff\xff\xff\xff\xff\xff\xff\xff", target, origin, tid, meta, payload),
		"tag over 32 bits":      fields(0x96, "\xcf\x00\x00\x00\x01\x00\x00\x00\x00", target, origin, tid, meta, payload),
		"tag is a float":        fields(0x96, "\xca\x00\x00\x00\x00", target, origin, tid, meta, payload),
		"target is an int":      fields(0x96, tag, "\x01", origin, tid, meta, payload),
		"target is an array":    fields(0x96, tag, "\x90", origin, tid, meta, payload),
		"target truncated":      fields(0x96, tag, "\xd9\x05ab"),
		"origin is a string":    fields(0x96, tag, target, "\xa0", tid, meta, payload),
		"origin is nil":         fields(0x96, tag, target, "\xc0", tid, meta, payload),
		"tid is bool":           fields(0x96, tag, target, origin, "\xc3", meta, payload),
		"metadata is an array":  fields(0x96, tag, target, origin, tid, "\x90", payload),
		"metadata is a string":  fields(0x96, tag, target, origin, tid, "\xa0", payload),
		"metadata int value":    fields(0x96, tag, target, origin, tid, "\x81\xa1k\x01", payload),
		"metadata nil value":    fields(0x96, tag, target, origin, tid, "\x81\xa1k\xc0", payload),
		"metadata int key":      fields(0x96, tag, target, origin, tid, "\x81\x01\xa1v", payload),
		"metadata map value":    fields(0x96, tag, target, origin, tid, "\x81\xa1k\x80", payload),
		"metadata truncated":    fields(0x96, tag, target, origin, tid, "\x82\xa1k\xa1v"),
		"metadata too many":     fields(0x96, tag, target, origin, tid, string(manyEntries), payload),
		"metadata map32 huge":   fields(0x96, tag, target, origin, tid, "\xdf\xff\xff\xff\xff"),
		"payload is an int":     fields(0x96, tag, target, origin, tid, meta, "\x05"),
		"payload is an ext":     fields(0x96, tag, target, origin, tid, meta, "\xd4\x01\x02"),
		"payload truncated":     fields(0x96, tag, target, origin, tid, meta, "\xc5\x01\x00abc"),
		"payload bin32 huge":    fields(0x96, tag, target, origin, tid, meta, "\xc6\xff\xff\xff\xffabc"),
		"missing extra field":   fields(0x97, tag, target, origin, tid, meta, payload),
		"array32 huge":          fields(0xdd, "\xff\xff\xff\xff", tag, target, origin, tid, meta, payload, "\xc0"),
		"extra field invalid":   fields(0x97, tag, target, origin, tid, meta, payload, "\xc1"),
		"extra field truncated": fields(0x97, tag, target, origin, tid, meta, payload, "\xc7\x05\x01ab"),
		"extra field too deep":  fields(0x97, tag, target, origin, tid, meta, payload, strings.Repeat("\x91", 20)+"\xc0"),
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
		{"shortest ints, nil target/metadata/payload",
			"\x96\x05\xc0\x00\x01\xc0\xc0", Data{Tag: 5, TID: 1}},
		{"uint 8/16",
			"\x96\xcc\xff\xa0\xcd\x01\x00\xcd\xff\xff\x80\xc4\x00", Data{Tag: 255, Origin: 256, TID: 65535}},
		{"non-negative signed ints",
			"\x96\xd0\x7f\xa0\xd1\x7f\xff\xd2\x7f\xff\xff\xff\x80\xa0", Data{Tag: 127, Origin: 32767, TID: 1<<31 - 1}},
		{"int 64",
			"\x96\xd3\x00\x00\x00\x00\xff\xff\xff\xff\xa0\xd3\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x80\xa0",
			Data{Tag: 1<<32 - 1, Origin: 1<<63 - 1}},
		{"str 8/16/32 target, bin 16/32 payload",
			"\x96\x01\xda\x00\x02ab\x00\x00\x80\xc6\x00\x00\x00\x01x", Data{Tag: 1, Target: []byte("ab"), Payload: []byte("x")}},
		{"str 32 target, str payload",
			"\x96\x01\xdb\x00\x00\x00\x01a\x00\x00\x80\xd9\x01y", Data{Tag: 1, Target: []byte("a"), Payload: []byte("y")}},
		{"array 16/32",
			"\xdc\x00\x06\x01\xa0\x00\x00\x80\xa0", Data{Tag: 1}},
		{"array 32 with extras",
			"\xdd\x00\x00\x00\x0c\x01\xa0\x00\x00\x80\xa0\xa0\x90\x90\xa0\xc7\x02\x05ab\x92\x81\xa1a\xcb\x00\x00\x00\x00\x00\x00\x00\x00\xd8\x01" + strings.Repeat("z", 16),
			Data{Tag: 1}},
		{"map 16/32 metadata, bin keys",
			"\x96\x01\xa0\x00\x00\xde\x00\x01\xc4\x01k\xd9\x01v\xa0", Data{Tag: 1, Metadata: MetadataOf("k", "v")}},
		{"map 32 metadata",
			"\x96\x01\xa0\x00\x00\xdf\x00\x00\x00\x01\xa1k\xa1v\xa0", Data{Tag: 1, Metadata: MetadataOf("k", "v")}},
		{"spec.md example", // keep in sync with spec.md, section 7.1
			"\x9b\x01\xc0\x00\x00\xc0\xc0\xc0\x90\x90\xc0\xa3new", Data{Tag: 1}},
		{"key",
			"\x9a\x01\xc0\x00\x00\xc0\xc0\xc0\x90\x90\xa3dev", Data{Tag: 1, Key: []byte("dev")}},
		{"empty map 16 metadata",
			"\x96\x01\xa0\x00\x00\xde\x00\x00\xa0", Data{Tag: 1}},
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
	for _, c := range dataCases[:9] { // all but the 70000-byte payload, larger than the read buffer
		d := c.d
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
	d := dataCases[len(dataCases)-1].d
	r := NewReader(&cycleReader{b: AppendData(nil, &d)}, 0)
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
		TypeHandshake:    {"version": math.MaxUint32, "kind": math.MaxUint8, "id": math.MaxUint64, "tags[]": math.MaxUint32, "max_frame": math.MaxUint32},
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
