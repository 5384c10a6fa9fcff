package perf

// Connection scale: how long N clients take to connect to a server that
// runs in its own process, and how much memory that process holds for
// them, for the zipper and, in the same run, for a raw QUIC server built
// on internal/transport (the thin adapters over quic-go that the zipper
// uses too) doing an equivalent handshake, and for a bare one that only
// accepts connections and holds them (what quic-go costs before any
// protocol runs).
//
// The server process is this test binary, re-executed with
// -test.run=^TestScaleServerProcess$ and YOMO_SCALE_SERVER=zipper|raw|bare. It
// prints its UDP address and certificate on stdout, answers "stats" on
// stdin with its connection count and Go memory statistics, and closes
// everything and exits when its stdin closes. The benchmark process dials
// the N clients and reads the server's VmRSS and VmHWM from
// /proc/<pid>/status.
//
//	go test -run='^$' -bench=Scale -benchtime=1x -count=5 ./internal/perf/
//	YOMO_SCALE_N=10000 go test -run='^$' -bench=Scale -benchtime=1x -count=1 ./internal/perf/
//
// With YOMO_SCALE_PROFILE=<dir>, the server process writes its CPU profile
// (<dir>/<zipper|raw|bare>-cpu.pprof, over its whole life) and a heap profile
// and a goroutine dump at every measurement
// (<dir>/<zipper|raw|bare>-heap-<clients>.pprof, -goroutines-<clients>.txt),
// and the benchmark process the clients' heap once they are connected
// (<dir>/<zipper|raw|bare>-client-heap.pprof);
// read the profiles with go tool pprof and the test binary (go test -c,
// or -o).
//
// Environment: YOMO_SCALE_N clients (default 1000); YOMO_SCALE_DIALERS
// connecting at once (default 32, as when quic-go's accept queue of 32
// made larger bursts fail with CONNECTION_REFUSED, so that the figures
// stay comparable with earlier runs; the transport's Listener now drains
// that queue on its own goroutines, and TestConnectBurst dials 2000 at
// once);
// YOMO_SCALE_SETTLE to wait after the last connect before measuring
// (default 2s); YOMO_SCALE_WRITE=1 to have every client send one 16-byte
// message right after connecting (a Source's first Write opens its data
// stream; the tag is observed by nobody), so that the idle connections
// measured have carried data (sub-benchmarks named */wrote1). Each
// iteration (b.N) starts a fresh server process; the timer runs only while
// the clients connect, so sec/op is the time to connect all N. Skipped
// with -short.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

const (
	scaleServerEnv  = "YOMO_SCALE_SERVER" // in the server process: "zipper", "raw" or "bare"
	scaleNEnv       = "YOMO_SCALE_N"
	scaleDialersEnv = "YOMO_SCALE_DIALERS"
	scaleSettleEnv  = "YOMO_SCALE_SETTLE"
	scaleWriteEnv   = "YOMO_SCALE_WRITE"
	scaleProfileEnv = "YOMO_SCALE_PROFILE" // a directory: the server writes its CPU and heap profiles there

	scaleReady = "scale-ready " // server → benchmark: "scale-ready <addr> <base64 DER certificate>"
	scaleStats = "scale-stats " // server → benchmark: "scale-stats <JSON scaleServerStats>"
	scaleCPU   = "scale-cpu "   // server → benchmark: "scale-cpu <user+system CPU so far, µs>"

	scaleTimeout = 60 * time.Second // bounds every wait of the harness
)

// scaleServerStats is what the server process reports on "stats", after a
// runtime.GC: the Go heap is then the live heap.
type scaleServerStats struct {
	Conns      int    `json:"conns"` // clients that completed the handshake and are connected
	In         uint64 `json:"in"`    // messages received after the handshake
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
}

