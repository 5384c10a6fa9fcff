package wasmexample

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/yomo-dev/yomo/internal/guestbuild"
	"github.com/yomo-dev/yomo/wasm"
)

// Check is the test of the example of lang: it builds the guest from
// source (skipping when the toolchain is missing, failing in CI), runs it
// through a zipper and checks what Run printed, want included. The
// payloads cover an empty one and one larger than any first buffer of
// the guests.
func Check(t *testing.T, lang string, want ...string) {
	module := guestbuild.ForTest(t, lang)
	cfg := wasm.Config{}
	if lang == "go" {
		// Compiling the Go runtime (2 MiB of WebAssembly) takes seconds,
		// and about 15 s under -race: interpret it.
		cfg.Interpreter = true
	}
	cache := wasm.NewCache()
	defer func() { _ = cache.Close(context.Background()) }()
	cfg.Cache = cache
	large := strings.Repeat("abc", 7000)
	var out bytes.Buffer
	if err := Run(&out, "upper-"+lang, module, cfg, "hello", "yomo", "", large, "webassembly"); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, w := range append([]string{
		"loaded upper-" + lang + " (",
		"bytes): observes [0x10]",
		`"hello" -> upper-` + lang + ` "HELLO"`,
		`"yomo" -> upper-` + lang + ` "YOMO"`,
		`"" -> upper-` + lang + ` ""`,
		`"abcabcabcabc"...(21000 bytes) -> upper-` + lang + ` "ABCABCABCABC"...(21000 bytes)`,
		`"webassembly" -> upper-` + lang + ` "WEBASSEMBLY"`,
		`zipper: function "upper-` + lang + `" handled 5 frames`,
	}, want...) {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
}
