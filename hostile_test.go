package yomo_test

// Hostile peers next to a working pipeline. Every test starts a zipper
// with a source→function pipeline that writes continuously, attacks the
// zipper, checks the specific refusal (error, close code, reason), and
// checks that the pipeline delivered during the attack and still delivers
// afterwards, without an error on its clients.

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// sendControl opens the control stream, writes b (and a FIN when fin),
// and returns the zipper's answer: the Rejected frame if it arrived, and
// how the connection was closed.
func sendControl(t *testing.T, tc transport.Conn, b []byte, fin bool) (*frame.Rejected, *transport.CloseError) {
	t.Helper()
	st, err := tc.OpenStream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(b); err != nil {
		t.Fatal(err)
	}
	if fin {
		st.Close()
	}
	var rej *frame.Rejected
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	if ft, body, err := frame.NewReader(st, frame.MaxControlSize).Next(); err == nil {
		if ft != frame.TypeRejected {
			t.Fatalf("zipper answered %s, want rejected", ft)
		}
		v, err := frame.DecodeControl(ft, body)
		if err != nil {
			t.Fatal(err)
		}
		rej = v.(*frame.Rejected)
	}
	return rej, closeErrorOf(t, tc, 5*time.Second)
}

// wantRejected checks a rejection arrived with code and a reason
// containing want, as a Rejected frame (when it made it before the close)
// and as the connection's close code and reason.
func wantRejected(t *testing.T, rej *frame.Rejected, ce *transport.CloseError, code uint16, want string) {
	t.Helper()
	if ce.Code != yomo.CloseRejectBaseForTest+uint64(code) || !ce.Remote || !strings.Contains(ce.Reason, want) {
		t.Fatalf("closed with code %#x reason %q, want code %#x and a reason containing %q", ce.Code, ce.Reason, yomo.CloseRejectBaseForTest+uint64(code), want)
	}
	if rej != nil && (rej.Code != code || rej.Reason != ce.Reason) {
		t.Fatalf("rejected frame %+v disagrees with the close (%#x %q)", rej, ce.Code, ce.Reason)
	}
}