// scaleHello returns the raw client's handshake and the raw server's ack:
// as long as a yomo Source's handshake frame (name "scale-00000", no tags)
// and the zipper's ack, so that both servers read and write the same bytes.
func scaleHello() (hello, ack []byte) {
	hs, err := frame.AppendControl(nil, &frame.Handshake{Version: frame.ProtocolVersion, Name: "scale-00000",
		Kind: frame.KindSource, ID: 1 << 62})
	if err != nil {
		panic(err)
	}
	a, err := frame.AppendControl(nil, &frame.HandshakeAck{ConnID: 1000, Zipper: "scale", MaxFrameSize: frame.DefaultMaxSize})
	if err != nil {
		panic(err)
	}
	return make([]byte, len(hs)), make([]byte, len(a))
}

// TestScaleServerProcess is the server process of BenchmarkScale; it is
// skipped unless BenchmarkScale started it.
func TestScaleServerProcess(t *testing.T) {
	mode := os.Getenv(scaleServerEnv)
	if mode == "" {
		t.Skip("the server process of BenchmarkScale; runs only when the benchmark starts it")
	}
	cert, _, err := transport.SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	if dir := os.Getenv(scaleProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, mode+"-cpu.pprof"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	var srv interface {
		conns() int
		in() uint64
		close() error
	}
	switch mode {
	case "zipper":
		srv, err = startScaleZipper(pc, cert)
	case "raw":
		srv, err = startScaleRaw(pc, cert)
	case "bare":
		srv, err = startScaleBare(pc, cert)
	default:
		pc.Close()
		t.Fatalf("%s=%q: want zipper, raw or bare", scaleServerEnv, mode)
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%s %s\n", scaleReady, addr, base64.StdEncoding.EncodeToString(cert.Certificate[0]))

	cmds := make(chan string)
	go func() { // ends when stdin closes: the benchmark is done with us
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
	for cmd := range cmds {
		switch cmd {
		case "stats":
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			st := scaleServerStats{Conns: srv.conns(), In: srv.in(), HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse,
				StackInuse: ms.StackInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine()}
			if dir := os.Getenv(scaleProfileEnv); dir != "" {
				if err := scaleHeapProfile(dir, mode, st.Conns); err != nil {
					t.Error(err)
				}
			}
			b, _ := json.Marshal(st)
			fmt.Printf("%s%s\n", scaleStats, b)
		case "cpu":
			fmt.Printf("%s%d\n", scaleCPU, cpuTime().Microseconds())
		default:
			t.Errorf("unknown command %q", cmd)
		}
	}
	if err := srv.close(); err != nil {
		t.Error(err)
	}
}

// scaleHeapProfile writes the heap profile of the server process to
// dir/<mode>-heap-<conns>.pprof, and its goroutines, grouped by stack, to
// dir/<mode>-goroutines-<conns>.txt.
func scaleHeapProfile(dir, mode string, conns int) error {
	for _, p := range []struct {
		name, file string
		debug      int
	}{{"heap", "heap-%d.pprof", 0}, {"goroutine", "goroutines-%d.txt", 1}} {
		f, err := os.Create(filepath.Join(dir, mode+"-"+fmt.Sprintf(p.file, conns)))
		if err != nil {
			return err
		}
		if err := pprof.Lookup(p.name).WriteTo(f, p.debug); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// scaleZipper is a zipper serving one socket, with no connection limits
// (the default per-IP limit of 1000 would refuse the benchmark's clients,
// which all come from 127.0.0.1).
type scaleZipper struct {
	z      *yomo.Zipper
	served chan error
}

func startScaleZipper(pc net.PacketConn, cert tls.Certificate) (*scaleZipper, error) {
	z, err := yomo.NewZipper("scale", yomo.WithLogger(benchLogger), yomo.WithConnectionLimits(0, 0),
		yomo.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}))
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &scaleZipper{z: z, served: make(chan error, 1)}
	go func() { s.served <- z.Serve(context.Background(), pc) }() // ends when close closes z
	return s, nil
}

func (s *scaleZipper) conns() int { return s.z.Stats().Connections.Sources }

func (s *scaleZipper) in() uint64 { return s.z.Stats().FramesIn }

func (s *scaleZipper) close() error {
	s.z.Close()
	if err := <-s.served; !errors.Is(err, yomo.ErrClosed) {
		return fmt.Errorf("Serve returned %v, want ErrClosed", err)
	}
	return nil
}

// scaleRaw is the raw server: per connection one goroutine accepts the
// client's bidirectional stream, reads its hello (4-byte length, then
// the bytes), writes the ack and then blocks reading the stream (into
// the hello's buffer) until the client leaves, counting the bytes. Nothing else: no
// unidirectional streams, no queues, no routing table.
type scaleRaw struct {
	ln      transport.Listener
	pc      net.PacketConn
	ack     []byte
	n       atomic.Int64  // handshakes completed, connection still open
	inBytes atomic.Uint64 // bytes read after the handshake
	wg      sync.WaitGroup
	live    scaleLive
}

// scaleLive is the set of connections a test server accepted and has not
// closed yet.
type scaleLive struct {
	mu     sync.Mutex
	closed bool
	conns  map[transport.Conn]struct{}
}

// accept accepts connections from ln until it fails (the server closes
// it), adds each to l and calls then with it. A connection accepted
// after shut is closed at once, and accept returns.
func (l *scaleLive) accept(ln transport.Listener, then func(transport.Conn)) {
	for {
		c, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.CloseWithError(0, "server closing")
			return
		}
		if l.conns == nil {
			l.conns = make(map[transport.Conn]struct{})
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		then(c)
	}
}

func (l *scaleLive) remove(c transport.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// open counts the connections still open.
func (l *scaleLive) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := range l.conns {
		if c.Context().Err() == nil {
			n++
		}
	}
	return n
}

// shut marks l closed and closes every connection in it.
func (l *scaleLive) shut() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.CloseWithError(0, "server closing")
	}
}

func startScaleRaw(pc net.PacketConn, cert tls.Certificate) (*scaleRaw, error) {
	ln, err := transport.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}}, transport.QUICConfig{})
	if err != nil {
		pc.Close()
		return nil, err
	}
	_, ack := scaleHello()
	s := &scaleRaw{ln: ln, pc: pc, ack: ack}
	s.wg.Add(1)
	go s.accept() // ends when close closes ln
	return s, nil
}

