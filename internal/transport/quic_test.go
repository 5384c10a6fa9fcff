package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func TestQUICListenValidation(t *testing.T) {
	cert, _ := mustCert(t)
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	if _, err := Listen(nil, &tls.Config{Certificates: []tls.Certificate{cert}}, QUICConfig{}); err == nil {
		t.Error("Listen with nil PacketConn succeeded")
	}
	if _, err := Listen(pc, nil, QUICConfig{}); err == nil {
		t.Error("Listen with nil tls.Config succeeded")
	}
	if _, err := Listen(pc, &tls.Config{}, QUICConfig{}); err == nil {
		t.Error("Listen without certificate succeeded")
	}

	// GetCertificate alone is enough; the caller's config is not modified.
	conf := &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
		NextProtos:     []string{"h3"},
	}
	ln, err := Listen(pc, conf, QUICConfig{})
	if err != nil {
		t.Fatal("Listen with GetCertificate:", err)
	}
	if !slices.Equal(conf.NextProtos, []string{"h3"}) || conf.MinVersion != 0 {
		t.Errorf("Listen modified the caller's tls.Config: %v %v", conf.NextProtos, conf.MinVersion)
	}
	ctx := testCtx(t)
	_, pool := mustCert(t)
	client, err := Dial(ctx, ln.Addr().String(), &tls.Config{RootCAs: pool}, QUICConfig{})
	if err != nil {
		t.Fatal("Dial a GetCertificate listener:", err)
	}
	server, err := ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client.CloseWithError(0, "")
	server.CloseWithError(0, "")
	ln.Close()
}

func TestQUICAcceptAfterListenerClose(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	ctx := testCtx(t)
	blocked := async(func() error { _, err := blockListenerAccept(env.ln, ctx); return err })
	waitBlocked(t, "blockListenerAccept")
	if err := env.ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, blocked, "blocked Accept"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked Accept after Close: %v; want net.ErrClosed", err)
	}
	if _, err := env.ln.Accept(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v; want net.ErrClosed", err)
	}
	if err := env.ln.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Closing the listener leaves accepted connections alone and does not close
// the caller's PacketConn, which can serve a new listener afterwards and,
// once that is gone too, plain datagrams.
func TestQUICListenerCloseKeepsConnsAndPacketConn(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	c, s := env.connect(t, QUICConfig{})
	if err := env.ln.Close(); err != nil {
		t.Fatal(err)
	}
	cs, ss := openPair(t, c, s)
	mustWrite(t, cs, "after listener close")
	mustRead(t, ss, "after listener close")
	mustWrite(t, ss, "still fine")
	mustRead(t, cs, "still fine")
	c.CloseWithError(0, "")
	s.CloseWithError(0, "")

	// The same PacketConn serves a new listener.
	cert, _ := mustCert(t)
	ln2, err := Listen(env.pc, &tls.Config{Certificates: []tls.Certificate{cert}}, QUICConfig{})
	if err != nil {
		t.Fatal("second Listen on the same PacketConn:", err)
	}
	env2 := &quicEnv{pc: env.pc, ln: ln2, pool: env.pool}
	c2, s2 := env2.connect(t, QUICConfig{})
	cs2, ss2 := openPair(t, c2, s2)
	mustWrite(t, cs2, "second listener")
	mustRead(t, ss2, "second listener")
	c2.CloseWithError(0, "")
	s2.CloseWithError(0, "")
	ln2.Close()

	// No QUIC left on it: plain datagrams flow both ways, and the read
	// deadline quic-go used to stop reading was cleared.
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.WriteTo([]byte("raw"), env.pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	env.pc.SetReadDeadline(time.Now().Add(waitTimeout))
	var from net.Addr
	for {
		// Late QUIC packets of the closed connections may come first.
		var n int
		n, from, err = env.pc.ReadFrom(buf)
		if err != nil {
			t.Fatal("PacketConn.ReadFrom after the listeners closed:", err)
		}
		if string(buf[:n]) == "raw" {
			break
		}
	}
	if _, err := env.pc.WriteTo([]byte("back"), from); err != nil {
		t.Fatal("PacketConn.WriteTo after the listeners closed:", err)
	}
	peer.SetReadDeadline(time.Now().Add(waitTimeout))
	if n, _, err := peer.ReadFrom(buf); err != nil || string(buf[:n]) != "back" {
		t.Fatalf("reply: %q, %v", buf[:n], err)
	}
}

func TestQUICServerVerifiedByDefault(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	ctx := testCtx(t)
	_, otherPool, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	for name, conf := range map[string]*tls.Config{
		"nil config (system roots)": nil,
		"empty config":              {},
		"other root":                {RootCAs: otherPool},
		"wrong server name":         {RootCAs: env.pool, ServerName: "example.com"},
	} {
		c, err := Dial(ctx, env.addr(), conf, QUICConfig{})
		if err == nil {
			c.CloseWithError(0, "")
			t.Errorf("%s: Dial succeeded against an unverifiable server", name)
			continue
		}
		if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: unexpected error %v", name, err)
		}
	}

	// Verification is off only when asked for. (Accept before closing: the
	// server completes the handshake after the client, so a client closing
	// at once may never be accepted.)
	c, err := Dial(ctx, env.addr(), &tls.Config{InsecureSkipVerify: true}, QUICConfig{})
	if err != nil {
		t.Fatal("Dial with InsecureSkipVerify:", err)
	}
	defer c.CloseWithError(0, "")
	s, err := env.ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.CloseWithError(0, "")
}

