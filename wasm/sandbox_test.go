package wasm_test

import (
	"bytes"
	"encoding/binary"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/yomo-dev/yomo/wasm"
)

// wasiReport runs the wasi guest for tag and returns the one frame it
// wrote.
func wasiReport(t *testing.T, f *wasm.Function, tag uint32) []byte {
	t.Helper()
	w := handle(f, tag, "").got()
	if len(w) != 1 {
		t.Fatalf("tag %d: writes %v", tag, w)
	}
	return []byte(w[0].data)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSandboxByDefault(t *testing.T) {
	f, e := load(t, "wasi", wasm.Config{})

	env := wasiReport(t, f, 1)
	if n := binary.LittleEndian.Uint32(env); n != 0 {
		t.Errorf("guest sees %d environment variables, want none", n)
	}
	ns := int64(binary.LittleEndian.Uint64(wasiReport(t, f, 2)))
	if got := time.Unix(0, ns).UTC(); got.Year() != 2022 {
		t.Errorf("guest's wall clock reads %v, want wazero's fake clock (2022-01-01)", got)
	}
	expectWrites(t, handle(f, 3, "")) // stdout and stderr: discarded
	if errno := binary.LittleEndian.Uint32(wasiReport(t, f, 4)); errno != 8 {
		t.Errorf("fd_prestat_get(3) = errno %d, want 8 (EBADF: no directory)", errno)
	}
	r1, r2 := wasiReport(t, f, 5), wasiReport(t, f, 5)
	if bytes.Equal(r1, r2) || bytes.Equal(r1, make([]byte, 16)) {
		t.Errorf("random_get gave %x then %x, want random bytes", r1, r2)
	}
	if l := e.take(); len(l) != 0 {
		t.Errorf("unexpected errors: %v", l)
	}
}

func TestSandboxAllowances(t *testing.T) {
	var out, errOut syncBuffer
	f, _ := load(t, "wasi", wasm.Config{
		Env:       map[string]string{"GREETING": "hello", "LANG": "C"},
		FS:        fstest.MapFS{"config.json": {Data: []byte("{}")}},
		RealClock: true,
		Stdout:    &out,
		Stderr:    &errOut,
		Rand:      strings.NewReader(strings.Repeat("r", 64)),
	})

	env := wasiReport(t, f, 1)
	if n, size := binary.LittleEndian.Uint32(env), binary.LittleEndian.Uint32(env[4:]); n != 2 || size != uint32(len("GREETING=hello\x00LANG=C\x00")) {
		t.Errorf("guest sees %d environment variables of %d bytes, want 2 of 23", n, size)
	}
	ns := int64(binary.LittleEndian.Uint64(wasiReport(t, f, 2)))
	if d := time.Since(time.Unix(0, ns)); d < -time.Minute || d > time.Minute {
		t.Errorf("guest's wall clock is %v off the host's", d)
	}
	handle(f, 3, "")
	if out.String() != "hello\n" || errOut.String() != "hello\n" {
		t.Errorf("stdout %q, stderr %q, want hello on both", out.String(), errOut.String())
	}
	if errno := binary.LittleEndian.Uint32(wasiReport(t, f, 4)); errno != 0 {
		t.Errorf("fd_prestat_get(3) = errno %d, want 0 (the mounted file system)", errno)
	}
	if r := wasiReport(t, f, 5); string(r) != strings.Repeat("r", 16) {
		t.Errorf("random_get gave %q, want bytes from Config.Rand", r)
	}
}

func TestSharedWriterAcrossInstances(t *testing.T) {
	var out syncBuffer
	f, _ := load(t, "wasi", wasm.Config{Instances: 2, Stdout: &out, Stderr: &out})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				handle(f, 3, "")
			}
		})
	}
	wg.Wait()
	if got := out.String(); got != strings.Repeat("hello\n", 80) {
		t.Errorf("stdout+stderr = %q, want 80 whole lines", got)
	}
}

func TestCacheDir(t *testing.T) {
	dir := t.TempDir()
	for range 2 { // the second process-like load reads the compiled code back
		c, err := wasm.NewCacheDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		f, err := wasm.Load(t.Context(), guest(t, "minimal"), wasm.Config{Cache: c})
		if err != nil {
			t.Fatal(err)
		}
		expectWrites(t, handle(f, 1, "x"), written{2, "x", ""})
		if err := f.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}