func (s *scaleRaw) accept() {
	defer s.wg.Done()
	s.live.accept(s.ln, func(c transport.Conn) {
		s.wg.Add(1)   // while this goroutine's count holds wg above zero
		go s.serve(c) // ends when c closes
	})
}

func (s *scaleRaw) serve(c transport.Conn) {
	defer s.wg.Done()
	defer func() {
		s.live.remove(c)
		c.CloseWithError(0, "")
	}()
	// The same bound on the handshake as the zipper's.
	ctx, cancel := context.WithTimeout(c.Context(), yomo.DefaultHandshakeTimeout)
	st, err := c.AcceptStream(ctx)
	cancel()
	if err != nil {
		return
	}
	st.SetReadDeadline(time.Now().Add(yomo.DefaultHandshakeTimeout))
	buf := make([]byte, 256)
	if _, err := io.ReadFull(st, buf[:4]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint32(buf))
	if n > len(buf) {
		return
	}
	if _, err := io.ReadFull(st, buf[:n]); err != nil {
		return
	}
	st.SetReadDeadline(time.Time{})
	if _, err := st.Write(s.ack); err != nil {
		return
	}
	s.n.Add(1)
	defer s.n.Add(-1)
	for {
		n, err := st.Read(buf)
		s.inBytes.Add(uint64(n))
		if err != nil {
			return
		}
	}
}

func (s *scaleRaw) conns() int { return int(s.n.Load()) }