func TestQUICALPNMismatch(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	ctx := testCtx(t)
	c, err := dial(ctx, env.addr(), &tls.Config{RootCAs: env.pool}, QUICConfig{}, "other/1")
	if err == nil {
		c.CloseWithError(0, "")
		t.Fatal("Dial with another ALPN succeeded")
	}
	if !strings.Contains(err.Error(), "application protocol") {
		t.Fatalf("unexpected error: %v", err)
	}
	// Our own ALPN still works.
	env.connect(t, QUICConfig{})
}

func TestQUICDialDoesNotMutateTLSConfig(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	conf := &tls.Config{RootCAs: env.pool, NextProtos: []string{"h3"}}
	acc := async(func() result[Conn] { c, err := env.ln.Accept(testCtx(t)); return result[Conn]{c, err} })
	c, err := Dial(testCtx(t), env.addr(), conf, QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	r := await(t, acc, "Accept")
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.v.CloseWithError(0, "")
	if !slices.Equal(conf.NextProtos, []string{"h3"}) || conf.ServerName != "" || conf.MinVersion != 0 {
		t.Fatalf("Dial modified the caller's tls.Config: NextProtos %v ServerName %q MinVersion %v",
			conf.NextProtos, conf.ServerName, conf.MinVersion)
	}
}

func TestQUICPeerCertificates(t *testing.T) {
	serverCert, serverPool := mustCert(t)
	clientCert, clientPool, err := SelfSigned("client.test")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ln, err := Listen(pc, &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientPool,
	}, QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := &quicEnv{pc: pc, ln: ln, pool: serverPool}

	ctx := testCtx(t)
	acc := async(func() result[Conn] { c, err := ln.Accept(ctx); return result[Conn]{c, err} })
	c, err := Dial(ctx, env.addr(), &tls.Config{RootCAs: serverPool, Certificates: []tls.Certificate{clientCert}}, QUICConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseWithError(0, "")
	r := await(t, acc, "Accept")
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.v
	defer s.CloseWithError(0, "")

	if pcs := c.PeerCertificates(); len(pcs) == 0 || !pcs[0].Equal(serverCert.Leaf) {
		t.Errorf("client's PeerCertificates = %v; want the server certificate", pcs)
	}
	if pcs := s.PeerCertificates(); len(pcs) == 0 || !pcs[0].Equal(clientCert.Leaf) {
		t.Errorf("server's PeerCertificates = %v; want the client certificate", pcs)
	}
	if c.RemoteAddr().String() != env.addr() {
		t.Errorf("client RemoteAddr %v; want %v", c.RemoteAddr(), env.addr())
	}

	// Without client certificate, the server sees none.
	c2, s2 := newQUICEnv(t, QUICConfig{}).connect(t, QUICConfig{})
	if pcs := s2.PeerCertificates(); pcs != nil {
		t.Errorf("PeerCertificates without client certificate = %v", pcs)
	}
	if pcs := c2.PeerCertificates(); len(pcs) == 0 {
		t.Error("client sees no server certificate")
	}
}

// portInUse reports whether the UDP port of addr is bound.
func portInUse(addr net.Addr) bool {
	port := addr.(*net.UDPAddr).Port
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return true
	}
	pc.Close()
	return false
}

func TestQUICDialReleasesSocket(t *testing.T) {
	noDialSockets(t) // so that the connection below has its socket to itself
	env := newQUICEnv(t, QUICConfig{})

	// Closed locally: released when CloseWithError returns.
	c, _ := env.connect(t, QUICConfig{})
	if !portInUse(c.LocalAddr()) {
		t.Fatalf("the port of a live connection (%v) is free; the test cannot work", c.LocalAddr())
	}
	c.CloseWithError(0, "")
	if portInUse(c.LocalAddr()) {
		t.Fatal("the UDP socket is still open after CloseWithError")
	}

	// Closed by the peer: released soon after.
	c, s := env.connect(t, QUICConfig{})
	s.CloseWithError(5, "go away")
	waitDone(t, c.Context(), "client Context")
	poll(t, "the socket of a connection closed by the peer to be released", func() bool {
		return !portInUse(c.LocalAddr())
	})
}

func TestQUICIdleTimeout(t *testing.T) {
	env := newQUICEnv(t, QUICConfig{})
	// The client neither sends keep-alives nor tolerates silence; the server
	// pings only every few seconds.
	c, s := env.connect(t, QUICConfig{IdleTimeout: 500 * time.Millisecond, KeepAlivePeriod: -1})
	cs, _ := openPair(t, c, s)
	_, err := cs.Read(make([]byte, 8))
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after idle timeout: %v; want net.ErrClosed", err)
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		t.Fatalf("idle timeout reported as %v", ce)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("idle timeout reported as a deadline")
	}
	if !strings.Contains(err.Error(), "no recent network activity") {
		t.Fatalf("idle timeout lost quic-go's message: %v", err)
	}
	waitDone(t, c.Context(), "client Context")
	if _, err := c.OpenStream(testCtx(t)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("OpenStream after idle timeout: %v", err)
	}
}

