package sidebyside

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// childEnv marks a child process: the orchestrator re-executes its own
// binary (the command, or the test binary) with this variable set and the
// child's flags as arguments.
const childEnv = "YOMO_SIDEBYSIDE_CHILD"

// profileEnv, when set to a directory, makes every child write a CPU
// profile of its whole life there, named system-role-name-pid.cpu.prof.
const profileEnv = "YOMO_SIDEBYSIDE_CPUPROFILE"

// childMaxLife bounds a child's life, plus 3 × its traffic duration, even
// if the orchestrator never closes its stdin (it also dies with the
// orchestrator: Pdeathsig on Linux, and stdin reaching EOF everywhere). A
// cell's own bound (runCell) is shorter.
const childMaxLife = 3 * time.Minute

// IsChild reports whether this process was started by Run as one of the
// benchmark's processes. A main (or TestMain) calls ChildMain then, before
// anything else.
func IsChild() bool { return os.Getenv(childEnv) != "" }

// Message kinds: the first byte of every payload.
const (
	kindWarm = 'W' // warm-up: routes and subscriptions settling; not counted
	kindData = 'D' // measured
)

// Tags and subjects of the benchmark traffic.
const (
	tagData  = 0x10
	tagReply = 0x11
	subjData = "bench.data"
	subjRply = "bench.reply"
)

type childArgs struct {
	role      string // router, producer, consumer, clients
	system    string
	name      string // router: its name (yomo zipper name)
	addr      string // clients: the router to dial
	peer      string // router: the upstream router to link to (cascade)
	peerName  string
	certs     string
	size      int
	consumers int
	clients   int
	rtt       bool
	dur       time.Duration
}

func parseChildArgs(args []string) (childArgs, error) {
	var a childArgs
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	fs.StringVar(&a.role, "role", "", "")
	fs.StringVar(&a.system, "system", "", "")
	fs.StringVar(&a.name, "name", "r", "")
	fs.StringVar(&a.addr, "addr", "", "")
	fs.StringVar(&a.peer, "peer", "", "")
	fs.StringVar(&a.peerName, "peer-name", "", "")
	fs.StringVar(&a.certs, "certs", "", "")
	fs.IntVar(&a.size, "size", 16, "")
	fs.IntVar(&a.consumers, "consumers", 1, "")
	fs.IntVar(&a.clients, "clients", 1000, "")
	fs.BoolVar(&a.rtt, "rtt", false, "")
	fs.DurationVar(&a.dur, "dur", 2*time.Second, "")
	err := fs.Parse(args)
	return a, err
}

// ChildMain runs one benchmark process: it connects or listens, prints
// "ready <info>" on stdout, then answers one command per stdin line with
// one stdout line, and exits when stdin closes. It returns the exit code.
func ChildMain() int {
	a, err := parseChildArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	time.AfterFunc(childMaxLife+3*a.dur, func() {
		fmt.Fprintln(os.Stderr, "child: lived too long, exiting")
		os.Exit(3)
	})
	if dir := os.Getenv(profileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%s-%s-%d.cpu.prof", a.system, a.role, a.name, os.Getpid())))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() {
				pprof.StopCPUProfile()
				if err := f.Close(); err != nil {
					fmt.Fprintf(os.Stderr, "child: CPU profile: %v\n", err)
				}
			}()
		}
	}
	if err := runChild(a); err != nil {
		fmt.Fprintf(os.Stderr, "child %s/%s: %v\n", a.role, a.system, err)
		fmt.Printf("error %v\n", err)
		return 1
	}
	return 0
}

// role is what a child does between "ready" and the end of its stdin.
type role interface {
	info() string                      // printed after "ready "
	handle(cmd string) (string, error) // role-specific commands
	close()
}