// in counts the clients' messages (scaleMsg bytes each).
func (s *scaleRaw) in() uint64 { return s.inBytes.Load() / uint64(4+len(scaleMsg)) }

func (s *scaleRaw) close() error {
	s.ln.Close()
	s.live.shut()
	s.wg.Wait()
	return s.pc.Close()
}

// scaleBare is the bare server: it accepts QUIC connections and holds
// them, with no stream, no goroutine of its own per connection and no
// application handshake: what a connection costs quic-go (through the
// transport's adapters, with the zipper's QUIC configuration) before any
// protocol runs on it. Its clients dial and hold.
type scaleBare struct {
	ln   transport.Listener
	pc   net.PacketConn
	done chan struct{}
	live scaleLive
}

func startScaleBare(pc net.PacketConn, cert tls.Certificate) (*scaleBare, error) {
	ln, err := transport.Listen(pc, &tls.Config{Certificates: []tls.Certificate{cert}}, transport.QUICConfig{})
	if err != nil {
		pc.Close()
		return nil, err
	}
	s := &scaleBare{ln: ln, pc: pc, done: make(chan struct{})}
	go s.accept() // ends when close closes ln
	return s, nil
}

func (s *scaleBare) accept() {
	defer close(s.done)
	s.live.accept(s.ln, func(transport.Conn) {})
}

func (s *scaleBare) conns() int { return s.live.open() }

func (s *scaleBare) in() uint64 { return 0 }

func (s *scaleBare) close() error {
	s.ln.Close()
	<-s.done
	s.live.shut()
	return s.pc.Close()
}

// scaleBareClients dial the bare server and hold their connections.
type scaleBareClients struct {
	addr  string
	tls   *tls.Config
	conns []transport.Conn
}

func (s *scaleBareClients) connect(ctx context.Context, i int) error {
	c, err := transport.Dial(ctx, s.addr, s.tls, transport.QUICConfig{})
	if err != nil {
		return err
	}
	s.conns[i] = c
	return nil
}

func (s *scaleBareClients) write(int) error {
	return errors.New("the bare server takes no messages")
}

func (s *scaleBareClients) close(i int) {
	if s.conns[i] != nil {
		s.conns[i].CloseWithError(0, "")
	}
}

func (s *scaleBareClients) failed() error { return nil }

// scaleProc is the server process, seen from the benchmark.
type scaleProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // the server's stdout, closed at its end
	stderr scaleBuffer
	addr   string
	roots  *x509.CertPool
	once   sync.Once
	err    error // of stop
}

// scaleBuffer collects the server process's stderr; it may be read while
// exec's goroutine still writes.
type scaleBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *scaleBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *scaleBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startScaleProc starts the server process in mode and waits until it
// serves. b.Cleanup stops it (kills it, if it does not exit).
func startScaleProc(b *testing.B, mode string) *scaleProc {
	b.Helper()
	p := &scaleProc{lines: make(chan string, 64)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestScaleServerProcess$", "-test.count=1", "-test.v=false")
	p.cmd.Env = append(os.Environ(), scaleServerEnv+"="+mode)
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { // ends when the server process's stdout closes (it exited)
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	b.Cleanup(func() {
		if err := p.stop(); err != nil {
			b.Error(err)
		}
	})
	ready, err := p.line(scaleReady)
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(ready)
	if len(f) != 2 {
		b.Fatalf("server process: bad ready line %q", ready)
	}
	der, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		b.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		b.Fatal(err)
	}
	p.addr, p.roots = f[0], x509.NewCertPool()
	p.roots.AddCert(cert)
	return p
}

// line returns the rest of the next output line starting with prefix.
func (p *scaleProc) line(prefix string) (string, error) {
	timeout := time.NewTimer(scaleTimeout)
	defer timeout.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				return "", fmt.Errorf("server process ended before %q; stderr:\n%s", prefix, p.stderr.String())
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return rest, nil
			}
		case <-timeout.C:
			return "", fmt.Errorf("no %q from the server process within %v", prefix, scaleTimeout)
		}
	}
}

