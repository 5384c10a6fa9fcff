package frame

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current encoder")

// pattern returns n deterministic bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// letters returns a deterministic string of n lower-case letters.
func letters(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}

// dataCase is a data frame pinned by a golden file.
type dataCase struct {
	name string
	d    Data
}

// dataCases covers every encoding choice of AppendData: each flag alone
// and together (origin, tid, target, metadata, key, origin zipper, mesh),
// the tag as a uvarint of 1, 2, 3 and 5 bytes, the tid as a uvarint of 1
// and 10 bytes, field lengths as uvarints of 1 and 2 bytes (127, 128,
// 300), payloads empty, small and above the read buffer.
var dataCases = []dataCase{
	{"data-minimal", Data{Tag: 1}},
	{"data-example", Data{Tag: 33, Target: []byte("sfn-1"), Origin: 7, TID: 42,
		Metadata: MetadataOf("trace", "ab12"), Payload: []byte("hello")}},
	{"data-no-target", Data{Tag: 0x10203, Origin: 1, TID: 2, Payload: []byte("no target")}},
	{"data-metadata", Data{Tag: 2, Metadata: MetadataOf("k1", "v1", "content-type", "application/json", "empty", "")}},
	{"data-empty-payload", Data{Tag: 3, Target: []byte("t"), Origin: 1<<64 - 1, TID: 1 << 63}},
	{"data-tagmax-target127", Data{Tag: 0xffffffff, Target: letters(127), Payload: pattern(255)}},
	{"data-tag128-target128", Data{Tag: 128, Target: letters(128), Payload: pattern(256)}},
	{"data-300", Data{Tag: 5, Target: letters(255), Origin: 9, TID: 10,
		Metadata: MetadataOf("a", "b"), Payload: pattern(300)}},
	{"data-tag16384-target300", Data{Tag: 16384, Target: letters(300), Payload: pattern(300)}},
	{"data-70000", Data{Tag: 7, Target: letters(256), Origin: 11, TID: 12, Payload: pattern(70000)}},
	{"data-key", Data{Tag: 8, Origin: 3, TID: 4, Payload: []byte("k"), Key: []byte("device-17")}},
	{"data-source", Data{Tag: 33, Origin: 0x9e3779b97f4a7c15, TID: 1000, Payload: []byte("16 bytes of data")}},
	{"data-function-result", Data{Tag: 34, Origin: 0x9e3779b97f4a7c15, TID: 1000, OriginZipper: []byte("zipper-eu"),
		Payload: []byte("16 bytes of data")}},
	{"data-mesh", Data{Tag: 9, Origin: 5, TID: 6, Target: []byte("t"), Metadata: MetadataOf("k", "v"), Key: []byte("key"),
		OriginZipper: []byte("eu"), Path: AppendStrList(nil, "eu", "us"), Names: AppendStrList(nil, "f1"), Payload: []byte("mesh")}},
	{"data-backflow", Data{Tag: 10, Origin: 5, TID: 6, OriginZipper: []byte("eu"), Path: AppendStrList(nil, "us"), Payload: []byte("back")}},
}

// bodyCases are Body frames (the first frame of a body stream) pinned by
// golden files.
var bodyCases = []dataCase{
	{"body-minimal", Data{Tag: 1}},
	{"body-source", Data{Tag: 0x20, Target: []byte("eu"), Key: []byte("file-7"),
		Metadata: MetadataOf("content-type", "video/mp4")}},
	{"body-mesh", Data{Tag: 0x20, Origin: 5, OriginZipper: []byte("eu"),
		Path: AppendStrList(nil, "eu"), Names: AppendStrList(nil, "store")}},
}

// datagramCase is a datagram (spec.md, section 8) pinned by a golden
// file: a data frame with its sequence number.
type datagramCase struct {
	name string
	seq  uint64
	d    Data
}

// datagramCases: the sequence number as a uvarint of 1 and 2 bytes.
var datagramCases = []datagramCase{
	{"datagram-source", 1, Data{Tag: 33, TID: 7, Payload: []byte("21.5")}},
	{"datagram-forwarded", 300, Data{Tag: 33, Origin: 0x9e3779b97f4a7c15, TID: 7, Payload: []byte("21.5")}},
}

// controlCase is a control frame pinned by a golden file.
type controlCase struct {
	name string
	t    Type
	v    any
}

