package sidebyside

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Config of a run. The zero value of a field selects its default.
type Config struct {
	Rounds    int           // interleaved rounds; default 3
	Duration  time.Duration // traffic per cell; default 2.5s
	Clients   int           // the connection cell's clients; default 1000
	Systems   []string      // default all, in table order
	Workloads []string      // default all, in table order
	// Quick runs every cell briefly (200 ms of traffic, 50 clients, one
	// round unless Rounds is set): a smoke test, not a measurement.
	Quick bool
	Exe   string    // the binary to re-execute; default os.Executable()
	Log   io.Writer // progress; nil: none
}

// A workload is one row group of the table.
type workload struct {
	name      string
	title     string
	size      int
	consumers int
	hops      int // routers between producer and consumer
	rtt       bool
	connect   bool
}

var workloads = []workload{
	{name: "16B", title: "16 B, msgs/s", size: 16, consumers: 1, hops: 1},
	{name: "1KiB", title: "1 KiB, msgs/s", size: 1 << 10, consumers: 1, hops: 1},
	{name: "64KiB", title: "64 KiB, MB/s", size: 64 << 10, consumers: 1, hops: 1},
	{name: "rtt", title: "round trip 16 B", size: 16, consumers: 1, hops: 1, rtt: true},
	{name: "cascade", title: "cascade, 2 routers, 1 KiB, msgs/s", size: 1 << 10, consumers: 1, hops: 2},
	{name: "fanout", title: "fan-out ×4, 1 KiB, msgs/s per consumer", size: 1 << 10, consumers: 4, hops: 1},
	{name: "connect", title: "clients connecting at once", connect: true},
}

// WorkloadNames lists the workloads in table order.
func WorkloadNames() []string {
	var ns []string
	for _, w := range workloads {
		ns = append(ns, w.name)
	}
	return ns
}

// SystemNames lists the systems a run compares by default, in table order.
func SystemNames() []string { return append([]string(nil), defaultSystems...) }

// Result is one cell of one round.
type Result struct {
	Round    int
	System   string
	Workload string
	Err      string `json:",omitempty"`

	Sent      int64   // messages written by the producer (round trip: requests)
	Received  int64   // deliveries, summed over consumers (round trip: replies)
	Expected  int64   // Sent × consumers
	MinRecv   int64   // the consumer that got least (fan-out)
	MsgsPerS  float64 // per consumer: deliveries over the span from its first to its last data message (mean over consumers)
	MBPerS    float64 // MsgsPerS × size / 1e6
	CPUusMsg  float64 // user+sys CPU of all processes during the traffic, over deliveries
	P50us     float64
	P99us     float64
	AsyncErrs int // asynchronous errors at the consumers (NATS slow consumer, yomo drops)

	Clients   int
	Connected int
	Refused   int
	ConnectMs float64
	// ConnectCPUms is the user+system CPU of the router and the clients'
	// process from the start of the burst until the last client connected.
	ConnectCPUms float64
	// ConnectRouterCPUms is the router's part of ConnectCPUms.
	ConnectRouterCPUms float64
	RouterHWMKB        int64 // router process peak RSS after the clients connected
	RouterRSSKB        int64
	// RouterStats is what the routers counted at the end of the cell (yomo:
	// Stats() drops and rejections; NATS: slow consumers), "-" where the
	// system counts nothing.
	RouterStats string `json:",omitempty"`
	FirstErr    string `json:",omitempty"`
}

// Lost is Expected minus Received (never negative).
func (r Result) Lost() int64 { return max(0, r.Expected-r.Received) }

func (c *Config) defaults() error {
	if c.Rounds <= 0 {
		c.Rounds = 3
		if c.Quick {
			c.Rounds = 1
		}
	}
	if c.Duration <= 0 {
		c.Duration = 2500 * time.Millisecond
		if c.Quick {
			c.Duration = 200 * time.Millisecond
		}
	}
	if c.Clients <= 0 {
		c.Clients = 1000
		if c.Quick {
			c.Clients = 50
		}
	}
	if len(c.Systems) == 0 {
		c.Systems = SystemNames()
	}
	for _, s := range c.Systems {
		if _, ok := systems[s]; !ok {
			return fmt.Errorf("unknown system %q (have %s)", s, strings.Join(systemOrder, ", "))
		}
	}
	if len(c.Workloads) == 0 {
		c.Workloads = WorkloadNames()
	}
	for _, w := range c.Workloads {
		if _, ok := findWorkload(w); !ok {
			return fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(WorkloadNames(), ", "))
		}
	}
	if c.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		c.Exe = exe
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return nil
}