func runChild(a childArgs) error {
	sys, ok := systems[a.system]
	if !ok {
		return fmt.Errorf("unknown system %q", a.system)
	}
	certs, err := loadCerts(a.certs)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r role
	switch a.role {
	case "router":
		r, err = sys.router(ctx, a, certs)
	case "producer":
		r, err = newProducerRole(ctx, sys, a, certs)
	case "consumer":
		r, err = newConsumerRole(ctx, sys, a, certs)
	case "clients":
		r = &clientsRole{sys: sys, a: a, certs: certs}
	default:
		err = fmt.Errorf("unknown role %q", a.role)
	}
	if err != nil {
		return err
	}
	defer r.close()
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "ready %s\n", r.info())
	if err := out.Flush(); err != nil {
		return fmt.Errorf("stdout: %w", err) // the parent is gone
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := strings.TrimSpace(in.Text())
		var reply string
		switch cmd {
		case "cpu":
			reply = strconv.FormatInt(cpuMicros(), 10)
		case "rss":
			reply = rssKiB()
		case "profile-stop": // the connect cell profiles the burst only
			pprof.StopCPUProfile()
			reply = "ok"
		case "errs":
			asyncErrs.Lock()
			reply = fmt.Sprintf("errs %d", asyncErrs.n)
			if asyncErrs.first != nil {
				reply += " " + strings.ReplaceAll(asyncErrs.first.Error(), "\n", " ")
			}
			asyncErrs.Unlock()
		default:
			reply, err = r.handle(cmd)
			if err != nil {
				reply = "error " + strings.ReplaceAll(err.Error(), "\n", " ")
			}
		}
		fmt.Fprintln(out, reply)
		if err := out.Flush(); err != nil {
			return fmt.Errorf("stdout: %w", err) // the parent is gone
		}
	}
	return nil
}

// cpuMicros is this process's user+system CPU time so far, in µs.
func cpuMicros() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano()/1e3 + ru.Stime.Nano()/1e3
}

// rssKiB returns "<VmHWM> <VmRSS>" in KiB from /proc/self/status ("-1 -1"
// where it does not exist).
func rssKiB() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "-1 -1"
	}
	hwm, rss := "-1", "-1"
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmHWM:":
			hwm = f[1]
		case "VmRSS:":
			rss = f[1]
		}
	}
	return hwm + " " + rss
}

// producerRole writes the workload's messages to one router.
type producerRole struct {
	a   childArgs
	p   producer
	rep chan struct{} // round trip: a reply arrived
}

func newProducerRole(ctx context.Context, sys system, a childArgs, certs *tlsFiles) (*producerRole, error) {
	r := &producerRole{a: a, rep: make(chan struct{}, 1)}
	var onReply func([]byte)
	if a.rtt {
		onReply = func([]byte) {
			select {
			case r.rep <- struct{}{}:
			default:
			}
		}
	}
	p, err := sys.producer(ctx, a, certs, onReply)
	if err != nil {
		return nil, err
	}
	r.p = p
	return r, nil
}

func (r *producerRole) info() string { return "producer" }
func (r *producerRole) close()       { r.p.close() }