var controlCases = []controlCase{
	{"handshake-source", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "temp-sensor", Kind: KindSource, ID: 1001}},
	{"handshake-function", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "noise-filter",
		Kind: KindFunction, ID: 5, ObserveTags: []Tag{33, 300}, WantedTarget: "sfn-1", Credential: "token:s3cret"}},
	{"handshake-zipper", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "zipper-eu", Kind: KindZipper, ID: 1 << 40}},
	{"handshake-ack", TypeHandshakeAck, &HandshakeAck{ConnID: 77, Zipper: "zipper-1", MaxFrameSize: DefaultMaxSize}},
	{"rejected", TypeRejected, &Rejected{Code: RejectAuth, Reason: "bad credential"}},
	{"goaway", TypeGoAway, &GoAway{Reason: "shutting down"}},
	{"dropped", TypeDropped, &Dropped{Count: 12, Total: 340}},
	{"routes", TypeRoutes, &RouteUpdate{Routes: []Route{
		{Kind: RouteFunction, Tag: 33, Name: "noise-filter", Cost: 1200, Path: []string{"eu", "us"}},
		{Kind: RouteZipper, Name: "eu", Cost: 1200, Path: []string{"eu", "us"}},
		{Kind: RouteFunction, Tag: 34, Name: "old", Path: []string{"us"}, Withdraw: true},
	}}},
	{"ping", TypePing, &Ping{Value: 0x0102030405060708}},
	{"pong", TypePong, &Ping{Value: 0x0102030405060708}},
	{"subscribe", TypeSubscribe, &Subscribe{Seq: 3, ObserveTags: []Tag{1, 70000}, WantedTarget: "room-1"}},
	{"subscribed", TypeSubscribed, &Subscribed{Seq: 3, Error: "tag 70000 denied"}},
	{"flush", TypeFlush, &Flush{Frames: 1 << 20}},
	{"flushed", TypeFlushed, &Flushed{Frames: 1 << 20}},
	{"custody", TypeCustody, &Custody{Frames: 256}},
	{"bodies", TypeBodies, &Bodies{}},
	{"handshake-source-announces-bodies", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "camera", Kind: KindSource, ID: 9,
		Custody: true, AnnouncesBodies: true}},
	{"handshake-ack-announce-bodies", TypeHandshakeAck, &HandshakeAck{ConnID: 78, Zipper: "zipper-1", MaxFrameSize: DefaultMaxSize,
		Custody: true, AnnounceBodies: true}},
	{"data-stream", TypeDataStream, &DataStream{}},
	{"handshake-source-announces-data", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "camera", Kind: KindSource, ID: 9,
		Custody: true, AnnouncesBodies: true, AnnouncesData: true, NoDatagrams: true}},
	{"handshake-ack-announce-data", TypeHandshakeAck, &HandshakeAck{ConnID: 79, Zipper: "zipper-1", MaxFrameSize: DefaultMaxSize,
		Custody: true, AnnounceBodies: true, AnnounceData: true}},
	{"handshake-function-announce-data", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "resize", Kind: KindFunction, ID: 12,
		ObserveTags: []uint32{0x10}, AnnouncesData: true, NoDatagrams: true, AnnounceData: true}},
	{"handshake-ack-announces-data", TypeHandshakeAck, &HandshakeAck{ConnID: 80, Zipper: "zipper-1", MaxFrameSize: DefaultMaxSize,
		AnnounceData: true, AnnouncesData: true}},
	{"handshake-source-resumed", TypeHandshake, &Handshake{Version: ProtocolVersion, Name: "temp-sensor", Kind: KindSource, ID: 1001,
		Resumed: true, Custody: true, Acked: 70000}},
}

// encodeControlCase encodes c (AppendPing for pongs).
func encodeControlCase(t testing.TB, c controlCase) []byte {
	t.Helper()
	if c.t == TypePong {
		return AppendPing(nil, c.v.(*Ping).Value, true)
	}
	b, err := AppendControl(nil, c.v)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	return b
}

// goldenFrames returns every golden case's name and encoded frame.
func goldenFrames(t testing.TB) map[string][]byte {
	m := make(map[string][]byte)
	for _, c := range dataCases {
		m[c.name] = AppendData(nil, &c.d)
	}
	for _, c := range controlCases {
		m[c.name] = encodeControlCase(t, c)
	}
	for _, c := range datagramCases {
		m[c.name] = AppendDatagram(nil, c.seq, AppendDataBody(nil, &c.d))
	}
	for _, c := range bodyCases {
		m[c.name] = AppendBody(nil, &c.d)
	}
	return m
}

// Golden files hold the frame (header and body) in hex, 32 bytes a line.
func formatGolden(b []byte) []byte {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(32, len(b))
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return []byte(sb.String())
}

func parseGolden(t testing.TB, text []byte) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("bad golden file: %v", err)
	}
	return b
}