func findWorkload(name string) (workload, bool) {
	for _, w := range workloads {
		if w.name == name {
			return w, true
		}
	}
	return workload{}, false
}

// Run runs cfg.Rounds interleaved rounds: in each, every workload on every
// system (the systems' order rotates from round to round). A cell that
// fails is recorded with its error and the run goes on. Run returns when
// ctx ends too, killing the processes of the current cell.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sidebyside-certs-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }() // a temporary directory: nothing to do if it stays
	if err := writeCerts(dir); err != nil {
		return nil, err
	}
	var results []Result
	for round := 1; round <= cfg.Rounds; round++ {
		for _, wn := range cfg.Workloads {
			w, _ := findWorkload(wn)
			for i := range cfg.Systems {
				if err := ctx.Err(); err != nil {
					return results, err
				}
				sys := cfg.Systems[(i+round-1)%len(cfg.Systems)]
				t0 := time.Now()
				r := runCell(ctx, cfg, dir, sys, w)
				r.Round = round
				results = append(results, r)
				fmt.Fprintf(cfg.Log, "round %d %-8s %-10s %6.1fs %s\n", round, w.name, sys, time.Since(t0).Seconds(), r.summary())
			}
		}
	}
	return results, nil
}

func (r Result) summary() string {
	if r.Err != "" {
		return "ERROR " + r.Err
	}
	switch r.Workload {
	case "connect":
		s := fmt.Sprintf("%d/%d connected in %.0f ms (CPU %.0f ms, the router's %.0f), failed %d, router peak RSS %.1f MiB, router: %s",
			r.Connected, r.Clients, r.ConnectMs, r.ConnectCPUms, r.ConnectRouterCPUms, r.Refused, float64(r.RouterHWMKB)/1024, r.RouterStats)
		if r.FirstErr != "" {
			s += ", first error: " + r.FirstErr
		}
		return s
	case "rtt":
		return fmt.Sprintf("%d round trips, p50 %.1f µs, p99 %.1f µs, lost %d, router: %s", r.Received, r.P50us, r.P99us, r.Lost(), r.RouterStats)
	}
	s := fmt.Sprintf("%.0f msgs/s (%.1f MB/s), %.2f µs CPU/msg, sent %d, received %d, lost %d, async errors %d, router: %s",
		r.MsgsPerS, r.MBPerS, r.CPUusMsg, r.Sent, r.Received, r.Lost(), r.AsyncErrs, r.RouterStats)
	if r.FirstErr != "" {
		s += ", first async error: " + r.FirstErr
	}
	return s
}

// cell holds the processes of one cell; close stops them all.
type cell struct {
	ctx    context.Context
	cancel context.CancelFunc
	cfg    Config
	dir    string
	sys    string
	w      workload
	procs  []*proc
}

func (c *cell) start(name string, args ...string) (*proc, string, error) {
	base := []string{"-system", c.sys, "-certs", c.dir, "-dur", c.cfg.Duration.String(),
		"-size", fmt.Sprint(c.w.size), "-consumers", fmt.Sprint(c.w.consumers), "-clients", fmt.Sprint(c.cfg.Clients)}
	if c.w.rtt {
		base = append(base, "-rtt")
	}
	p, info, err := startProc(c.ctx, c.cfg.Exe, c.sys+"/"+name, append(base, args...)...)
	if err != nil {
		return nil, "", err
	}
	c.procs = append(c.procs, p)
	return p, info, nil
}

// close stops the processes, clients before routers, and returns the
// first failure to exit cleanly.
func (c *cell) close() error {
	var first error
	for i := len(c.procs) - 1; i >= 0; i-- {
		if err := c.procs[i].stop(); err != nil && first == nil {
			first = err
		}
	}
	c.cancel()
	return first
}