// scaleMem is one measurement of the server process.
type scaleMem struct {
	rss, hwm uint64 // bytes, from /proc/<pid>/status
	st       scaleServerStats
}

// measure reads the process's VmRSS and VmHWM, then asks it for its
// statistics (which runs a GC in it; RSS is read first).
func (p *scaleProc) measure() (scaleMem, error) {
	var m scaleMem
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return m, err
	}
	for l := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %q: %w", k, v, err)
		}
		if k == "VmRSS" {
			m.rss = kb << 10
		} else {
			m.hwm = kb << 10
		}
	}
	if m.rss == 0 || m.hwm == 0 {
		return m, errors.New("no VmRSS or VmHWM in /proc/<pid>/status")
	}
	if _, err := io.WriteString(p.stdin, "stats\n"); err != nil {
		return m, err
	}
	js, err := p.line(scaleStats)
	if err != nil {
		return m, err
	}
	return m, json.Unmarshal([]byte(js), &m.st)
}

// cpu asks the server process for its CPU time so far (no GC first).
func (p *scaleProc) cpu() (time.Duration, error) {
	if _, err := io.WriteString(p.stdin, "cpu\n"); err != nil {
		return 0, err
	}
	l, err := p.line(scaleCPU)
	if err != nil {
		return 0, err
	}
	us, err := strconv.ParseInt(l, 10, 64)
	return time.Duration(us) * time.Microsecond, err
}

// awaitConns polls the server until it counts n connected clients and
// in messages received from them.
func (p *scaleProc) awaitConns(n int, in uint64) (scaleMem, error) {
	deadline := time.Now().Add(scaleTimeout)
	for {
		m, err := p.measure()
		if err != nil || (m.st.Conns == n && m.st.In == in) {
			return m, err
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("the server counts %d connected clients and %d messages, want %d and %d",
				m.st.Conns, m.st.In, n, in)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop closes the server's stdin, lets it close everything and exit, and
// waits for it; after scaleTimeout it kills it. The server's exit status
// is its test's verdict (goleak included).
func (p *scaleProc) stop() error {
	p.once.Do(func() {
		p.stdin.Close()
		timeout := time.NewTimer(scaleTimeout)
		defer timeout.Stop()
		killed := false
		for open := true; open; {
			select {
			case _, open = <-p.lines:
			case <-timeout.C:
				p.cmd.Process.Kill()
				killed = true
				for range p.lines {
				}
				open = false
			}
		}
		err := p.cmd.Wait()
		switch {
		case killed:
			p.err = fmt.Errorf("server process killed after %v; stderr:\n%s", scaleTimeout, p.stderr.String())
		case err != nil:
			p.err = fmt.Errorf("server process: %w; stderr:\n%s", err, p.stderr.String())
		}
	})
	return p.err
}

// scaleClients are the benchmark's N clients of one kind.
type scaleClients interface {
	// connect connects client i; it returns once the server acknowledged.
	connect(ctx context.Context, i int) error
	// write sends scaleMsg from client i.
	write(i int) error
	// close closes client i (if it connected).
	close(i int)
	// failed returns an error a connected client reported, if any.
	failed() error
}

// scaleSources are yomo Sources.
type scaleSources struct {
	addr string
	opts []yomo.ClientOption
	srcs []*yomo.Source

	mu  sync.Mutex
	err error
}

func (s *scaleSources) connect(ctx context.Context, i int) error {
	src := yomo.NewSource(fmt.Sprintf("scale-%05d", i), s.addr, s.opts...)
	src.SetErrorHandler(func(err error) {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	})
	if err := src.Connect(ctx); err != nil {
		return err
	}
	s.srcs[i] = src
	return nil
}

// scaleTag is observed by nobody: the zipper counts the frames as
// unroutable.
const scaleTag yomo.Tag = 0x5ca1e

var scaleMsg = make([]byte, 16)

func (s *scaleSources) write(i int) error { return s.srcs[i].Write(scaleTag, scaleMsg) }

func (s *scaleSources) close(i int) {
	if s.srcs[i] != nil {
		s.srcs[i].Close()
	}
}

func (s *scaleSources) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// scaleRawClients dial with transport.Dial, open a bidirectional stream,
// write the hello and read the ack; they then stay idle.
type scaleRawClients struct {
	addr       string
	tls        *tls.Config
	hello, ack []byte
	conns      []transport.Conn
	streams    []transport.Stream
}

func (s *scaleRawClients) connect(ctx context.Context, i int) error {
	c, err := transport.Dial(ctx, s.addr, s.tls, transport.QUICConfig{})
	if err != nil {
		return err
	}
	fail := func(err error) error {
		c.CloseWithError(0, "")
		return err
	}
	st, err := c.OpenStream(ctx)
	if err != nil {
		return fail(err)
	}
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(s.hello)))
	if _, err := st.Write(append(msg, s.hello...)); err != nil {
		return fail(err)
	}
	st.SetReadDeadline(time.Now().Add(yomo.DefaultHandshakeTimeout))
	if _, err := io.ReadFull(st, make([]byte, len(s.ack))); err != nil {
		return fail(err)
	}
	st.SetReadDeadline(time.Time{})
	s.conns[i], s.streams[i] = c, st
	return nil
}

func (s *scaleRawClients) write(i int) error {
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(scaleMsg)))
	_, err := s.streams[i].Write(append(msg, scaleMsg...))
	return err
}