func goldenPath(name string) string { return filepath.Join("testdata", name+".golden") }

func readGolden(t testing.TB, name string) []byte {
	t.Helper()
	text, err := os.ReadFile(goldenPath(name))
	if err != nil {
		t.Fatalf("%v (run go test ./frame -update to create it)", err)
	}
	return parseGolden(t, text)
}

func TestGolden(t *testing.T) {
	frames := goldenFrames(t)
	for name, got := range frames {
		t.Run(name, func(t *testing.T) {
			if *update {
				if err := os.WriteFile(goldenPath(name), formatGolden(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := readGolden(t, name)
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Fatalf("encoding differs from %s at byte %d (got %d bytes, want %d); "+
					"the wire format must not change: fix the encoder, or if the change is "+
					"intended, update spec.md and run go test ./frame -update",
					goldenPath(name), i, len(got), len(want))
			}
		})
	}
	if *update {
		return
	}
	// Every golden file must belong to a case, so that none goes stale.
	files, err := filepath.Glob(filepath.Join("testdata", "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".golden")
		if _, ok := frames[name]; !ok {
			t.Errorf("%s has no test case", f)
		}
	}
}

// TestGoldenDecode decodes the golden bytes (not the encoder's output) and
// checks that they give back the values, so that the files also pin the
// decoder.
func TestGoldenDecode(t *testing.T) {
	for _, c := range dataCases {
		t.Run(c.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(readGolden(t, c.name)), 0)
			typ, body, err := r.Next()
			if err != nil || typ != TypeData {
				t.Fatalf("Next: %v %v", typ, err)
			}
			var d Data
			if err := d.Decode(body); err != nil {
				t.Fatal(err)
			}
			if !dataEqual(&d, &c.d) {
				t.Fatalf("got %+v\nwant %+v", d, c.d)
			}
		})
	}
	for _, c := range datagramCases {
		t.Run(c.name, func(t *testing.T) {
			seq, body, err := ParseDatagram(readGolden(t, c.name))
			if err != nil || seq != c.seq {
				t.Fatalf("ParseDatagram: seq %d, %v; want seq %d", seq, err, c.seq)
			}
			var d Data
			if err := d.Decode(body); err != nil {
				t.Fatal(err)
			}
			if !dataEqual(&d, &c.d) || d.Datagram {
				t.Fatalf("got %+v\nwant %+v", d, c.d)
			}
		})
	}
	for _, c := range bodyCases {
		t.Run(c.name, func(t *testing.T) {
			var d Data
			if err := ReadBody(bytes.NewReader(readGolden(t, c.name)), &d); err != nil {
				t.Fatal(err)
			}
			if !dataEqual(&d, &c.d) {
				t.Fatalf("got %+v\nwant %+v", d, c.d)
			}
		})
	}
	for _, c := range controlCases {
		t.Run(c.name, func(t *testing.T) {
			b := readGolden(t, c.name)
			typ, n, err := ParseHeader(b, DefaultMaxSize)
			if err != nil || typ != c.t || n != len(b)-HeaderSize {
				t.Fatalf("header: %v %d %v", typ, n, err)
			}
			v, err := DecodeControl(typ, b[HeaderSize:])
			if err != nil {
				t.Fatal(err)
			}
			if !controlEqual(v, c.v) {
				t.Fatalf("got %+v, want %+v", v, c.v)
			}
		})
	}
}

// TestSpecExamples checks that the hex examples of spec.md are what the
// code produces. An example is a fenced block whose info string is
// "hex <golden case name>"; each line holds hex bytes, optionally followed
// by a comment starting with "#".
func TestSpecExamples(t *testing.T) {
	spec, err := os.ReadFile("spec.md")
	if err != nil {
		t.Fatal(err)
	}
	frames := goldenFrames(t)
	found := 0
	lines := strings.Split(string(spec), "\n")
	for i := 0; i < len(lines); i++ {
		name, ok := strings.CutPrefix(lines[i], "```hex ")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		var sb strings.Builder
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			code, _, _ := strings.Cut(lines[i], "#")
			sb.WriteString(strings.Join(strings.Fields(code), ""))
		}
		got, err := hex.DecodeString(sb.String())
		if err != nil {
			t.Errorf("spec example %s: %v", name, err)
			continue
		}
		want, ok := frames[name]
		if !ok {
			t.Errorf("spec example %s: no such golden case", name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("spec example %s:\n got %x\nwant %x", name, got, want)
		}
		found++
	}
	if found < 2 {
		t.Errorf("found %d hex examples in spec.md, want at least 2", found)
	}
}