func runCell(ctx context.Context, cfg Config, dir, sys string, w workload) Result {
	res := Result{System: sys, Workload: w.name}
	// A cell's hard bound: setup, traffic, drain, teardown.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute+2*cfg.Duration)
	c := &cell{ctx: ctx, cancel: cancel, cfg: cfg, dir: dir, sys: sys, w: w}
	var err error
	if w.connect {
		err = c.runConnect(&res)
	} else {
		err = c.runTraffic(&res)
	}
	if cerr := c.close(); err == nil {
		err = cerr
	}
	if err != nil {
		res.Err = strings.ReplaceAll(err.Error(), "\n", " ")
	}
	return res
}

func (c *cell) runConnect(res *Result) error {
	router, info, err := c.start("router", "-role", "router", "-name", "r")
	if err != nil {
		return err
	}
	addr := strings.Fields(info)[0]
	clients, _, err := c.start("clients", "-role", "clients", "-addr", addr)
	if err != nil {
		return err
	}
	for _, p := range []*proc{router, clients} {
		if p.cpu0, err = p.cpu(); err != nil {
			return err
		}
	}
	line, err := clients.call("go", time.Minute)
	if err != nil {
		return err
	}
	for _, p := range []*proc{router, clients} {
		v, err := p.cpu()
		if err != nil {
			return err
		}
		if _, err := p.call("profile-stop", 10*time.Second); err != nil {
			return err
		}
		ms := float64(v-p.cpu0) / 1e3
		res.ConnectCPUms += ms
		if p == router {
			res.ConnectRouterCPUms = ms
		}
	}
	var cr connectResult
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "connect ")), &cr); err != nil {
		return fmt.Errorf("clients answered %q: %w", line, err)
	}
	res.Clients, res.Connected, res.Refused, res.ConnectMs, res.FirstErr = c.cfg.Clients, cr.Connected, cr.Failed, cr.Ms, cr.FirstErr
	line, err = router.call("rss", 10*time.Second)
	if err != nil {
		return err
	}
	if _, err := fmt.Sscan(line, &res.RouterHWMKB, &res.RouterRSSKB); err != nil {
		return fmt.Errorf("router answered %q: %w", line, err)
	}
	res.RouterStats, err = routerStats([]*proc{router})
	return err
}

// routerStats asks every router for what it counted.
func routerStats(routers []*proc) (string, error) {
	var ss []string
	for _, r := range routers {
		line, err := r.call("stats", 10*time.Second)
		if err != nil {
			return "", err
		}
		ss = append(ss, strings.TrimPrefix(line, "stats "))
	}
	return strings.Join(ss, "; "), nil
}