func handshakeBytes(t *testing.T, hs *frame.Handshake) []byte {
	t.Helper()
	b, err := frame.AppendControl(nil, hs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// heapGrowth runs fn and returns how much the live heap grew.
func heapGrowth(fn func()) int64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	fn()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
}

func TestHostileUDPGarbage(t *testing.T) {
	t.Parallel()
	tz, p := pipelineZipper(t)
	before := tz.Stats().Connections
	p.during(t, func() {
		uc, err := net.Dial("udp", tz.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		buf := make([]byte, 1500)
		for i := 0; i < 3000; i++ {
			n := 1 + i%len(buf)
			rand.Read(buf[:n])
			switch i % 3 {
			case 0: // a QUIC long header (Initial, version 1) with garbage after it
				if n >= 5 {
					buf[0], buf[1], buf[2], buf[3], buf[4] = 0xc3, 0, 0, 0, 1
				}
			case 1: // a short header packet for a connection that does not exist
				buf[0] = 0x40 | buf[0]&0x3f
			}
			if _, err := uc.Write(buf[:n]); err != nil {
				t.Fatal(err)
			}
		}
	})
	after := tz.Stats().Connections
	if after.Accepted != before.Accepted || after.Rejected != before.Rejected || after.Pending != 0 {
		t.Fatalf("garbage datagrams reached the zipper: before %+v after %+v", before, after)
	}
	t.Logf("3000 garbage datagrams: dropped by QUIC, no connection, connections %+v", after)
}

func TestHostileWrongALPN(t *testing.T) {
	t.Parallel()
	tz, p := pipelineZipper(t)
	before := tz.Stats().Connections
	p.during(t, func() {
		for _, alpn := range []string{"h3", "yomo/0", "yomo/2", "hq-interop"} {
			tc, err := transport.DialALPN(ctxT(t), tz.addr, &tls.Config{RootCAs: tz.RootCAs()}, transport.QUICConfig{}, alpn)
			if err == nil {
				tc.CloseWithError(0, "")
				t.Fatalf("ALPN %q: connected", alpn)
			}
			if !strings.Contains(err.Error(), "no application protocol") {
				t.Fatalf("ALPN %q: %v, want a TLS no_application_protocol alert", alpn, err)
			}
			t.Logf("ALPN %q: %v", alpn, err)
		}
	})
	if after := tz.Stats().Connections; after.Accepted != before.Accepted || after.Rejected != before.Rejected {
		t.Fatalf("a wrong-ALPN peer reached the zipper: %+v", after)
	}
}

// TestHostileControlStream writes bad handshakes on a real control stream.
//
// Not parallel: it measures the process's heap, which parallel tests
// would grow.
func TestHostileControlStream(t *testing.T) {
	tz, p := pipelineZipper(t, yomo.WithHandshakeTimeout(time.Second))
	valid := func(mod func(*frame.Handshake)) []byte {
		hs := &frame.Handshake{Version: frame.ProtocolVersion, Name: "x", Kind: frame.KindSource, ID: 9}
		mod(hs)
		return handshakeBytes(t, hs)
	}
	validSrc := valid(func(*frame.Handshake) {})
	cases := []struct {
		name  string
		in    []byte
		fin   bool
		code  uint16
		close uint64 // when not a rejection
		want  string
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false, frame.RejectBadHandshake, 0, "unknown type 0x47"},
		{"random bytes", append([]byte{0xfe}, bytes.Repeat([]byte{0xa5}, 100)...), false, frame.RejectBadHandshake, 0, "unknown type 0xfe"},
		{"unknown frame type", []byte{0x42, 0, 0, 0, 1, 0x80}, false, frame.RejectBadHandshake, 0, "unknown type 0x42"},
		{"1 GiB handshake header", []byte{byte(frame.TypeHandshake), 0x40, 0, 0, 0}, false, frame.RejectBadHandshake, 0, "handshake frame of 1073741824 bytes exceeds the limit of 65536"},
		{"max length header", []byte{byte(frame.TypeHandshake), 0xff, 0xff, 0xff, 0xff}, false, frame.RejectBadHandshake, 0, "exceeds the limit of 65536"},
		{"data frame first", frame.AppendData(nil, &frame.Data{Tag: 1}), false, frame.RejectBadHandshake, 0, "first frame is data"},
		{"ping first", frame.AppendPing(nil, 1, false), false, frame.RejectBadHandshake, 0, "first frame is ping"},
		{"truncated header", []byte{byte(frame.TypeHandshake), 0, 0}, true, frame.RejectBadHandshake, 0, "truncated frame"},
		{"truncated body", validSrc[:len(validSrc)-3], true, frame.RejectBadHandshake, 0, "truncated frame"},
		{"empty stream", nil, true, frame.RejectBadHandshake, 0, "control stream ended before a handshake"},
		{"body not msgpack", append(frame.AppendHeader(nil, frame.TypeHandshake, 4), 0xc1, 0xc1, 0xc1, 0xc1), false, frame.RejectBadHandshake, 0, "malformed handshake frame"},
		{"array of 4 billion tags", append(frame.AppendHeader(nil, frame.TypeHandshake, 7), 0x81, 0xa4, 't', 'a', 'g', 's', 0xdd), false, frame.RejectBadHandshake, 0, "malformed handshake frame"},
		{"version 1 (msgpack data bodies)", valid(func(h *frame.Handshake) { h.Version = 1 }), false, frame.RejectVersion, 0, "unsupported protocol version 1 (zipper speaks 2)"},
		{"version 3", valid(func(h *frame.Handshake) { h.Version = 3 }), false, frame.RejectVersion, 0, "unsupported protocol version 3"},
		{"empty name", valid(func(h *frame.Handshake) { h.Name = "" }), false, frame.RejectBadHandshake, 0, "empty name"},
		{"huge name", valid(func(h *frame.Handshake) { h.Name = strings.Repeat("n", 60000) }), false, frame.RejectBadHandshake, 0, "name of 60000 bytes (limit 255)"},
		{"kind 9", valid(func(h *frame.Handshake) { h.Kind = 9 }), false, frame.RejectBadHandshake, 0, "unsupported client kind kind(9)"},
		{"function without tags", valid(func(h *frame.Handshake) { h.Kind = frame.KindFunction }), false, frame.RejectBadHandshake, 0, "must observe at least one tag"},
		{"2000 tags", valid(func(h *frame.Handshake) { h.Kind = frame.KindFunction; h.ObserveTags = make([]yomo.Tag, 2000) }), false, frame.RejectDenied, 0, "too many observed tags: 2000 (limit 1024)"},
		{"partial handshake, then silence", validSrc[:8], false, 0, yomo.CloseProtocolForTest, "no complete handshake within 1s"},
	}
	p.during(t, func() {
		var wg sync.WaitGroup
		for _, tc := range cases {
			wg.Add(1)
			go func() { // owned by this loop: joined below
				defer wg.Done()
				t.Run(tc.name, func(t *testing.T) {
					growth := heapGrowth(func() {
						rej, ce := sendControl(t, rawConn(t, tz), tc.in, tc.fin)
						if tc.code == 0 {
							if rej != nil || ce.Code != tc.close || !strings.Contains(ce.Reason, tc.want) {
								t.Fatalf("got %+v, closed with %#x %q; want no rejection and a close %#x %q", rej, ce.Code, ce.Reason, tc.close, tc.want)
							}
						} else {
							wantRejected(t, rej, ce, tc.code, tc.want)
						}
						t.Logf("closed: code %#x reason %q", ce.Code, ce.Reason)
					})
					if growth > 64<<20 {
						t.Errorf("heap grew by %d MiB", growth>>20)
					}
				})
			}()
		}
		wg.Wait()
	})
	st := tz.Stats().Connections
	if st.Rejected != uint64(len(cases)) || st.RejectedBy["timeout"] != 1 || st.RejectedBy["version"] != 2 || st.RejectedBy["denied"] != 1 {
		t.Fatalf("stats %+v, want %d rejections (1 timeout, 2 version, 1 denied)", st, len(cases))
	}
}

// TestHostileDataStream sends bad frames after a valid handshake.
//
// Not parallel: it measures the process's heap, which parallel tests
// would grow.
func TestHostileDataStream(t *testing.T) {
	tz, p := pipelineZipper(t)
	hs := handshakeBytes(t, &frame.Handshake{Version: frame.ProtocolVersion, Name: "rogue", Kind: frame.KindSource, ID: 77})
	cases := []struct {
		name    string
		control bool // write on the control stream rather than a data stream
		in      []byte
		fin     bool
		want    string
		body    bool // write on a new body stream (bidirectional) rather than a data stream
	}{
		{"1 GiB data header", false, []byte{byte(frame.TypeData), 0x40, 0, 0, 0}, false, "data frame of 1073741824 bytes exceeds the limit of 4259840", false},
		{"over the frame limit", false, append(frame.AppendHeader(nil, frame.TypeData, 4<<20+frame.MaxEnvelope+1), make([]byte, 1000)...), false, "exceeds the limit of 4259840", false},
		{"unknown type", false, []byte{0x3c, 0, 0, 0, 1, 0x90}, false, "frame: unknown type 0x3c", false},
		{"garbage", false, []byte("\x00garbage garbage garbage"), false, "frame: unknown type 0x00", false},
		{"control frame on a data stream", false, frame.AppendPing(nil, 1, false), false, "unexpected ping frame on a data stream", false},
		{"malformed data body", false, append(frame.AppendHeader(nil, frame.TypeData, 3), 0x93, 1, 2), false, "malformed", false},
		{"truncated data frame", false, frame.AppendData(nil, &frame.Data{Tag: pipelineTag, Payload: make([]byte, 100)})[:50], true, "truncated frame", false},
		{"second handshake", true, hs, false, "unexpected handshake frame on the control stream", false},
		{"unknown type on control", true, []byte{0x3c, 0, 0, 0, 1, 0x80}, false, "frame: unknown type 0x3c", false},
		{"1 GiB control header", true, []byte{byte(frame.TypePing), 0x40, 0, 0, 0}, false, "ping frame of 1073741824 bytes exceeds the limit of 65536", false},
		{name: "1 GiB body header", body: true, in: []byte{byte(frame.TypeBody), 0x40, 0, 0, 0}, want: "body frame of 1073741824 bytes exceeds the limit of 65536"},
		{name: "data frame on a body stream", body: true, in: frame.AppendData(nil, &frame.Data{Tag: pipelineTag}), want: "a data frame opens a body stream"},
		{name: "body frame with a payload", body: true, in: append(frame.AppendHeader(nil, frame.TypeBody, 3), 0, 1, 'x'), want: "malformed"},
		{name: "truncated body frame", body: true, in: frame.AppendBody(nil, &frame.Data{Tag: pipelineTag, Target: []byte("target")})[:9], fin: true, want: "truncated body frame"},
		{name: "garbage on a body stream", body: true, in: []byte("\x00garbage garbage garbage"), want: "frame: unknown type 0x00"},
	}
	p.during(t, func() {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				growth := heapGrowth(func() {
					c, st := handshaken(t, tz, hs)
					var err error
					var w interface {
						Write([]byte) (int, error)
						Close() error
					} = st
					switch {
					case tc.body:
						if w, err = c.OpenStream(ctxT(t)); err != nil {
							t.Fatal(err)
						}
					case !tc.control:
						if w, err = c.OpenUniStream(ctxT(t)); err != nil {
							t.Fatal(err)
						}
					}
					w.Write(tc.in)
					if tc.fin {
						w.Close()
					}
					ce := closeErrorOf(t, c, 5*time.Second)
					if ce.Code != yomo.CloseProtocolForTest || !strings.Contains(ce.Reason, tc.want) {
						t.Fatalf("closed with %#x %q, want %#x and a reason containing %q", ce.Code, ce.Reason, yomo.CloseProtocolForTest, tc.want)
					}
					t.Logf("closed: code %#x reason %q", ce.Code, ce.Reason)
				})
				if growth > 64<<20 {
					t.Errorf("heap grew by %d MiB", growth>>20)
				}
			})
		}
	})
	if st := tz.Stats().Connections; st.Accepted < uint64(len(cases)) {
		t.Fatalf("stats %+v: the rogue handshakes were not all accepted", st)
	}
}