func (s *scaleRawClients) close(i int) {
	if s.conns[i] != nil {
		s.conns[i].CloseWithError(0, "")
	}
}

func (s *scaleRawClients) failed() error { return nil }

// scaleEach runs f(i) for i in [0, n) on workers goroutines and returns
// the first error; after an error no new f starts.
func scaleEach(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(workers, n) {
		wg.Add(1)
		go func() { // ends when the indices are used up or an f failed
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("client %d: %w", i, err)
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func scaleEnvInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// scaleFDs makes sure the process may hold n client sockets (one UDP
// socket per client) plus some slack: it raises the soft limit on open
// files up to the hard limit, or skips the benchmark.
func scaleFDs(b *testing.B, n int) {
	b.Helper()
	need := uint64(n) + 1024
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatal(err)
	}
	if rl.Cur >= need {
		return
	}
	if rl.Max < need {
		b.Skipf("%d clients need %d open files; the hard limit is %d (raise it: ulimit -Hn)", n, need, rl.Max)
	}
	rl.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Skipf("raising the open files limit to %d: %v", need, err)
	}
}

// BenchmarkScale: YOMO_SCALE_N clients (default 1000) connect to a server
// in its own process, YOMO_SCALE_DIALERS at a time. yomo: Sources
// connecting to a zipper (Connect returns after the zipper's ack). raw: a
// QUIC connection with one bidirectional stream and a handshake of the
// same size (scaleRaw). sec/op is the time to connect all N; the memory
// metrics without "client" are the server process's, after all are
// connected and idle.
//
//	conns/s                N / the time to connect all
//	server-cpu-µs/conn     CPU of the server process while connecting, / N
//	client-cpu-µs/conn     CPU of this process (the clients) while connecting, / N
//	client-gc-µs/conn      the part of it the GC used (runtime/metrics)
//	client-alloc-KiB/conn  what the clients allocated while connecting, / N
//	client-heap-KiB/conn   live heap the connected clients hold, / N
//	client-stack-KiB/conn  goroutine stacks they hold, / N
//	client-goroutines/conn goroutines they run, / N
//	rss-MiB        VmRSS of the server with N clients
//	rss0-MiB       VmRSS of the server before the first client
//	hwm-MiB        VmHWM (peak RSS) of the server
//	rss-KiB/conn   (VmRSS at N - VmRSS at 0) / N
//	heap-KiB/conn  the same for the live Go heap (HeapAlloc after a GC)
//	stack-KiB/conn the same for goroutine stacks (StackInuse)
//	goroutines/conn
func BenchmarkScale(b *testing.B) {
	if testing.Short() {
		b.Skip("-short")
	}
	n := scaleEnvInt(b, scaleNEnv, 1000)
	dialers := scaleEnvInt(b, scaleDialersEnv, 32)
	write := os.Getenv(scaleWriteEnv) == "1"
	settle := 2 * time.Second
	if v := os.Getenv(scaleSettleEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s=%q: %v", scaleSettleEnv, v, err)
		}
		settle = d
	}
	scaleFDs(b, n)
	for _, mode := range []struct{ name, server string }{{"yomo", "zipper"}, {"raw", "raw"}, {"bare", "bare"}} {
		name := mode.name
		if write {
			if mode.server == "bare" {
				continue // no stream to write on
			}
			name += "/wrote1"
		}
		b.Run(name, func(b *testing.B) { benchScale(b, mode.server, n, dialers, settle, write) })
	}
}