func TestQUICHandshakeTimeout(t *testing.T) {
	// A UDP socket that never answers.
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	_, pool := mustCert(t)
	start := time.Now()
	c, err := Dial(context.Background(), silent.LocalAddr().String(), &tls.Config{RootCAs: pool},
		QUICConfig{HandshakeTimeout: 200 * time.Millisecond})
	if err == nil {
		c.CloseWithError(0, "")
		t.Fatal("Dial to a silent address succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Dial took %v despite a 200ms handshake timeout", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("unexpected error: %v", err)
	}

	// The caller's context is honoured too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := Dial(ctx, silent.LocalAddr().String(), &tls.Config{RootCAs: pool}, QUICConfig{}); err == nil {
		c.CloseWithError(0, "")
		t.Fatal("Dial with a cancelled context succeeded")
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial with a cancelled context: %v", err)
	}
}

func TestQUICConfigDefaults(t *testing.T) {
	q := QUICConfig{}.quicConfig()
	if q.HandshakeIdleTimeout != 5*time.Second || q.MaxIdleTimeout != 15*time.Second ||
		q.KeepAlivePeriod != 5*time.Second ||
		q.InitialStreamReceiveWindow != 2<<20 || q.MaxStreamReceiveWindow != 16<<20 ||
		q.InitialConnectionReceiveWindow != 4<<20 || q.MaxConnectionReceiveWindow != 32<<20 ||
		q.MaxIncomingStreams != 100 || q.MaxIncomingUniStreams != 100 {
		t.Errorf("defaults: %+v", q)
	}
	q = QUICConfig{
		HandshakeTimeout: time.Second, IdleTimeout: time.Minute, KeepAlivePeriod: -1,
		StreamReceiveWindow: 1 << 20, ConnectionReceiveWindow: 8 << 20,
		MaxIncomingStreams: 7, MaxIncomingUniStreams: -1,
	}.quicConfig()
	if q.HandshakeIdleTimeout != time.Second || q.MaxIdleTimeout != time.Minute || q.KeepAlivePeriod != 0 ||
		q.InitialStreamReceiveWindow != 1<<20 || q.MaxStreamReceiveWindow != 1<<20 ||
		q.InitialConnectionReceiveWindow != 4<<20 || q.MaxConnectionReceiveWindow != 8<<20 ||
		q.MaxIncomingStreams != 7 || q.MaxIncomingUniStreams != -1 {
		t.Errorf("overrides: %+v", q)
	}
}

