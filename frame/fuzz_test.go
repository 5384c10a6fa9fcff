package frame

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// controlTypes are the frame types DecodeControl decodes.
var controlTypes = func() []Type {
	var ts []Type
	for t := range types {
		if types[t].newValue != nil {
			ts = append(ts, Type(t))
		}
	}
	return ts
}()

// fuzzMax is the data frame limit of FuzzReader: small, so that the
// fuzzer reaches it.
const fuzzMax = 1 << 10

// addGoldenFrames seeds f with every golden frame, alone and concatenated.
func addGoldenFrames(f *testing.F) {
	var all []byte
	for _, c := range dataCases {
		b := readGolden(f, c.name)
		f.Add(b)
		if len(b) < 2048 {
			all = append(all, b...)
		}
	}
	for _, c := range controlCases {
		b := readGolden(f, c.name)
		f.Add(b)
		all = append(all, b...)
	}
	for _, c := range bodyCases {
		f.Add(readGolden(f, c.name))
	}
	f.Add(all)
}

// checkFrameBody checks what Reader.Next returned: a data body decodes or
// fails with ErrMalformed, and what decodes survives a round trip; a
// control body likewise.
func checkFrameBody(t *testing.T, typ Type, body []byte) {
	if typ == TypeBody {
		checkBodyFrame(t, body)
		return
	}
	if typ == TypeData {
		var d Data
		if err := d.Decode(body); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode: %v", err)
			}
			return
		}
		checkDataReencodes(t, &d)
		return
	}
	v, err := DecodeControl(typ, body)
	if err != nil {
		var te *TypeError
		if !errors.Is(err, ErrMalformed) && !errors.As(err, &te) {
			t.Fatalf("DecodeControl(%v): %v", typ, err)
		}
		return
	}
	checkControlReencodes(t, typ, v)
}

// checkDataReencodes encodes d, decodes the result and compares.
func checkDataReencodes(t *testing.T, d *Data) {
	t.Helper()
	b := AppendData(nil, d)
	typ, n, err := ParseHeader(b, 1<<31-1)
	if err != nil || typ != TypeData || n != len(b)-HeaderSize || n != DataSize(d) {
		t.Fatalf("header of re-encoded frame: %v %d %v (frame of %d bytes)", typ, n, err, len(b))
	}
	var d2 Data
	if err := d2.Decode(b[HeaderSize:]); err != nil {
		t.Fatalf("re-encoded frame %x: %v", b, err)
	}
	if !dataEqual(d, &d2) {
		t.Fatalf("round trip changed the frame:\n%+v\n%+v", d, &d2)
	}
}

// checkControlReencodes encodes v as a frame of type typ, decodes it and
// compares.
func checkControlReencodes(t *testing.T, typ Type, v any) {
	t.Helper()
	var b []byte
	var err error
	if typ == TypePong {
		b = AppendPing(nil, v.(*Ping).Value, true)
	} else {
		b, err = AppendControl(nil, v)
	}
	if err != nil {
		if errors.Is(err, ErrFrameTooLarge) {
			return // a body near the limit may grow when re-encoded
		}
		t.Fatalf("AppendControl(%+v): %v", v, err)
	}
	gt, n, err := ParseHeader(b, 0)
	if err != nil || gt != typ || n != len(b)-HeaderSize {
		t.Fatalf("header of re-encoded frame: %v %d %v", gt, n, err)
	}
	v2, err := DecodeControl(typ, b[HeaderSize:])
	if err != nil {
		t.Fatalf("re-encoded %v frame %x: %v", typ, b, err)
	}
	if !controlEqual(v, v2) {
		t.Fatalf("round trip changed the %v frame:\n%+v\n%+v", typ, v, v2)
	}
}

// checkAllocated fails if fn allocated more than a bound proportional to
// the input, which would mean that a declared length was trusted.
func checkAllocated(t *testing.T, input int, fn func()) {
	t.Helper()
	if got, bound := allocatedBytes(fn), uint64(512<<10+256*input); got > bound {
		t.Fatalf("allocated %d bytes for %d bytes of input (bound %d)", got, input, bound)
	}
}

func FuzzReader(f *testing.F) {
	addGoldenFrames(f)
	f.Add([]byte{})
	f.Add(AppendHeader(nil, TypeData, fuzzMax))
	f.Add(AppendHeader(nil, TypeData, fuzzMax+1))
	f.Add(AppendHeader(nil, TypeHandshake, MaxControlSize))
	f.Add(AppendHeader(nil, 0x08, 0))
	f.Fuzz(func(t *testing.T, stream []byte) {
		checkAllocated(t, len(stream), func() {
			r := NewReader(bytes.NewReader(stream), fuzzMax)
			consumed := 0
			for {
				typ, body, err := r.Next()
				if err != nil {
					var te *TypeError
					var se *SizeError
					switch {
					case err == io.EOF:
						if consumed != len(stream) {
							t.Fatalf("io.EOF after %d of %d bytes", consumed, len(stream))
						}
					case err == io.ErrUnexpectedEOF:
					case errors.As(err, &te):
						if typ.Known() || te.Type != typ {
							t.Fatalf("TypeError for %v", typ)
						}
					case errors.As(err, &se):
						if se.Size <= se.Max || (typ == TypeData) != (se.Max == fuzzMax) {
							t.Fatalf("bad SizeError %+v", se)
						}
					default:
						t.Fatalf("unexpected error %v", err)
					}
					return
				}
				consumed += HeaderSize + len(body)
				if !typ.Known() || (typ == TypeData && len(body) > fuzzMax) || len(body) > MaxControlSize {
					t.Fatalf("Next returned a %v frame of %d bytes", typ, len(body))
				}
				checkFrameBody(t, typ, body)
			}
		})
	})
}

