package chaosnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", d, describe())
		}
		time.Sleep(time.Millisecond)
	}
}

// sink is a UDP target that records the sequence numbers it receives, and
// echoes each datagram when echo is set.
type sink struct {
	pc   *net.UDPConn
	echo bool
	done chan struct{}

	mu   sync.Mutex
	seqs []uint64
}

func newSink(t *testing.T, echo bool) *sink {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{pc: pc, echo: echo, done: make(chan struct{})}
	go s.run() // owned by the test: ends at the cleanup's Close
	t.Cleanup(func() {
		pc.Close()
		<-s.done
	})
	return s
}

func (s *sink) run() {
	defer close(s.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := s.pc.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n >= 8 {
			s.mu.Lock()
			s.seqs = append(s.seqs, binary.BigEndian.Uint64(buf))
			s.mu.Unlock()
		}
		if s.echo {
			s.pc.WriteToUDP(buf[:n], from)
		}
	}
}

func (s *sink) addr() string { return s.pc.LocalAddr().String() }

func (s *sink) got() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs...)
}

func listen(t *testing.T, target string, cfg Config) *Proxy {
	t.Helper()
	p, err := Listen(target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dial returns a client socket connected to the proxy.
func dial(t *testing.T, p *Proxy) *net.UDPConn {
	t.Helper()
	pa, err := net.ResolveUDPAddr("udp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, pa)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, seq uint64) {
	t.Helper()
	var b [64]byte
	binary.BigEndian.PutUint64(b[:], seq)
	if _, err := c.Write(b[:]); err != nil {
		t.Fatal(err)
	}
}

// sendPaced sends seqs from..to-1 to sink s through p, waiting every
// batch until the proxy has read them and s has read what the proxy
// forwarded, so no socket buffer overflows and every loss is the proxy's.
// The proxy must not delay datagrams by more than the wait's deadline.
func sendPaced(t *testing.T, p *Proxy, c *net.UDPConn, s *sink, from, to uint64) {
	t.Helper()
	base := p.Stats().ToTarget.Received
	for seq := from; seq < to; seq++ {
		send(t, c, seq)
		if (seq-from)%64 == 63 || seq == to-1 {
			want := base + seq - from + 1
			eventually(t, 5*time.Second, func() bool {
				st := p.Stats().ToTarget
				return st.Received >= want && st.Forwarded+st.Dropped >= want+st.Duplicated &&
					uint64(len(s.got())) == st.Forwarded
			}, func() string { return fmt.Sprintf("proxy %+v, target got %d, sent %d", p.Stats(), len(s.got()), want) })
		}
	}
}

func TestLossRateWithinTolerance(t *testing.T) {
	s := newSink(t, false)
	p := listen(t, s.addr(), Config{Seed: 42})
	if err := p.SetFaults(Faults{Loss: 0.2}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	const n = 5000
	sendPaced(t, p, c, s, 0, n)
	st := p.Stats().ToTarget
	if st.Received != n {
		t.Fatalf("received %d, want %d", st.Received, n)
	}
	// Binomial(5000, 0.2): the standard deviation is 0.57 %; 3 % is > 5 sd.
	rate := float64(st.Dropped) / n
	if rate < 0.17 || rate > 0.23 {
		t.Fatalf("loss rate %.3f, want 0.20 ± 0.03", rate)
	}
	// Every datagram not dropped is forwarded, and reaches the target.
	eventually(t, 5*time.Second, func() bool {
		st := p.Stats().ToTarget
		return st.Forwarded+st.Dropped == n && uint64(len(s.got())) == st.Forwarded
	}, func() string { return fmt.Sprintf("target got %d, proxy %+v", len(s.got()), p.Stats()) })
}

func TestSameSeedSameDecisions(t *testing.T) {
	run := func() []uint64 {
		s := newSink(t, false)
		p := listen(t, s.addr(), Config{Seed: 7})
		p.SetFaults(Faults{Loss: 0.5})
		c := dial(t, p)
		sendPaced(t, p, c, s, 0, 300)
		eventually(t, 5*time.Second, func() bool { return uint64(len(s.got())) == p.Stats().ToTarget.Forwarded },
			func() string { return fmt.Sprintf("target got %d of %+v", len(s.got()), p.Stats()) })
		return s.got()
	}
	a, b := run(), run()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("same seed, different losses:\n%v\n%v", a, b)
	}
	if len(a) < 100 || len(a) > 200 {
		t.Fatalf("%d of 300 delivered at 50 %% loss", len(a))
	}
}

func TestCutDropsAllAndRestoreResumes(t *testing.T) {
	s := newSink(t, true)
	p := listen(t, s.addr(), Config{Seed: 1})
	c := dial(t, p)
	buf := make([]byte, 128)
	roundTrip := func(seq uint64) error {
		send(t, c, seq)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if n < 8 || binary.BigEndian.Uint64(buf) != seq {
			return fmt.Errorf("echo of %d: % x", seq, buf[:n])
		}
		return nil
	}
	if err := roundTrip(1); err != nil {
		t.Fatal(err)
	}

	// Datagrams waiting for their release time are dropped by the cut.
	p.SetFaults(Faults{Delay: time.Hour})
	for i := uint64(0); i < 10; i++ {
		send(t, c, 100+i)
	}
	eventually(t, 5*time.Second, func() bool { return p.Stats().ToTarget.Received == 11 },
		func() string { return fmt.Sprintf("%+v", p.Stats()) })
	p.Cut()
	if st := p.Stats().ToTarget; st.Dropped != 10 || st.Forwarded != 1 {
		t.Fatalf("after cut: %+v, want the 10 queued dropped", st)
	}
	// And everything sent during the cut.
	p.SetFaults(Faults{})
	for i := uint64(0); i < 50; i++ {
		send(t, c, 200+i)
	}
	eventually(t, 5*time.Second, func() bool { return p.Stats().ToTarget.Received == 61 },
		func() string { return fmt.Sprintf("%+v", p.Stats()) })
	if st := p.Stats().ToTarget; st.Dropped != 60 || st.Forwarded != 1 {
		t.Fatalf("during cut: %+v", st)
	}
	if got := s.got(); len(got) != 1 {
		t.Fatalf("target received %v through a cut", got)
	}

	p.Restore()
	if err := roundTrip(2); err != nil {
		t.Fatalf("after restore: %v", err)
	}
	if st := p.Stats(); st.ToTarget.Forwarded != 2 || st.ToClients.Forwarded != 2 || st.Clients != 1 {
		t.Fatalf("after restore: %+v", st)
	}
}

func TestDelayObserved(t *testing.T) {
	s := newSink(t, true)
	p := listen(t, s.addr(), Config{Seed: 1})
	const delay = 40 * time.Millisecond
	p.SetFaults(Faults{Delay: delay})
	c := dial(t, p)
	buf := make([]byte, 128)
	for i := uint64(0); i < 3; i++ {
		start := time.Now()
		send(t, c, i)
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // bounds the test, not the figure
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		// Both ways are delayed: at least twice the delay, whatever the load.
		if rtt := time.Since(start); rtt < 2*delay {
			t.Fatalf("round trip %v through a %v delay each way", rtt, delay)
		}
	}
}

func TestJitterReordersAndDuplicates(t *testing.T) {
	s := newSink(t, false)
	p := listen(t, s.addr(), Config{Seed: 3})
	p.SetFaults(Faults{Jitter: 20 * time.Millisecond, Duplicate: 1})
	c := dial(t, p)
	const n = 200
	sendPaced(t, p, c, s, 0, n)
	eventually(t, 5*time.Second, func() bool { return len(s.got()) == 2*n },
		func() string { return fmt.Sprintf("target got %d of %d: %+v", len(s.got()), 2*n, p.Stats()) })
	seen := map[uint64]int{}
	reordered := 0
	var max uint64
	for i, seq := range s.got() {
		seen[seq]++
		if i > 0 && seq < max {
			reordered++
		}
		max = maxOf(max, seq)
	}
	for seq := uint64(0); seq < n; seq++ {
		if seen[seq] != 2 {
			t.Fatalf("seq %d arrived %d times, want 2", seq, seen[seq])
		}
	}
	if reordered == 0 {
		t.Fatal("20 ms of jitter reordered nothing")
	}
	if st := p.Stats().ToTarget; st.Duplicated != n || st.Forwarded != 2*n {
		t.Fatalf("stats %+v", st)
	}
}

func maxOf(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

func TestTargetDownAndBack(t *testing.T) {
	// A target that goes away and comes back on the same port: the
	// client's socket towards it survives the ICMP errors in between.
	s := newSink(t, true)
	addr := s.addr()
	p := listen(t, addr, Config{})
	c := dial(t, p)
	send(t, c, 1)
	buf := make([]byte, 128)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	s.pc.Close()
	<-s.done
	for i := uint64(0); i < 5; i++ {
		send(t, c, 10+i) // port unreachable
	}
	eventually(t, 5*time.Second, func() bool { return p.Stats().ToTarget.Received == 6 },
		func() string { return fmt.Sprintf("%+v", p.Stats()) })
	ua, _ := net.ResolveUDPAddr("udp", addr)
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	s2 := &sink{pc: pc, echo: true, done: make(chan struct{})}
	go s2.run() // owned by the test: ends at the Close below
	defer func() {
		pc.Close()
		<-s2.done
	}()
	eventually(t, 5*time.Second, func() bool {
		send(t, c, 99)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Read(buf)
		return err == nil
	}, func() string { return fmt.Sprintf("no echo after the target came back: %+v", p.Stats()) })
}

func TestSetFaultsValidates(t *testing.T) {
	s := newSink(t, false)
	p := listen(t, s.addr(), Config{})
	for _, f := range []Faults{{Loss: -0.1}, {Loss: 1.5}, {Loss: math.NaN()}, {Duplicate: 2}, {Delay: -1}, {Jitter: -1}} {
		if err := p.SetFaults(f); err == nil {
			t.Errorf("SetFaults(%+v) accepted", f)
		}
	}
	if err := p.SetFaults(Faults{Loss: 1, Delay: time.Second}); err != nil {
		t.Fatal(err)
	}
	if f := p.Faults(); f.Loss != 1 || f.Delay != time.Second {
		t.Fatalf("Faults() = %+v", f)
	}
}

func TestCloseLeaksNothing(t *testing.T) {
	s := newSink(t, true)
	p, err := Listen(s.addr(), Config{Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Several clients, each with its reader, and datagrams still queued.
	for i := 0; i < 4; i++ {
		c := dial(t, p)
		send(t, c, uint64(i))
	}
	eventually(t, 5*time.Second, func() bool { return p.Stats().Clients == 4 },
		func() string { return fmt.Sprintf("%+v", p.Stats()) })
	p.SetFaults(Faults{Delay: time.Hour})
	c := dial(t, p)
	send(t, c, 9)
	eventually(t, 5*time.Second, func() bool { return p.Stats().ToTarget.Received == 5 },
		func() string { return fmt.Sprintf("%+v", p.Stats()) })
	done := make(chan error, 1)
	go func() { done <- p.Close() }() // owned by the test: ends when Close returns
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a datagram queued for an hour")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Only the sink, which the test owns, may still run.
	goleak.VerifyNone(t, goleak.IgnoreAnyFunction("github.com/yomo-dev/yomo/internal/chaosnet.(*sink).run"))
}