func benchScale(b *testing.B, mode string, n, dialers int, settle time.Duration, write bool) {
	var connect, serverCPU time.Duration
	var cli scaleClientSums
	var rss, rss0, hwm, heap, stack, goroutines float64
	for range b.N {
		b.StopTimer()
		p := startScaleProc(b, mode)
		base, err := p.awaitConns(0, 0)
		if err != nil {
			b.Fatal(err)
		}
		var cl scaleClients
		switch mode {
		case "zipper":
			cl = &scaleSources{addr: p.addr, srcs: make([]*yomo.Source, n),
				opts: []yomo.ClientOption{yomo.WithTLSConfig(&tls.Config{RootCAs: p.roots}), yomo.WithLogger(benchLogger)}}
		case "bare":
			cl = &scaleBareClients{addr: p.addr, tls: &tls.Config{RootCAs: p.roots}, conns: make([]transport.Conn, n)}
		default:
			hello, ack := scaleHello()
			cl = &scaleRawClients{addr: p.addr, tls: &tls.Config{RootCAs: p.roots}, hello: hello, ack: ack,
				conns: make([]transport.Conn, n), streams: make([]transport.Stream, n)}
		}
		closeAll := sync.OnceFunc(func() {
			scaleEach(n, dialers, func(i int) error { cl.close(i); return nil })
		})
		b.Cleanup(closeAll) // before the server process stops (cleanups run last first)

		// The clients' baseline (after a GC, before the timer), then the
		// CPU counters of both processes.
		base0 := readScaleClient(true)
		srv0, err := p.cpu()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start, cl0 := time.Now(), readScaleClient(false)
		err = scaleEach(n, dialers, func(i int) error {
			ctx, cancel := context.WithTimeout(context.Background(), scaleTimeout)
			defer cancel()
			return cl.connect(ctx, i)
		})
		elapsed, cl1 := time.Since(start), readScaleClient(false)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		srv1, err := p.cpu()
		if err != nil {
			b.Fatal(err)
		}
		serverCPU += srv1 - srv0
		cli.addSpent(cl0, cl1)
		cli.addHeld(base0, readScaleClient(true))
		if dir := os.Getenv(scaleProfileEnv); dir != "" {
			if err := writeHeapProfile(filepath.Join(dir, mode+"-client-heap.pprof")); err != nil {
				b.Fatal(err)
			}
		}
		var in uint64
		if write {
			if err := scaleEach(n, dialers, cl.write); err != nil {
				b.Fatal(err)
			}
			in = uint64(n)
		}
		if _, err := p.awaitConns(n, in); err != nil {
			b.Fatal(err)
		}
		time.Sleep(settle) // the data streams open; the clients are idle
		at, err := p.measure()
		if err != nil {
			b.Fatal(err)
		}
		if at.st.Conns != n {
			b.Fatalf("after %v the server counts %d connected clients, want %d", settle, at.st.Conns, n)
		}
		if err := cl.failed(); err != nil {
			b.Fatalf("a client reported: %v", err)
		}
		closeAll()
		if err := p.stop(); err != nil {
			b.Fatal(err)
		}

		connect += elapsed
		rss += float64(at.rss)
		rss0 += float64(base.rss)
		hwm += float64(at.hwm)
		heap += float64(at.st.HeapAlloc) - float64(base.st.HeapAlloc)
		stack += float64(at.st.StackInuse) - float64(base.st.StackInuse)
		goroutines += float64(at.st.Goroutines - base.st.Goroutines)
	}
	iters, perConn := float64(b.N), float64(b.N)*float64(n)
	const kib, mib = 1 << 10, 1 << 20
	b.ReportMetric(perConn/connect.Seconds(), "conns/s")
	b.ReportMetric(float64(cli.cpu.Microseconds())/perConn, "client-cpu-µs/conn")
	b.ReportMetric(cli.gcCPU.Seconds()*1e6/perConn, "client-gc-µs/conn")
	b.ReportMetric(cli.alloc/perConn/kib, "client-alloc-KiB/conn")
	b.ReportMetric(cli.heap/perConn/kib, "client-heap-KiB/conn")
	b.ReportMetric(cli.stack/perConn/kib, "client-stack-KiB/conn")
	b.ReportMetric(cli.goroutines/perConn, "client-goroutines/conn")
	b.ReportMetric(float64(serverCPU.Microseconds())/perConn, "server-cpu-µs/conn")
	b.ReportMetric(rss/iters/mib, "rss-MiB")
	b.ReportMetric(rss0/iters/mib, "rss0-MiB")
	b.ReportMetric(hwm/iters/mib, "hwm-MiB")
	b.ReportMetric((rss-rss0)/perConn/kib, "rss-KiB/conn")
	b.ReportMetric(heap/perConn/kib, "heap-KiB/conn")
	b.ReportMetric(stack/perConn/kib, "stack-KiB/conn")
	b.ReportMetric(goroutines/perConn, "goroutines/conn")
}