// TestHostileSilentPeers: 50 peers complete QUIC and never say hello; a
// real client still connects at once, and each silent peer is closed
// after the handshake timeout with the reason.
func TestHostileSilentPeers(t *testing.T) {
	t.Parallel()
	const timeout = 2500 * time.Millisecond
	tz, p := pipelineZipper(t, yomo.WithHandshakeTimeout(timeout))
	const n = 50
	silent := make([]transport.Conn, n)
	p.during(t, func() {
		var wg sync.WaitGroup
		for i := range silent {
			wg.Add(1)
			go func() { // owned by this loop: joined below
				defer wg.Done()
				tc, err := transport.Dial(ctxT(t), tz.addr, &tls.Config{RootCAs: tz.RootCAs()}, transport.QUICConfig{})
				if err != nil {
					t.Error(err)
					return
				}
				silent[i] = tc
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, tc := range silent {
			t.Cleanup(func() { tc.CloseWithError(0, "") })
		}
		eventually(t, 2*time.Second, func() bool { return tz.Stats().Connections.Pending >= n/2 }, func() string { return fmt.Sprintf("silent peers not pending: %+v", tz.Stats().Connections) })
		pending := tz.Stats().Connections.Pending
		src := newSource(t, tz, "latecomer", tz.clients)
		start := time.Now()
		if err := src.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if d > time.Second {
			t.Fatalf("a real client took %v to connect among %d silent peers", d, n)
		}
		t.Logf("real client connected in %v with %d silent peers pending", d, pending)
		for _, tc := range silent {
			ce := closeErrorOf(t, tc, 5*time.Second)
			if want := fmt.Sprintf("no handshake within %v", timeout); ce.Code != yomo.CloseProtocolForTest || ce.Reason != want {
				t.Fatalf("silent peer closed with %#x %q, want %#x %q", ce.Code, ce.Reason, yomo.CloseProtocolForTest, want)
			}
		}
	})
	st := tz.Stats().Connections
	if st.RejectedBy["timeout"] != n || st.Pending != 0 {
		t.Fatalf("stats %+v, want %d timeouts and nothing pending", st, n)
	}
}

// TestHostileWrongTokens: 100 wrong credentials are all rejected, none is
// echoed or logged, the pipeline (with the right token) goes on, and Stats
// counts them. Half come over QUIC, half in memory (the same handshake
// path without the cost of a TLS handshake each).
func TestHostileWrongTokens(t *testing.T) {
	t.Parallel()
	const secret = "the-real-secret-4d1f"
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	tz := startZipper(t, "", yomo.WithAuthToken(secret), yomo.WithLogger(logger))
	p := startPipeline(t, tz, append(tz.clients, yomo.WithCredential("token:"+secret)))
	const n = 100
	tried := make([]string, n)
	for i := range tried {
		switch i % 4 {
		case 0:
			tried[i] = fmt.Sprintf("token:wrong-%d-%x", i, i*7919)
		case 1:
			tried[i] = fmt.Sprintf("token:%s%d", secret, i) // the secret as a prefix
		case 2:
			tried[i] = fmt.Sprintf("bearer:%s-%d", secret[:10], i)
		case 3:
			tried[i] = strings.Repeat("x", i*100) // up to 9.9 KB
		}
	}
	p.during(t, func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 10)
		for i, cred := range tried {
			wg.Add(1)
			sem <- struct{}{}
			go func() { // owned by this loop: joined below
				defer wg.Done()
				defer func() { <-sem }()
				opts := tz.clients
				if (i/4)%2 == 1 {
					opts = []yomo.ClientOption{yomo.WithInMemory(tz.Zipper)}
				}
				s := yomo.NewSource(fmt.Sprintf("intruder-%d", i), tz.addr, append(opts, yomo.WithCredential(cred))...)
				defer s.Close()
				err := s.Connect(ctxT(t))
				var rej *yomo.RejectedError
				if !errors.As(err, &rej) || rej.Code != frame.RejectAuth || rej.Reason != "authentication failed" {
					t.Errorf("credential %d: %v, want a RejectedError(auth, %q)", i, err, "authentication failed")
					return
				}
				if cred != "" && strings.Contains(err.Error(), cred) || strings.Contains(err.Error(), secret) {
					t.Errorf("rejection %q echoes a credential", err)
				}
			}()
		}
		wg.Wait()
	})
	st := tz.Stats().Connections
	if st.Rejected != n || st.RejectedBy["auth"] != n {
		t.Fatalf("stats %+v, want %d auth rejections", st, n)
	}
	logged := logs.String()
	for _, cred := range append(tried, secret) {
		if len(cred) > 3 && strings.Contains(logged, strings.TrimPrefix(cred, "token:")) {
			t.Fatalf("the zipper logged a credential (%q)", cred)
		}
	}
	if got := strings.Count(logged, "authentication failed"); got != n {
		t.Errorf("%d rejections logged, want %d", got, n)
	}
}

