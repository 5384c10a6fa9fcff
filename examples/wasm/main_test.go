package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/yomo-dev/yomo/wasm"
)

// The tests run the guests in wazero's interpreter, each module prepared
// once: compiling the Go guest (2 MiB of WebAssembly) takes a second or
// two, and about 15 s under -race. `go run .` uses the compiler.
var (
	cache = wasm.NewCache()
	cfg   = wasm.Config{Interpreter: true, Cache: cache}
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = cache.Close(context.Background()) }))
}

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, cfg, "hello", "yomo", "webassembly"); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"loaded uppercase-go (",
		"bytes): observes [0x10]",
		"loaded reverse-c    (",
		"bytes): observes [0x11]",
		`"hello" -> uppercase-go "HELLO" -> reverse-c "OLLEH"`,
		`"yomo" -> uppercase-go "YOMO" -> reverse-c "OMOY"`,
		`"webassembly" -> uppercase-go "WEBASSEMBLY" -> reverse-c "YLBMESSABEW"`,
		`zipper: function "uppercase-go" handled 3 frames`,
		`zipper: function "reverse-c" handled 3 frames`,
		"zipper: 9 frames in, 0 dropped",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// Both guests with payloads larger than their first buffers (the Go guest
// starts with none, the C guest with 64 bytes), and an empty one.
func TestGuestsInPipeline(t *testing.T) {
	large := strings.Repeat("abc", 7000) // 21 kB
	var out bytes.Buffer
	if err := run(&out, cfg, "", large, "x", strings.Repeat("q", 65)); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		`"" -> uppercase-go "" -> reverse-c ""`,
		`"abcabcabcabc"...(21000 bytes) -> uppercase-go "ABCABCABCABC"...(21000 bytes) -> reverse-c "CBACBACBACBA"...(21000 bytes)`,
		`"x" -> uppercase-go "X" -> reverse-c "X"`,
		"zipper: 12 frames in, 0 dropped",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
