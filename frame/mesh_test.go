package frame

import (
	"bytes"
	"slices"
	"testing"
)

func TestMeshFieldsRoundTrip(t *testing.T) {
	cases := []Data{
		{Tag: 1, Payload: []byte("x"), OriginZipper: []byte("eu")},
		{Tag: 2, Payload: []byte("y"), OriginZipper: []byte("eu"), Path: AppendStrList(nil, "eu", "us"), Names: AppendStrList(nil, "f1", "f2")},
		{Tag: 3, Path: AppendStrList(nil, "a")}, // names empty: backflow
		{Tag: 4, Path: AppendStrList(nil, "a"), Names: AppendStrList(nil, "f1", "f2"), Seq: AppendSeq(nil, 1<<63|9, SeqNum{}, SeqNum{N: 300, Back: 2}), Payload: []byte("z")},
	}
	for _, in := range cases {
		buf := AppendData(nil, &in)
		if got := len(buf) - HeaderSize; got != DataSize(&in) {
			t.Fatalf("DataSize %d, encoded %d", DataSize(&in), got)
		}
		var out Data
		if err := out.Decode(buf[HeaderSize:]); err != nil {
			t.Fatal(err)
		}
		if out.Tag != in.Tag || !bytes.Equal(out.OriginZipper, in.OriginZipper) ||
			!bytes.Equal(out.Path, in.Path) || !bytes.Equal(out.Names, in.Names) || !bytes.Equal(out.Payload, in.Payload) ||
			!bytes.Equal(out.Seq, in.Seq) {
			t.Fatalf("round trip: %+v -> %+v", in, out)
		}
		// Exactly the mesh fields that are set are flagged.
		f := AppendData(nil, &in)[HeaderSize]
		if (f&flagOriginZipper != 0) != (len(in.OriginZipper) > 0) || (f&flagMesh != 0) != (len(in.Path)+len(in.Names) > 0) ||
			(f&flagExtension != 0) != (len(in.Seq) > 0) {
			t.Fatalf("flags %#x for %+v", f, in)
		}
	}
}

func TestSeq(t *testing.T) {
	in := []SeqNum{{}, {N: 127}, {N: 128, Back: 127}, {N: 1 << 40, Back: 5}}
	b := AppendSeq(nil, 0x0102030405060708, in...)
	flow, seqs, err := ParseSeq(b)
	if err != nil || flow != 0x0102030405060708 {
		t.Fatalf("flow %#x, %v", flow, err)
	}
	var got []SeqNum
	for len(seqs) > 0 {
		var v SeqNum
		if v, seqs, err = NextSeq(seqs); err != nil {
			t.Fatal(err)
		}
		got = append(got, v)
	}
	if !slices.Equal(got, in) {
		t.Fatalf("seqs %v, want %v", got, in)
	}
	if _, _, err := ParseSeq(b[:7]); err == nil {
		t.Fatal("a short flow id parsed")
	}
	for _, bad := range [][]byte{
		{0x80},       // a truncated uvarint
		{0x80, 0x00}, // a uvarint not in its shortest form
		{5},          // no back
		{5, 5},       // back not below the number
		{0, 1},       // back without a number
	} {
		if v, _, err := NextSeq(bad); err == nil {
			t.Fatalf("%x parsed as %+v", bad, v)
		}
	}
}

func TestStrList(t *testing.T) {
	l := StrList(AppendStrList(nil, "a", "bb"))
	if l.Len() != 2 || !l.Contains("bb") || l.Contains("b") {
		t.Fatalf("list %x", []byte(l))
	}
	l2 := StrList(l.AppendWith(nil, "ccc"))
	var got []string
	l2.Range(func(s []byte) bool { got = append(got, string(s)); return true })
	if len(got) != 3 || got[0] != "a" || got[1] != "bb" || got[2] != "ccc" {
		t.Fatalf("AppendWith gave %q", got)
	}
	if StrList(nil).AppendWith(nil, "x")[0] != 0x91 {
		t.Fatal("AppendWith on empty list")
	}
	if testing.AllocsPerRun(100, func() { _ = l2.Contains("ccc") }) != 0 {
		t.Fatal("Contains allocates")
	}
}

func TestListLimit(t *testing.T) {
	items := make([]string, MaxListEntries+1)
	for i := range items {
		items[i] = "z"
	}
	d := Data{Tag: 1, Path: AppendStrList(nil, items...)}
	buf := AppendData(nil, &d)
	var out Data
	if err := out.Decode(buf[HeaderSize:]); err == nil {
		t.Fatal("a path over the limit decoded")
	}
}