func TestSelfSigned(t *testing.T) {
	cert, pool, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if !leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign == 0 || leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("IsCA %v KeyUsage %v", leaf.IsCA, leaf.KeyUsage)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage %v", leaf.ExtKeyUsage)
	}
	if time.Until(leaf.NotBefore) > -59*time.Minute || time.Until(leaf.NotAfter) < 360*24*time.Hour {
		t.Errorf("validity %v .. %v", leaf.NotBefore, leaf.NotAfter)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool}); err != nil {
			t.Errorf("default certificate does not verify for %s: %v", host, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: pool}); err == nil {
		t.Error("default certificate verifies for example.com")
	}

	cert, pool, err = SelfSigned("zipper.internal", "10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cert.Leaf.DNSNames, []string{"zipper.internal"}) || len(cert.Leaf.IPAddresses) != 1 ||
		!cert.Leaf.IPAddresses[0].Equal(net.ParseIP("10.1.2.3")) {
		t.Errorf("SANs: %v %v", cert.Leaf.DNSNames, cert.Leaf.IPAddresses)
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: "zipper.internal", Roots: pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client auth verification: %v", err)
	}
}

// RTT reports the connection's smoothed round trip once the handshake has
// measured one; the in-memory transport has none.
func TestRTT(t *testing.T) {
	c, s := newQUICEnv(t, QUICConfig{}).connect(t, QUICConfig{})
	for _, conn := range []Conn{c, s} {
		if rtt := conn.RTT(); rtt <= 0 || rtt > 5*time.Second {
			t.Errorf("QUIC RTT after the handshake = %v, want a positive round trip", rtt)
		}
	}
	mc, ms := Pipe("rtt")
	defer mc.CloseWithError(0, "")
	if mc.RTT() != 0 || ms.RTT() != 0 {
		t.Errorf("in-memory RTT = %v / %v, want 0", mc.RTT(), ms.RTT())
	}
}

// A Listener takes connections from quic-go's accept queue on its own and
// holds up to AcceptBacklog of them; one more is closed with
// AcceptBacklogCode and a reason, not refused by quic-go, and those held
// are still returned by Accept.
func TestQUICAcceptBacklog(t *testing.T) {
	e := newQUICEnv(t, QUICConfig{AcceptBacklog: 2, AcceptBacklogCode: 7})
	ctx := testCtx(t)
	tlsConf := &tls.Config{RootCAs: e.pool}
	var held []Conn
	for range 2 {
		c, err := Dial(ctx, e.addr(), tlsConf, QUICConfig{})
		if err != nil {
			t.Fatal("Dial:", err)
		}
		t.Cleanup(func() { c.CloseWithError(0, "") })
		held = append(held, c)
	}
	// The first two fill the backlog once the pumps took them; until then
	// the third could take a place, so wait for them.
	poll(t, "the backlog to fill", func() bool { return len(e.ln.(*quicListener).queue) == 2 })
	over, err := Dial(ctx, e.addr(), tlsConf, QUICConfig{})
	if err != nil {
		t.Fatal("Dial beyond the backlog:", err) // the QUIC handshake itself completes
	}
	t.Cleanup(func() { over.CloseWithError(0, "") })
	_, err = over.AcceptStream(ctx)
	var ce *CloseError
	if !errors.As(err, &ce) || ce.Code != 7 || !ce.Remote || !strings.Contains(ce.Reason, "2 connections already wait to be accepted") {
		t.Fatalf("connection beyond the backlog: %v; want a *CloseError with code 7 from the peer", err)
	}
	for range held {
		s, err := e.ln.Accept(ctx)
		if err != nil {
			t.Fatal("Accept:", err)
		}
		t.Cleanup(func() { s.CloseWithError(0, "") })
	}
}