// scaleClient is what the benchmark process (the clients) reads of itself.
type scaleClient struct {
	cpu, gcCPU  time.Duration // process CPU; the part the GC used (runtime/metrics)
	alloc       uint64        // bytes allocated so far
	heap, stack uint64        // live heap (after a GC) and goroutine stacks; with held only
	goroutines  int
}

// readScaleClient reads the counters; with held, it first runs a GC and
// reads the memory held too.
func readScaleClient(held bool) scaleClient {
	var c scaleClient
	c.cpu = cpuTime()
	ms := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(ms)
	c.gcCPU = time.Duration(ms[0].Value.Float64() * float64(time.Second))
	c.alloc = ms[1].Value.Uint64()
	if held {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		c.heap, c.stack, c.goroutines = m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
	}
	return c
}

// scaleClientSums adds up the clients' costs over the iterations: what
// connecting spent (CPU, GC CPU, allocation) and what the connected
// clients hold (live heap, stacks, goroutines).
type scaleClientSums struct {
	cpu, gcCPU                     time.Duration
	alloc, heap, stack, goroutines float64
}

func (s *scaleClientSums) addSpent(before, after scaleClient) {
	s.cpu += after.cpu - before.cpu
	s.gcCPU += after.gcCPU - before.gcCPU
	s.alloc += float64(after.alloc - before.alloc)
}

func (s *scaleClientSums) addHeld(before, after scaleClient) {
	s.heap += float64(after.heap) - float64(before.heap)
	s.stack += float64(after.stack) - float64(before.stack)
	s.goroutines += float64(after.goroutines - before.goroutines)
}

// writeHeapProfile writes this process's heap profile to file.
func writeHeapProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
