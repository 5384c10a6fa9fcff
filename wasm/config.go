package wasm

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
)

// Defaults of Config.
const (
	// DefaultMemoryLimit bounds each instance's linear memory: 256 MiB.
	DefaultMemoryLimit = 256 << 20
	// DefaultTimeout bounds one yomo_handler call.
	DefaultTimeout = 3 * time.Second
	// DefaultInitTimeout bounds the start of one instance.
	DefaultInitTimeout = 10 * time.Second
	// MaxMemoryLimit is the most a 32-bit WebAssembly memory can hold: 4 GiB.
	MaxMemoryLimit = 1 << 32
	// DefaultHTTPResponseLimit bounds the body of a response to
	// yomo_http_send: 4 MiB.
	DefaultHTTPResponseLimit = 4 << 20
	// DefaultHTTPTimeout bounds a yomo_http_send whose request gives no
	// Timeout (YoMo's default).
	DefaultHTTPTimeout = 10 * time.Second
)

const pageSize = 1 << 16

// Config configures Load. The zero value is valid: one sandboxed instance
// with the defaults below. A Config is read by Load and not retained
// (except the writers, the reader, the file system and OnError).
//
// Sandbox: a guest sees no environment variable, no file, no network and
// no real clock unless its Config gives them. Without RealClock, the WASI
// clocks are wazero's deterministic ones (they start at a fixed time and
// advance 1 ms per reading) and sleeping returns at once. WASI sockets are
// never offered.
type Config struct {
	// Instances is how many instances of the module serve calls
	// concurrently (default 1). Handle borrows one for each call and waits
	// when all are busy, so set it to the StreamFunction's handler
	// concurrency (yomo.WithHandlerConcurrency). Each instance has its own
	// memory, up to MemoryLimit.
	Instances int
	// MemoryLimit bounds each instance's linear memory, in bytes (default
	// DefaultMemoryLimit, at most MaxMemoryLimit), rounded down to whole
	// 64 KiB pages. A guest that asks for more gets memory.grow = -1; when
	// its call then fails, the error wraps ErrMemoryLimit.
	MemoryLimit int
	// Timeout bounds each yomo_handler call (default DefaultTimeout). A
	// guest still running at the deadline is stopped, the call reports
	// ErrTimeout, and its instance is replaced. Time spent in host
	// functions (a yomo_write waiting for room) counts.
	Timeout time.Duration
	// InitTimeout bounds each step of the start of an instance: the
	// module's start function, then each of _start or _initialize,
	// yomo_observe_datatags, yomo_wanted_target and yomo_init (default
	// DefaultInitTimeout).
	InitTimeout time.Duration
	// OnError receives the errors of Handle: a *CallError for a failed call
	// (trap, exit, timeout, memory limit, or a frame after Close), a
	// *WriteError for a frame the guest wrote that the host could not send,
	// an *HTTPError for a yomo_http_send that got no response, and the
	// start errors of replacement instances. It is called on the
	// goroutine that called Handle (or Load), during or after the call,
	// and must be safe for concurrent use when calls are. Passing the
	// StreamFunction's error handler gathers both in one place. Nil logs them with slog.Default().
	OnError func(error)
	// Stdout and Stderr receive what the guest writes to its standard
	// output and error (default: discarded). Writes are serialized, so a
	// writer shared by several instances needs no lock of its own.
	Stdout, Stderr io.Writer
	// Env is the environment the guest sees (default: none).
	Env map[string]string
	// FS is a file system the guest may read, mounted at "/" (default:
	// none; the guest sees no file).
	FS fs.FS
	// RealClock gives the guest the host's wall and monotonic clocks and
	// lets it sleep for real.
	RealClock bool
	// Rand is the guest's source of random bytes (default crypto/rand).
	Rand io.Reader
	// Cache holds compiled code to share between Loads, of the same module
	// or not, and (NewCacheDir) between processes. Nil compiles for this
	// Function alone.
	Cache *Cache
	// HTTPClient performs the guest's yomo_http_send requests. Nil, the
	// default, gives the guest no network: the call returns status 8 and
	// an *HTTPError wrapping ErrNoNetwork is reported; a module importing
	// yomo_http_send still loads. A request is bounded by the smaller of
	// its own Timeout (DefaultHTTPTimeout when it gives none) and what is
	// left of the call's deadline (Timeout, or InitTimeout while an
	// instance starts). Restrict what a guest may reach with the client:
	// its Transport (a DialContext that refuses addresses) and
	// CheckRedirect.
	HTTPClient *http.Client
	// HTTPResponseLimit bounds the body of a response handed to the guest,
	// in bytes (default DefaultHTTPResponseLimit). A longer body fails the
	// call with status 5: the guest gets no part of it. The headers are
	// bounded by HTTPClient's Transport (http.Transport's
	// MaxResponseHeaderBytes).
	HTTPResponseLimit int
	// Interpreter runs the module in wazero's interpreter instead of
	// compiling it to machine code: loading is much faster, calls are much
	// slower. Platforms without the compiler always interpret.
	Interpreter bool
}