// A refusal by the server during the handshake matches ErrRefused and
// net.ErrClosed.
func TestQUICRefusedMatches(t *testing.T) {
	err := mapErr(&quic.TransportError{ErrorCode: quic.ConnectionRefused, Remote: true})
	if !errors.Is(err, ErrRefused) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("%v (%T) does not match ErrRefused and net.ErrClosed", err, err)
	}
	err = mapErr(&quic.TransportError{ErrorCode: quic.ProtocolViolation, Remote: true})
	if errors.Is(err, ErrRefused) {
		t.Fatalf("%v matches ErrRefused", err)
	}
}

// Dialed connections share their UDP sockets, up to maxConnsPerDialSocket
// on one: a socket outlives the connections on it but the last, and
// closing one connection, or a dial to an address where nothing listens
// failing, leaves the others on its socket working.
func TestQUICDialSharesSockets(t *testing.T) {
	defer func(n int) { maxConnsPerDialSocket = n }(maxConnsPerDialSocket)
	maxConnsPerDialSocket = 2
	noDialSockets(t)
	env := newQUICEnv(t, QUICConfig{})
	c1, _ := env.connect(t, QUICConfig{})
	c2, s2 := env.connect(t, QUICConfig{})
	c3, s3 := env.connect(t, QUICConfig{})
	shared := c1.LocalAddr().String()
	if c2.LocalAddr().String() != shared || c3.LocalAddr().String() == shared {
		t.Fatalf("local addresses %v, %v, %v: want the first two shared, the third apart", c1.LocalAddr(), c2.LocalAddr(), c3.LocalAddr())
	}
	if s, n := openDialSockets(); s != 2 || n != 3 {
		t.Fatalf("%d dialing sockets counting %d connections, want 2 and 3", s, n)
	}

	// A dial to a port where nothing listens (ICMP port unreachable
	// comes back) takes the room on c3's socket, and fails alone.
	dead := mustDeadAddr(t)
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	if _, err := Dial(ctx, dead, &tls.Config{RootCAs: env.pool}, QUICConfig{}); err == nil {
		t.Fatalf("Dial(%s) where nothing listens succeeded", dead)
	}
	cancel()
	stillWorks(t, c3, s3)

	c1.CloseWithError(0, "")
	if !portInUse(c1.LocalAddr()) {
		t.Fatal("the socket was closed with the first of its two connections")
	}
	stillWorks(t, c2, s2) // the other connection on it goes on

	c2.CloseWithError(0, "")
	if portInUse(c2.LocalAddr()) {
		t.Fatal("the shared socket is still open after its last connection closed")
	}
	if s, n := openDialSockets(); s != 1 || n != 1 {
		t.Fatalf("%d dialing sockets counting %d connections, want 1 and 1", s, n)
	}
	c3.CloseWithError(0, "")
	if s, n := openDialSockets(); s != 0 || n != 0 {
		t.Fatalf("%d dialing sockets counting %d connections after the last closed, want none", s, n)
	}
}

// mustDeadAddr returns a 127.0.0.1 UDP address where nothing listens.
func mustDeadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// stillWorks opens a stream from client to server and checks that what
// it writes arrives.
func stillWorks(t *testing.T, client, server Conn) {
	t.Helper()
	ctx := testCtx(t)
	acc := async(func() result[Stream] { st, err := server.AcceptStream(ctx); return result[Stream]{st, err} })
	st, err := client.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	r := await(t, acc, "AcceptStream")
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := make([]byte, len("still here"))
	if _, err := io.ReadFull(r.v, got); err != nil || string(got) != "still here" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// noDialSockets waits until no dialing socket is open: connections of
// earlier tests that their peer closed are released shortly after
// (context.AfterFunc); none may stay.
func noDialSockets(t *testing.T) {
	t.Helper()
	poll(t, "the dialing sockets of earlier tests to be closed", func() bool {
		s, n := openDialSockets()
		return s == 0 && n == 0
	})
}