func (r *producerRole) handle(cmd string) (string, error) {
	buf := make([]byte, r.a.size)
	switch cmd {
	case "warm":
		buf[0] = kindWarm
		if !r.a.rtt {
			if err := r.p.send(buf); err != nil {
				return "", err
			}
			return "ok", r.p.flush()
		}
		r.drainReplies()
		if err := r.p.send(buf); err != nil {
			return "", err
		}
		select {
		case <-r.rep:
			return "ok 1", nil
		case <-time.After(300 * time.Millisecond):
			return "ok 0", nil
		}
	case "go":
		buf[0] = kindData
		if r.a.rtt {
			return r.roundTrips(buf)
		}
		return r.throughput(buf)
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}

func (r *producerRole) drainReplies() {
	for {
		select {
		case <-r.rep:
		default:
			return
		}
	}
}

// throughput writes as fast as the system takes them for the duration and
// replies "sent <n>".
func (r *producerRole) throughput(buf []byte) (string, error) {
	end := time.Now().Add(r.a.dur)
	var n int64
	for {
		for range 64 {
			if err := r.p.send(buf); err != nil {
				return "", fmt.Errorf("after %d messages: %w", n, err)
			}
			n++
		}
		if time.Now().After(end) {
			break
		}
	}
	if err := r.p.flush(); err != nil {
		return "", err
	}
	return fmt.Sprintf("sent %d", n), nil
}

// roundTrips sends one message at a time and waits for its reply, for the
// duration, and replies "rtt <json rttResult>".
func (r *producerRole) roundTrips(buf []byte) (string, error) {
	r.drainReplies()
	end := time.Now().Add(r.a.dur)
	var samples []time.Duration
	lost := 0
	for time.Now().Before(end) {
		t0 := time.Now()
		if err := r.p.send(buf); err != nil { // no flush: it would wait for a NATS PONG
			return "", err
		}
		select {
		case <-r.rep:
			samples = append(samples, time.Since(t0))
		case <-time.After(time.Second):
			lost++
		}
	}
	res := rttResult{Sent: int64(len(samples) + lost), Received: int64(len(samples))}
	if len(samples) > 0 {
		slices.Sort(samples)
		res.P50us = float64(samples[len(samples)/2]) / 1e3
		res.P99us = float64(samples[min(len(samples)-1, len(samples)*99/100)]) / 1e3
	}
	b, err := json.Marshal(res)
	return "rtt " + string(b), err
}

type rttResult struct {
	Sent, Received int64
	P50us, P99us   float64
}

// consumerRole counts what its consumers (one connection each) receive and,
// for the round trip, echoes it.
type consumerRole struct {
	start time.Time
	cs    []*consumerCount
	c     consumer
}

type consumerCount struct {
	warm, data  atomic.Int64
	first, last atomic.Int64 // ns since the role started, of data messages
	_           [64]byte     // keep consumers' counters on separate cache lines
}

func newConsumerRole(ctx context.Context, sys system, a childArgs, certs *tlsFiles) (*consumerRole, error) {
	r := &consumerRole{start: time.Now(), cs: make([]*consumerCount, a.consumers)}
	for i := range r.cs {
		r.cs[i] = new(consumerCount)
	}
	onMsg := func(i int, p []byte) {
		c := r.cs[i]
		if len(p) == 0 || p[0] != kindData {
			c.warm.Add(1)
			return
		}
		now := int64(time.Since(r.start))
		if c.data.Add(1) == 1 {
			c.first.Store(now)
		}
		c.last.Store(now)
	}
	c, err := sys.consumer(ctx, a, certs, onMsg)
	if err != nil {
		return nil, err
	}
	r.c = c
	return r, nil
}

// countResult is a consumer process's answer to "count", one entry per
// consumer.
type countResult struct {
	Warm, Data []int64
	SpanNs     []int64 // last minus first data message
	AsyncErrs  int     // errors reported asynchronously (NATS: slow consumer)
	FirstErr   string
}

func (r *consumerRole) info() string { return "consumer" }
func (r *consumerRole) close()       { r.c.close() }

func (r *consumerRole) handle(cmd string) (string, error) {
	if cmd != "count" {
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	var res countResult
	for _, c := range r.cs {
		res.Warm = append(res.Warm, c.warm.Load())
		res.Data = append(res.Data, c.data.Load())
		res.SpanNs = append(res.SpanNs, c.last.Load()-c.first.Load())
	}
	asyncErrs.Lock()
	res.AsyncErrs = asyncErrs.n
	if asyncErrs.first != nil {
		res.FirstErr = asyncErrs.first.Error()
	}
	asyncErrs.Unlock()
	b, err := json.Marshal(res)
	return "count " + string(b), err
}

// clientsRole connects many clients at once to one router.
type clientsRole struct {
	sys   system
	a     childArgs
	certs *tlsFiles

	mu      sync.Mutex
	closers []func()
}

// connectResult is the answer to "go".
type connectResult struct {
	Connected, Failed int
	Ms                float64 // from the start until the last client connected
	FirstErr          string
}

func (r *clientsRole) info() string { return "clients" }

func (r *clientsRole) handle(cmd string) (string, error) {
	if cmd != "go" {
		return "", fmt.Errorf("unknown command %q", cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		res      connectResult
		last     time.Duration
		startGun = make(chan struct{})
	)
	start := time.Now()
	for i := range r.a.clients {
		wg.Add(1)
		go func() { // owned by handle: it waits for wg
			defer wg.Done()
			<-startGun
			closer, err := r.sys.connect(ctx, r.a, r.certs, i)
			el := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if res.FirstErr == "" {
					res.FirstErr = err.Error()
				}
				return
			}
			res.Connected++
			last = max(last, el)
			r.mu.Lock()
			r.closers = append(r.closers, closer)
			r.mu.Unlock()
		}()
	}
	start = time.Now()
	close(startGun)
	wg.Wait()
	res.Ms = float64(last) / 1e6
	b, err := json.Marshal(res)
	return "connect " + string(b), err
}

func (r *clientsRole) close() {
	r.mu.Lock()
	cs := r.closers
	r.closers = nil
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(c)
	}
	wg.Wait()
}

var errNotSupported = errors.New("not supported")

// asyncErrs counts the errors this process's clients reported
// asynchronously (NATS slow consumer, yomo dropped frames).
var asyncErrs struct {
	sync.Mutex
	n     int
	first error
}

func reportAsync(err error) {
	asyncErrs.Lock()
	asyncErrs.n++
	if asyncErrs.first == nil {
		asyncErrs.first = err
	}
	asyncErrs.Unlock()
}