// TestHostileHugeWrite: a 256 MiB write fails with ErrFrameTooLarge
// before anything is queued or sent, and costs no memory.
//
// Not parallel: it measures what the process allocates, which parallel
// tests would add to.
func TestHostileHugeWrite(t *testing.T) {
	tz, p := pipelineZipper(t)
	src := connectSource(t, tz, "big", tz.clients)
	huge := make([]byte, 256<<20) // allocated before measuring, never touched
	p.during(t, func() {
		in := tz.Stats().FramesIn
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		err := src.Write(1, huge)
		err2 := src.WriteWithTarget(1, huge, "t")
		runtime.ReadMemStats(&m1)
		var se *frame.SizeError
		if !errors.Is(err, yomo.ErrFrameTooLarge) || !errors.As(err, &se) || se.Max != frame.DefaultMaxSize || !errors.Is(err2, yomo.ErrFrameTooLarge) {
			t.Fatalf("256 MiB write = %v, %v; want ErrFrameTooLarge (*frame.SizeError, limit 4 MiB)", err, err2)
		}
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 8<<20 {
			t.Fatalf("the refused writes allocated %d MiB", alloc>>20)
		}
		t.Logf("256 MiB write: %v; allocated %d KiB meanwhile (whole process)", err, (m1.TotalAlloc-m0.TotalAlloc)>>10)
		if err := src.Write(pipelineTag, []byte("still usable")); err != nil {
			t.Fatalf("write after the refused one: %v", err)
		}
		eventually(t, 5*time.Second, func() bool { return tz.Stats().FramesIn > in }, func() string { return "zipper" })
	})
	runtime.KeepAlive(huge)
	if st, _ := tz.Stats().Function("pipeline-sink"); st.Dropped != 0 {
		t.Fatalf("drops: %+v", st)
	}
}