func (c *cell) runTraffic(res *Result) error {
	// Routers: the one next to the consumers first, then (cascade) the one
	// next to the producer, linked to it.
	var routers []*proc
	_, info, err := c.start("router-b", "-role", "router", "-name", "b")
	if err != nil {
		return err
	}
	consAddr, linkAddr := splitInfo(info)
	prodAddr := consAddr
	if c.w.hops == 2 {
		_, info, err := c.start("router-a", "-role", "router", "-name", "a", "-peer", linkAddr, "-peer-name", "b")
		if err != nil {
			return err
		}
		prodAddr, _ = splitInfo(info)
	}
	routers = append(routers, c.procs...)
	cons, _, err := c.start("consumer", "-role", "consumer", "-addr", consAddr)
	if err != nil {
		return err
	}
	prod, _, err := c.start("producer", "-role", "producer", "-addr", prodAddr)
	if err != nil {
		return err
	}
	all := append(append([]*proc(nil), routers...), cons, prod)

	// Warm up until every consumer got a message (round trip: a reply came
	// back): subscriptions, routes and mesh links have settled.
	if err := c.warm(prod, cons); err != nil {
		return err
	}
	before, err := c.count(cons)
	if err != nil {
		return err
	}
	for _, p := range all {
		if p.cpu0, err = p.cpu(); err != nil {
			return err
		}
	}
	line, err := prod.call("go", c.cfg.Duration+time.Minute)
	if err != nil {
		return err
	}
	if c.w.rtt {
		var rr rttResult
		if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "rtt ")), &rr); err != nil {
			return fmt.Errorf("producer answered %q: %w", line, err)
		}
		res.Sent, res.Received, res.Expected, res.P50us, res.P99us = rr.Sent, rr.Received, rr.Sent, rr.P50us, rr.P99us
		res.MinRecv = rr.Received
		after, err := c.count(cons)
		if err != nil {
			return err
		}
		res.AsyncErrs = after.AsyncErrs - before.AsyncErrs
		res.FirstErr = after.FirstErr
		if err := c.producerErrs(prod, res); err != nil {
			return err
		}
		res.RouterStats, err = routerStats(routers)
		return err
	}
	if _, err := fmt.Sscanf(line, "sent %d", &res.Sent); err != nil {
		return fmt.Errorf("producer answered %q: %w", line, err)
	}
	res.Expected = res.Sent * int64(c.w.consumers)
	after, err := c.drain(cons, before.sum()+res.Expected)
	if err != nil {
		return err
	}
	var cpu int64
	for _, p := range all {
		v, err := p.cpu()
		if err != nil {
			return err
		}
		cpu += v - p.cpu0
	}
	res.AsyncErrs = after.AsyncErrs - before.AsyncErrs
	res.FirstErr = after.FirstErr
	if err := c.producerErrs(prod, res); err != nil {
		return err
	}
	if res.RouterStats, err = routerStats(routers); err != nil {
		return err
	}
	res.MinRecv = -1
	var rate float64
	for i := range after.Data {
		got := after.Data[i] - before.Data[i]
		res.Received += got
		if res.MinRecv < 0 || got < res.MinRecv {
			res.MinRecv = got
		}
		if span := after.SpanNs[i]; span > 0 && got > 1 {
			rate += float64(got-1) / (float64(span) / 1e9)
		}
	}
	res.MsgsPerS = rate / float64(len(after.Data))
	res.MBPerS = res.MsgsPerS * float64(c.w.size) / 1e6
	if res.Received > 0 {
		res.CPUusMsg = float64(cpu) / float64(res.Received)
	}
	return nil
}

// producerErrs adds the errors the producer's client reported
// asynchronously to res.
func (c *cell) producerErrs(prod *proc, res *Result) error {
	line, err := prod.call("errs", 10*time.Second)
	if err != nil {
		return err
	}
	var n int
	if _, err := fmt.Sscanf(line, "errs %d", &n); err != nil {
		return fmt.Errorf("producer answered %q: %w", line, err)
	}
	res.AsyncErrs += n
	if _, first, ok := strings.Cut(strings.TrimPrefix(line, "errs "), " "); ok && res.FirstErr == "" {
		res.FirstErr = "producer: " + first
	}
	return nil
}

func splitInfo(info string) (client, link string) {
	f := strings.Fields(info)
	if len(f) < 2 {
		return info, info
	}
	return f[0], f[1]
}

func (c *cell) count(cons *proc) (countResult, error) {
	var cr countResult
	line, err := cons.call("count", 10*time.Second)
	if err != nil {
		return cr, err
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "count ")), &cr); err != nil {
		return cr, fmt.Errorf("consumer answered %q: %w", line, err)
	}
	return cr, nil
}

func (cr countResult) sum() int64 {
	var n int64
	for _, d := range cr.Data {
		n += d
	}
	return n
}

func (c *cell) warm(prod, cons *proc) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		line, err := prod.call("warm", 10*time.Second)
		if err != nil {
			return err
		}
		if c.w.rtt {
			if line == "ok 1" {
				return nil
			}
			continue
		}
		time.Sleep(20 * time.Millisecond)
		cr, err := c.count(cons)
		if err != nil {
			return err
		}
		ready := true
		for _, w := range cr.Warm {
			ready = ready && w > 0
		}
		if ready {
			return nil
		}
	}
	return fmt.Errorf("warm-up: no message reached every consumer within 15s")
}

// drain waits until the consumers got want deliveries in all, or until
// nothing more arrives for a while (the rest is lost).
func (c *cell) drain(cons *proc, want int64) (countResult, error) {
	quiet := 500 * time.Millisecond
	deadline := time.Now().Add(30 * time.Second)
	last, moved := int64(-1), time.Now()
	for {
		cr, err := c.count(cons)
		if err != nil {
			return cr, err
		}
		got := cr.sum()
		if got >= want || time.Now().After(deadline) {
			return cr, nil
		}
		if got != last {
			last, moved = got, time.Now()
		} else if time.Since(moved) > quiet {
			return cr, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