// metadataFrom builds metadata from a string of NUL-separated keys and
// values (nil for an empty string).
func metadataFrom(s string) Metadata {
	if s == "" {
		return nil
	}
	kv := strings.Split(s, "\x00")
	kv = kv[:len(kv)&^1]
	kv = kv[:min(len(kv), 2*MaxMetadataEntries)]
	return MetadataOf(kv...)
}

func FuzzDataRoundTrip(f *testing.F) {
	for _, c := range dataCases {
		var kv []string
		c.d.Metadata.Range(func(k, v []byte) bool {
			kv = append(kv, string(k), string(v))
			return true
		})
		raw := readGolden(f, c.name)[HeaderSize:]
		f.Add(c.d.Tag, c.d.Target, c.d.Origin, c.d.TID, strings.Join(kv, "\x00"), c.d.Payload, raw)
	}
	f.Fuzz(func(t *testing.T, tag uint32, target []byte, origin, tid uint64, meta string, payload, raw []byte) {
		// Property 1: what is encoded decodes to the same values.
		in := Data{Tag: tag, Target: target, Origin: origin, TID: tid, Metadata: metadataFrom(meta), Payload: payload}
		// The tag's low bits also choose the optional fields, so that every
		// flag is exercised without changing the corpus format.
		if tag&1 != 0 {
			in.Key = payload[:len(payload)/2]
		}
		if tag&2 != 0 {
			in.OriginZipper = target
		}
		if tag&4 != 0 {
			items := strings.Split(meta, "\x00")
			in.Path = AppendStrList(nil, items[:min(len(items), MaxListEntries)]...)
		}
		if tag&8 != 0 {
			in.Names = AppendStrList(nil, string(target))
		}
		frame := AppendData(nil, &in)
		if b := DataSizeBound(&in); b < len(frame) || b > len(frame)+maxDataOverhead {
			t.Fatalf("DataSizeBound %d for a frame of %d bytes", b, len(frame))
		}
		r := NewReader(bytes.NewReader(frame), len(frame))
		typ, body, err := r.Next()
		if err != nil || typ != TypeData {
			t.Fatalf("Next: %v %v", typ, err)
		}
		var out Data
		if err := out.Decode(body); err != nil {
			t.Fatalf("Decode(%x): %v", body, err)
		}
		if !dataEqual(&in, &out) {
			t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
		}

		// Property 2: arbitrary bytes that decode re-encode to a frame that
		// decodes to the same values.
		var d Data
		checkAllocated(t, len(raw), func() { err = d.Decode(raw) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode: %v", err)
			}
			return
		}
		checkDataReencodes(t, &d)
	})
}

func FuzzControl(f *testing.F) {
	for _, c := range controlCases {
		f.Add(readGolden(f, c.name)[HeaderSize:])
	}
	f.Add([]byte{0x81, 0xa4, 't', 'a', 'g', 's', 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x82, 0xa4, 'k', 'i', 'n', 'd', 0xcd, 0x01, 0x2c, 0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xd3, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, typ := range controlTypes {
			var v any
			var err error
			checkAllocated(t, len(body), func() { v, err = DecodeControl(typ, body) })
			if err != nil {
				var se *SizeError
				if !errors.Is(err, ErrMalformed) && (!errors.As(err, &se) || len(body) <= MaxControlSize) {
					t.Fatalf("DecodeControl(%v): %v", typ, err)
				}
				continue
			}
			checkControlReencodes(t, typ, v)
		}
	})
}

// FuzzDatagram: ParseDatagram accepts a datagram or rejects it with
// ErrUnknownType or ErrMalformed, allocating nothing; what it accepts
// and Decode takes is written back by AppendDatagram to a datagram that
// gives the same sequence number and data.
func FuzzDatagram(f *testing.F) {
	for _, c := range datagramCases {
		f.Add(readGolden(f, c.name))
	}
	f.Add([]byte{})
	f.Add([]byte{byte(TypeData)})
	f.Add([]byte{byte(TypeData), 0, 0, 1})
	f.Add([]byte{byte(TypeData), 0x80, 0x00, 0, 1})
	f.Add([]byte{byte(TypePing), 1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var seq uint64
		var body []byte
		var err error
		checkAllocated(t, len(b), func() { seq, body, err = ParseDatagram(b) })
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownType) {
				t.Fatalf("ParseDatagram: %v", err)
			}
			return
		}
		if seq == 0 || len(body) == 0 {
			t.Fatalf("ParseDatagram accepted seq %d, body of %d bytes", seq, len(body))
		}
		var d Data
		if d.Decode(body) != nil {
			return
		}
		again := AppendDatagram(nil, seq, AppendDataBody(nil, &d))
		seq2, body2, err := ParseDatagram(again)
		var d2 Data
		if err == nil {
			err = d2.Decode(body2)
		}
		if err != nil || seq2 != seq || !dataEqual(&d, &d2) {
			t.Fatalf("round trip: seq %d -> %d, %v", seq, seq2, err)
		}
	})
}