// TestHostileOverLimitWriteFromLaxClient: a client configured with a
// larger frame limit than the zipper learns the zipper's limit from the
// handshake, so its Write fails before sending; a raw peer that sends an
// over-limit frame anyway is closed (TestHostileDataStream).
func TestHostileOverLimitWriteFromLaxClient(t *testing.T) {
	t.Parallel()
	tz, p := pipelineZipper(t, yomo.WithMaxFrameSize(64<<10))
	src := connectSource(t, tz, "lax", append(tz.clients, yomo.WithMaxFrameSize(1<<20)))
	p.during(t, func() {
		err := src.Write(pipelineTag, make([]byte, 100<<10))
		var se *frame.SizeError
		if !errors.As(err, &se) || se.Max != 64<<10 {
			t.Fatalf("write of 100 KiB to a zipper taking 64 KiB = %v, want a SizeError with the zipper's limit", err)
		}
		if err := src.Write(pipelineTag, make([]byte, 60<<10)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestHostileZipper: the client enforces its frame limit on what it
// receives too. A fake zipper acknowledges the handshake, then declares a
// 1 GiB data frame: the client drops the connection with the reason and
// allocates nothing for it.
//
// Not parallel: it measures the process's heap, which parallel tests
// would grow.
func TestHostileZipper(t *testing.T) {
	ln, addr, trust := fakeZipper(t)
	served := make(chan error, 1)
	go func() { // owned by the test: ends after one connection
		served <- func() error {
			tc, err := ln.Accept(ctxT(t))
			if err != nil {
				return err
			}
			defer tc.CloseWithError(0, "")
			st, err := tc.AcceptStream(ctxT(t))
			if err != nil {
				return err
			}
			if _, _, err := frame.NewReader(st, frame.MaxControlSize).Next(); err != nil {
				return err
			}
			ack, _ := frame.AppendControl(nil, &frame.HandshakeAck{ConnID: 1, Zipper: "evil", MaxFrameSize: frame.DefaultMaxSize})
			if _, err := st.Write(ack); err != nil {
				return err
			}
			us, err := tc.OpenUniStream(ctxT(t))
			if err != nil {
				return err
			}
			if _, err := us.Write([]byte{byte(frame.TypeData), 0x40, 0, 0, 0, 0x96}); err != nil {
				return err
			}
			<-tc.Context().Done()
			return nil
		}()
	}()
	var reported errs
	src := yomo.NewSource("victim", addr, trust,
		yomo.WithReconnectBackoff(time.Second, 2*time.Second))
	src.SetObserveDataTags(1)
	src.SetErrorHandler(reported.add)
	defer src.Close()
	growth := heapGrowth(func() {
		if err := src.Connect(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, func() bool {
			return reported.find(func(err error) bool {
				return errors.Is(err, yomo.ErrFrameTooLarge) && strings.Contains(err.Error(), "data frame of 1073741824 bytes exceeds the limit of 4259840")
			})
		}, func() string { return fmt.Sprintf("client did not refuse the oversized frame: %v", reported.String()) })
	})
	if growth > 64<<20 {
		t.Fatalf("heap grew by %d MiB", growth>>20)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
