package frame

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// entries returns m's entries as "k=v" strings, in order.
func entries(m Metadata) []string {
	var out []string
	m.Range(func(k, v []byte) bool {
		out = append(out, string(k)+"="+string(v))
		return true
	})
	return out
}

func TestMetadataOf(t *testing.T) {
	m := MetadataOf("a", "1", "content-type", "text/plain", "empty", "")
	if got := strings.Join(entries(m), ","); got != "a=1,content-type=text/plain,empty=" {
		t.Fatalf("entries: %s", got)
	}
	if m.Len() != 3 {
		t.Fatalf("Len = %d", m.Len())
	}
	// The library reads it as a map of strings.
	var lib map[string]string
	if err := msgpack.Unmarshal(m, &lib); err != nil || len(lib) != 3 || lib["content-type"] != "text/plain" {
		t.Fatalf("library: %v %v", lib, err)
	}
	if e := MetadataOf(); !bytes.Equal(e, []byte{0x80}) || e.Len() != 0 {
		t.Fatalf("MetadataOf() = %x", e)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("MetadataOf with an odd count did not panic")
		}
	}()
	MetadataOf("a") //nolint:staticcheck // an odd count must panic
}

func TestMetadataGet(t *testing.T) {
	long := strings.Repeat("v", 70000) // str 32
	m := MetadataOf("a", "1", "b", "", "dup", "first", "dup", "second", "long", long)
	for _, c := range []struct {
		key, want string
		ok        bool
	}{
		{"a", "1", true},
		{"b", "", true},
		{"dup", "first", true},
		{"long", long, true},
		{"missing", "", false},
		{"", "", false},
	} {
		v, ok := m.Get(c.key)
		if v != c.want || ok != c.ok {
			t.Errorf("Get(%q) = %.10q %v, want %.10q %v", c.key, v, ok, c.want, c.ok)
		}
	}
	var empty Metadata
	if v, ok := empty.Get("a"); v != "" || ok {
		t.Error("Get on nil metadata")
	}
	// Malformed metadata reads as ending where it breaks.
	bad := Metadata{0x82, 0xa1, 'a', 0xa1, '1', 0xa1, 'b', 0x05}
	if v, ok := bad.Get("a"); v != "1" || !ok {
		t.Error("Get before the broken entry")
	}
	if _, ok := bad.Get("b"); ok {
		t.Error("Get of the broken entry")
	}
	if got := entries(bad); len(got) != 1 {
		t.Errorf("Range over malformed: %v", got)
	}
	if (Metadata{0x01}).Len() != 0 {
		t.Error("Len of a non-map")
	}
}

func TestMetadataWith(t *testing.T) {
	m := MetadataOf("a", "1", "b", "2")
	orig := append(Metadata(nil), m...)

	m2 := m.With("c", "3")
	if got := strings.Join(entries(m2), ","); got != "a=1,b=2,c=3" {
		t.Errorf("add: %s", got)
	}
	m3 := m.With("a", "x")
	if got := strings.Join(entries(m3), ","); got != "a=x,b=2" {
		t.Errorf("replace keeps the position: %s", got)
	}
	if !bytes.Equal(m, orig) {
		t.Error("With modified its receiver")
	}
	var empty Metadata
	if got := strings.Join(entries(empty.With("k", "v")), ","); got != "k=v" {
		t.Errorf("on nil: %s", got)
	}
	dup := MetadataOf("k", "1", "j", "2", "k", "3")
	if got := strings.Join(entries(dup.With("k", "9")), ","); got != "k=9,j=2" {
		t.Errorf("duplicates: %s", got)
	}

	// Growing past 15 entries switches to map 16; past 255 bytes to str 8/16.
	var g Metadata
	for i := 0; i < 20; i++ {
		g = g.With(fmt.Sprint("key", i), strings.Repeat("v", i*20))
	}
	if g.Len() != 20 || g[0] != 0xde {
		t.Fatalf("Len = %d, header %x", g.Len(), g[0])
	}
	if v, _ := g.Get("key19"); len(v) != 380 {
		t.Fatalf("key19: %d bytes", len(v))
	}
	if !g.Equal(g.With("key0", "")) {
		t.Fatal("setting a value to itself changed the metadata")
	}
	// It is valid metadata for a data frame.
	var d Data
	if err := d.Decode(AppendData(nil, &Data{Metadata: g})[HeaderSize:]); err != nil || !d.Metadata.Equal(g) {
		t.Fatalf("in a frame: %v", err)
	}
	// An entry of the form the encoder chooses for each length.
	for _, n := range []int{0, 31, 32, 255, 256, 65535, 65536} {
		v := strings.Repeat("x", n)
		m := Metadata(nil).With(v, v)
		if got, ok := m.Get(v); !ok || got != v {
			t.Errorf("length %d: lost", n)
		}
		var lib map[string]string
		if err := msgpack.Unmarshal(m, &lib); err != nil || lib[v] != v {
			t.Errorf("length %d: library: %v", n, err)
		}
	}
}

func TestMetadataEqual(t *testing.T) {
	cases := []struct {
		a, b Metadata
		want bool
	}{
		{nil, nil, true},
		{nil, MetadataOf(), true},
		{Metadata{0xc0}, nil, true},
		{Metadata{0xde, 0, 0}, nil, true},
		{MetadataOf("a", "1"), MetadataOf("a", "1"), true},
		{MetadataOf("a", "1"), nil, false},
		{MetadataOf("a", "1"), MetadataOf("a", "2"), false},
		{MetadataOf("a", "1"), MetadataOf("b", "1"), false},
		{MetadataOf("a", "1", "b", "2"), MetadataOf("b", "2", "a", "1"), false}, // order matters
		{MetadataOf("a", "1"), MetadataOf("a", "1", "a", "1"), false},
		// Different formats for the same entries.
		{MetadataOf("a", "1"), Metadata{0xde, 0x00, 0x01, 0xd9, 0x01, 'a', 0xc4, 0x01, '1'}, true},
		{MetadataOf("a", "1"), Metadata{0xdf, 0, 0, 0, 1, 0xda, 0, 1, 'a', 0xdb, 0, 0, 0, 1, '1'}, true},
		// Malformed encodings compare as bytes.
		{Metadata{0x81, 0x01}, Metadata{0x81, 0x01}, true},
		{Metadata{0x81, 0x01}, Metadata{0x81, 0x02}, false},
	}
	for i, c := range cases {
		if got := c.a.Equal(c.b); got != c.want {
			t.Errorf("%d: %x.Equal(%x) = %v", i, c.a, c.b, got)
		}
		if got := c.b.Equal(c.a); got != c.want {
			t.Errorf("%d: %x.Equal(%x) = %v (reversed)", i, c.b, c.a, got)
		}
	}
}

func TestMetadataRangeStops(t *testing.T) {
	m := MetadataOf("a", "1", "b", "2", "c", "3")
	n := 0
	m.Range(func(k, v []byte) bool {
		n++
		return string(k) != "b"
	})
	if n != 2 {
		t.Fatalf("Range called fn %d times after it returned false", n)
	}
}