// Cache is a compilation cache: it keeps the machine code of the modules
// compiled through it, so a later Load of the same bytes skips
// compilation. Safe for concurrent use by any number of Loads.
type Cache struct {
	c wazero.CompilationCache
}

// NewCache returns an in-memory compilation cache. Close it after the
// Functions that use it.
func NewCache() *Cache { return &Cache{c: wazero.NewCompilationCache()} }

// NewCacheDir returns a compilation cache kept in dir (created if
// missing), which survives the process: a later process loading the same
// module with the same wazero version starts faster.
func NewCacheDir(dir string) (*Cache, error) {
	c, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wasm: compilation cache in %s: %w", dir, err)
	}
	return &Cache{c: c}, nil
}

// Close releases the cache. Functions loaded with it keep working; Loads
// after Close must not use it.
func (c *Cache) Close(ctx context.Context) error { return c.c.Close(ctx) }

// settings is a validated Config with its defaults filled in.
type settings struct {
	instances   int
	memLimit    uint64 // bytes, whole pages
	timeout     time.Duration
	initTimeout time.Duration
	onError     func(error)
	httpClient  *http.Client
	httpLimit   int64
}

func (c *Config) settings() (settings, error) {
	s := settings{
		instances:   c.Instances,
		timeout:     c.Timeout,
		initTimeout: c.InitTimeout,
		onError:     c.OnError,
		httpClient:  c.HTTPClient,
		httpLimit:   int64(c.HTTPResponseLimit),
	}
	if s.instances < 0 || s.instances > 4096 {
		return s, fmt.Errorf("wasm: Config.Instances %d out of range (1 .. 4096)", c.Instances)
	}
	if s.instances == 0 {
		s.instances = 1
	}
	switch {
	case c.MemoryLimit < 0 || uint64(c.MemoryLimit) > MaxMemoryLimit:
		return s, fmt.Errorf("wasm: Config.MemoryLimit %d out of range (64 KiB .. 4 GiB)", c.MemoryLimit)
	case c.MemoryLimit == 0:
		s.memLimit = DefaultMemoryLimit
	case c.MemoryLimit < pageSize:
		return s, fmt.Errorf("wasm: Config.MemoryLimit %d below one 64 KiB page", c.MemoryLimit)
	default:
		s.memLimit = uint64(c.MemoryLimit) / pageSize * pageSize
	}
	if s.timeout < 0 || s.initTimeout < 0 {
		return s, fmt.Errorf("wasm: negative Config.Timeout %v or InitTimeout %v", c.Timeout, c.InitTimeout)
	}
	if s.timeout == 0 {
		s.timeout = DefaultTimeout
	}
	if s.initTimeout == 0 {
		s.initTimeout = DefaultInitTimeout
	}
	switch {
	case s.httpLimit < 0:
		return s, fmt.Errorf("wasm: negative Config.HTTPResponseLimit %d", c.HTTPResponseLimit)
	case s.httpLimit == 0:
		s.httpLimit = DefaultHTTPResponseLimit
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return s, fmt.Errorf("wasm: Config.Env key %q invalid", k)
		}
	}
	if s.onError == nil {
		s.onError = func(err error) { slog.Default().Error("wasm function", "err", err) }
	}
	return s, nil
}

// moduleConfig is the sandbox every instance starts in.
func (c *Config) moduleConfig() wazero.ModuleConfig {
	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: one compiled module, many instances
		WithStartFunctions()
	// One lock per distinct writer: an instance's stdout and stderr, and
	// all instances, may share it.
	stdout, stderr := io.Discard, io.Discard
	if c.Stdout != nil {
		stdout = &lockedWriter{w: c.Stdout, mu: new(sync.Mutex)}
	}
	if c.Stderr != nil {
		if lw, ok := stdout.(*lockedWriter); ok && sameWriter(c.Stdout, c.Stderr) {
			stderr = lw
		} else {
			stderr = &lockedWriter{w: c.Stderr, mu: new(sync.Mutex)}
		}
	}
	mc = mc.WithStdout(stdout).WithStderr(stderr)
	for k, v := range c.Env {
		mc = mc.WithEnv(k, v)
	}
	if c.FS != nil {
		mc = mc.WithFSConfig(wazero.NewFSConfig().WithFSMount(c.FS, "/"))
	}
	if c.RealClock {
		mc = mc.WithSysWalltime().WithSysNanotime().WithSysNanosleep()
	}
	if c.Rand != nil {
		mc = mc.WithRandSource(c.Rand)
	} else {
		mc = mc.WithRandSource(rand.Reader)
	}
	return mc
}

// sameWriter reports whether a and b are the same writer, without
// panicking on writers of incomparable types.
func sameWriter(a, b io.Writer) bool {
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	return ta == tb && ta.Comparable() && a == b
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
