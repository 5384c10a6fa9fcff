package yomo_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
)

// burstN is how many clients TestConnectBurst connects at once: 2000 in a
// plain build, fewer under the race detector (a handshake costs several
// times more CPU there) or with -short.
func burstN() int {
	switch {
	case testing.Short():
		return 200
	case raceEnabled:
		return 500
	}
	return 2000
}

// TestConnectBurst: a burst of clients dialling a zipper at the same
// instant all connect on their first attempt. quic-go holds at most 32
// connections that completed the QUIC handshake and await Accept and
// refuses more with CONNECTION_REFUSED; the zipper must take them from
// that queue faster than they arrive. Each client dials once, without the
// retry Source.Connect does after a refusal, and sends its handshake
// itself, so that every refusal shows.
func TestConnectBurst(t *testing.T) {
	n := burstN()
	z, err := yomo.NewZipper("burst", yomo.WithLogger(slog.New(slog.DiscardHandler)), yomo.WithConnectionLimits(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- z.Serve(context.Background(), pc) }() // ends when z closes
	defer func() {
		z.Close()
		if err := <-served; !errors.Is(err, yomo.ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	}()
	addr := pc.LocalAddr().String()
	tlsConf := &tls.Config{RootCAs: z.RootCAs()}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		refused, failed atomic.Int64
		mu              sync.Mutex
		firstErr        error
		conns           = make([]transport.Conn, n)
		wg              sync.WaitGroup
		start           = make(chan struct{})
	)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.CloseWithError(0, "")
			}
		}
	}()
	for i := range n {
		wg.Go(func() {
			<-start
			c, err := burstConnect(ctx, addr, tlsConf, i)
			if err != nil {
				if errors.Is(err, transport.ErrRefused) {
					refused.Add(1)
				} else {
					failed.Add(1)
				}
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("client %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			conns[i] = c
		})
	}
	begin := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d clients connected in %v", n, time.Since(begin))
	if refused.Load() > 0 || failed.Load() > 0 {
		t.Fatalf("of %d clients dialling at once, %d were refused (CONNECTION_REFUSED) and %d failed otherwise on their first attempt; first error: %v",
			n, refused.Load(), failed.Load(), firstErr)
	}
	st := z.Stats().Connections
	if st.Sources != n || st.Rejected != 0 {
		t.Fatalf("the zipper counts %d sources and %d rejections (%v), want %d and 0", st.Sources, st.Rejected, st.RejectedBy, n)
	}
}

// burstConnect dials addr once and performs a Source's handshake.
func burstConnect(ctx context.Context, addr string, tlsConf *tls.Config, i int) (transport.Conn, error) {
	// A generous handshake timeout: 2000 handshakes on two busy CPUs can
	// take longer than the default 5 s; only refusals are under test.
	c, err := transport.Dial(ctx, addr, tlsConf, transport.QUICConfig{HandshakeTimeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (transport.Conn, error) {
		c.CloseWithError(0, "")
		return nil, err
	}
	st, err := c.OpenStream(ctx)
	if err != nil {
		return fail(err)
	}
	hs, err := frame.AppendControl(nil, &frame.Handshake{Version: frame.ProtocolVersion, Name: fmt.Sprintf("burst-%05d", i),
		Kind: frame.KindSource, ID: uint64(i) + 1})
	if err != nil {
		return fail(err)
	}
	if _, err := st.Write(hs); err != nil {
		return fail(err)
	}
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, body, err := frame.NewReader(st, frame.MaxControlSize).Next()
	if err != nil {
		return fail(err)
	}
	v, err := frame.DecodeControl(typ, body)
	if err != nil {
		return fail(err)
	}
	if _, ok := v.(*frame.HandshakeAck); !ok {
		return fail(fmt.Errorf("answer to the handshake: %s %+v", typ, v))
	}
	return c, nil
}
