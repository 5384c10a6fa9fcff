package wasm_test

// The test guests are WebAssembly text files in testdata; their binaries
// are committed next to them, so the tests need no toolchain. To rebuild
// them (Debian: apt-get install wabt):
//
//go:generate sh testdata/build.sh

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/wasm"
)

// cache is shared by every test: each module is compiled once per engine.
var cache = wasm.NewCache()

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { _ = cache.Close(context.Background()) }))
}

// engines are the two ways wazero runs a module.
var engines = []struct {
	name        string
	interpreter bool
}{
	{"compiler", false},
	{"interpreter", true},
}

func guest(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".wasm")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// load loads testdata/<name>.wasm with cfg (plus the shared cache and an
// error recorder) and closes it when the test ends.
func load(t testing.TB, name string, cfg wasm.Config) (*wasm.Function, *errs) {
	t.Helper()
	e := new(errs)
	if cfg.OnError == nil {
		cfg.OnError = e.add
	}
	cfg.Cache = cache
	f, err := wasm.Load(context.Background(), guest(t, name), cfg)
	if err != nil {
		t.Fatalf("Load %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := f.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return f, e
}

// errs records what a Function reports through Config.OnError.
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) add(err error) {
	e.mu.Lock()
	e.list = append(e.list, err)
	e.mu.Unlock()
}

func (e *errs) take() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.list
	e.list = nil
	return l
}

// one returns the only error reported since the last take, failing the
// test if there is not exactly one.
func (e *errs) one(t testing.TB) error {
	t.Helper()
	l := e.take()
	if len(l) != 1 {
		t.Fatalf("reported errors: %v, want exactly one", l)
	}
	return l[0]
}

// written is one frame written through a fake context.
type written struct {
	tag    yomo.Tag
	data   string
	target string
}

func (w written) String() string {
	return fmt.Sprintf("{%#x %q %q}", w.tag, w.data, w.target)
}

// errHostWrite is what the fake context's writes with tag failTag return.
var errHostWrite = errors.New("fake host write failure")

const failTag yomo.Tag = 999

// fakeContext is a yomo.Context for calling Handle directly. Writes with
// failTag fail; block, when set, is called by every write before it
// returns (to hold a call inside a host function).
type fakeContext struct {
	tag    yomo.Tag
	data   []byte
	md     map[string]string
	block  func()
	mu     sync.Mutex
	writes []written
}

func frame(tag yomo.Tag, data string) *fakeContext {
	return &fakeContext{tag: tag, data: []byte(data)}
}

func (c *fakeContext) Tag() yomo.Tag { return c.tag }
func (c *fakeContext) Data() []byte  { return c.data }
func (c *fakeContext) Metadata(k string) (string, bool) {
	v, ok := c.md[k]
	return v, ok
}
func (c *fakeContext) Write(tag yomo.Tag, data []byte) error {
	return c.WriteWithTarget(tag, data, "")
}

func (c *fakeContext) WriteWithTarget(tag yomo.Tag, data []byte, target string) error {
	if c.block != nil {
		c.block()
	}
	if tag == failTag {
		return errHostWrite
	}
	c.mu.Lock()
	c.writes = append(c.writes, written{tag, string(data), target})
	c.mu.Unlock()
	return nil
}

func (c *fakeContext) got() []written {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]written(nil), c.writes...)
}

// expectWrites checks the frames written while handling c.
func expectWrites(t testing.TB, c *fakeContext, want ...written) {
	t.Helper()
	got := c.got()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("tag %#x: writes\n got %v\nwant %v", c.tag, got, want)
	}
}

// handle calls f.Handle for one frame and returns its context.
func handle(f *wasm.Function, tag yomo.Tag, data string) *fakeContext {
	c := frame(tag, data)
	f.Handle(c)
	return c
}

// le32 reads a little-endian uint32 at the start of s.
func le32(s string) uint32 {
	b := []byte(s)
	if len(b) < 4 {
		return 0
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
