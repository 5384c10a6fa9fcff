package yomo_test

// Authentication (tokens, mutual TLS, Authenticator), ACLs and connection
// limits.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
)

// testCA issues certificates for mutual TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

var serial atomic.Int64

// issue returns a certificate for cn (empty: none), valid for server and
// client authentication, with hosts as SANs.
func (ca *testCA) issue(t testing.TB, cn string, hosts ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1000 + serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// mtlsZipper serves a zipper presenting a certificate from ca and
// verifying client certificates with auth.
func mtlsZipper(t *testing.T, ca *testCA, auth tls.ClientAuthType, opts ...yomo.ZipperOption) *testZipper {
	t.Helper()
	conf := &tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "zipper", "127.0.0.1")},
		ClientCAs:    ca.pool,
		ClientAuth:   auth,
	}
	tz := startZipper(t, "", append([]yomo.ZipperOption{yomo.WithTLSConfig(conf)}, opts...)...)
	tz.clients = nil
	return tz
}

// clientTLS returns client options trusting ca and presenting cert (when
// not nil), even when the zipper asks for certificates of other CAs.
func clientTLS(ca *testCA, cert *tls.Certificate) []yomo.ClientOption {
	c := &tls.Config{RootCAs: ca.pool}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return []yomo.ClientOption{yomo.WithTLSConfig(c)}
}

// connInfos records the ConnInfo of accepted clients.
type connInfos struct {
	mu    sync.Mutex
	infos []yomo.ConnInfo
}

func (c *connInfos) hooks() yomo.Hooks {
	return yomo.Hooks{OnConnect: func(info yomo.ConnInfo) error {
		c.mu.Lock()
		c.infos = append(c.infos, info)
		c.mu.Unlock()
		return nil
	}}
}

func (c *connInfos) identity(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, i := range c.infos {
		if i.Name == name {
			return i.Identity, true
		}
	}
	return "", false
}

func TestMTLSVerifiedIdentity(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test ca")
	var seen connInfos
	tz := mtlsZipper(t, ca, tls.RequireAndVerifyClientCert, yomo.WithHooks(seen.hooks()))
	alice, bob := ca.issue(t, "alice"), ca.issue(t, "", "bob.example") // bob: no CN, a DNS SAN
	p := startPipeline(t, tz, clientTLS(ca, &alice))
	if id, _ := seen.identity("pipeline-src"); id != "alice" {
		t.Fatalf("identity of a client with certificate CN=alice = %q", id)
	}
	connectSource(t, tz, "bob-src", clientTLS(ca, &bob))
	if id, _ := seen.identity("bob-src"); id != "bob.example" {
		t.Fatalf("identity of a client with only a SAN = %q, want bob.example", id)
	}

	other := newTestCA(t, "other ca")
	mallory := other.issue(t, "alice")
	p.during(t, func() {
		for _, c := range []struct {
			name string
			opts []yomo.ClientOption
			want string
		}{
			{"no client certificate", clientTLS(ca, nil), "certificate required"},
			{"certificate from another CA", clientTLS(ca, &mallory), "unknown certificate authority"},
		} {
			s := yomo.NewSource("intruder", tz.addr, c.opts...)
			err := s.Connect(ctxT(t))
			s.Close()
			var rej *yomo.RejectedError
			if err == nil || errors.As(err, &rej) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s: %v, want a TLS failure (%s)", c.name, err, c.want)
			}
			t.Logf("%s: %v", c.name, err)
		}
	})
	if st := tz.Stats().Connections; st.Rejected != 0 || st.Accepted != 3 {
		t.Fatalf("stats %+v: TLS should refuse before the zipper handshake", st)
	}
}

// A TLS configuration that asks for client certificates without verifying
// them is made to verify them.
func TestMTLSUnverifiedModesAreUpgraded(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test ca")
	other := newTestCA(t, "other ca")
	self := other.issue(t, "mallory")
	good := ca.issue(t, "alice")
	for _, mode := range []tls.ClientAuthType{tls.RequireAnyClientCert, tls.RequestClientCert} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			var seen connInfos
			tz := mtlsZipper(t, ca, mode, yomo.WithHooks(seen.hooks()))
			s := yomo.NewSource("mallory", tz.addr, clientTLS(ca, &self)...)
			err := s.Connect(ctxT(t))
			s.Close()
			if err == nil || !strings.Contains(err.Error(), "unknown certificate authority") {
				t.Fatalf("unverifiable client certificate: %v, want a TLS failure", err)
			}
			connectSource(t, tz, "alice", clientTLS(ca, &good))
			if id, _ := seen.identity("alice"); id != "alice" {
				t.Fatalf("identity %q", id)
			}
			s = newSource(t, tz, "anonymous", clientTLS(ca, nil))
			err = s.Connect(ctxT(t))
			if mode == tls.RequestClientCert {
				if err != nil {
					t.Fatalf("no certificate with %v: %v", mode, err)
				}
				if id, _ := seen.identity("anonymous"); id != "" {
					t.Fatalf("identity of a client without certificate %q", id)
				}
			} else if err == nil || !strings.Contains(err.Error(), "certificate required") {
				t.Fatalf("no certificate with %v: %v", mode, err)
			}
		})
	}
}

// aclAuth authenticates "id:<name>" credentials against acls.
func aclAuth(acls map[string]*yomo.ACL, reqs chan<- *yomo.AuthRequest) yomo.Authenticator {
	return yomo.AuthenticatorFunc(func(ctx context.Context, r *yomo.AuthRequest) (*yomo.Identity, error) {
		if reqs != nil {
			select {
			case reqs <- r:
			default:
			}
		}
		name, ok := strings.CutPrefix(r.Credential, "id:")
		if !ok {
			if name = r.CertificateName(); name == "" {
				return nil, errors.New("unknown credential form")
			}
		}
		acl, ok := acls[name]
		if !ok {
			return nil, fmt.Errorf("unknown identity %q", name)
		}
		return &yomo.Identity{Name: name, ACL: acl}, nil
	})
}

func TestMTLSAuthenticatorSeesCertificate(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test ca")
	reqs := make(chan *yomo.AuthRequest, 16)
	acls := map[string]*yomo.ACL{"alice": nil, "sensor": {Write: []yomo.Tag{pipelineTag}, Observe: []yomo.Tag{}}}
	var seen connInfos
	tz := mtlsZipper(t, ca, tls.RequireAndVerifyClientCert, yomo.WithAuthenticator(aclAuth(acls, reqs)), yomo.WithHooks(seen.hooks()))
	alice, sensor, mallory := ca.issue(t, "alice"), ca.issue(t, "sensor"), ca.issue(t, "mallory")
	startPipeline(t, tz, clientTLS(ca, &alice))
	r := <-reqs
	if r.Kind != "function" || r.Name != "pipeline-sink" || r.CertificateName() != "alice" || len(r.PeerCertificates) != 1 ||
		r.Credential != "" || len(r.ObserveTags) != 1 || r.ObserveTags[0] != pipelineTag || !strings.HasPrefix(r.RemoteAddr.String(), "127.0.0.1:") {
		t.Fatalf("authenticator saw %v", r)
	}
	connectSource(t, tz, "sensor-1", clientTLS(ca, &sensor))
	if id, _ := seen.identity("sensor-1"); id != "sensor" {
		t.Fatalf("identity %q", id)
	}
	s := yomo.NewSource("m", tz.addr, clientTLS(ca, &mallory)...)
	defer s.Close()
	err := s.Connect(ctxT(t))
	var rej *yomo.RejectedError
	if !errors.As(err, &rej) || rej.Code != frame.RejectAuth || rej.Reason != `unknown identity "mallory"` {
		t.Fatalf("unknown certificate identity: %v", err)
	}
}

// TestMTLSMesh links two zippers over mutual TLS: each presents its
// certificate as a client when it dials; the dialed zipper authenticates
// it like any client (Kind "zipper"). A zipper with a certificate from
// another CA cannot link.
func TestMTLSMesh(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "mesh ca")
	reqs := make(chan *yomo.AuthRequest, 16)
	zconf := func(name string, c *testCA) *tls.Config {
		return &tls.Config{
			Certificates: []tls.Certificate{c.issue(t, name, "127.0.0.1")},
			RootCAs:      ca.pool, // verifies the zippers it dials
			ClientCAs:    ca.pool, // verifies clients and zippers dialing in
			ClientAuth:   tls.RequireAndVerifyClientCert,
		}
	}
	serve := func(name string, conf *tls.Config, opts ...yomo.ZipperOption) (*yomo.Zipper, string) {
		z, err := yomo.NewZipper(name, append([]yomo.ZipperOption{yomo.WithTLSConfig(conf)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		pc := mustPacketConn(t)
		done := make(chan error, 1)
		go func() { done <- z.Serve(context.Background(), pc) }() // owned by the test: ends on Close
		t.Cleanup(func() {
			z.Close()
			<-done
		})
		return z, pc.LocalAddr().String()
	}
	acls := map[string]*yomo.ACL{"zipper-a": nil, "app": nil}
	zb, addrB := serve("zipper-b", zconf("zipper-b", ca), yomo.WithAuthenticator(aclAuth(acls, reqs)))
	za, addrA := serve("zipper-a", zconf("zipper-a", ca), yomo.WithMesh(mesh.Peer{Name: "zipper-b", Addr: addrB}))
	eventually(t, 10*time.Second, func() bool {
		l := zb.Stats().Links
		return len(l) == 1 && l[0].State == "up" && l[0].Peer == "zipper-a"
	}, func() string { return fmt.Sprintf("link not up: %+v", zb.Stats().Links) })
	r := <-reqs
	if r.Kind != "zipper" || r.Name != "zipper-a" || r.CertificateName() != "zipper-a" {
		t.Fatalf("zipper-b authenticated the link as %v", r)
	}
	app := ca.issue(t, "app")
	var got atomic.Int64
	fb := yomo.NewStreamFunction("far", addrB, clientTLS(ca, &app)...)
	fb.SetObserveDataTags(5)
	fb.SetHandler(func(yomo.Context) { got.Add(1) })
	defer fb.Close()
	if err := fb.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	src := yomo.NewSource("near", addrA, clientTLS(ca, &app)...)
	defer src.Close()
	if err := src.Connect(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		src.Write(5, []byte("across"))
		return got.Load() > 0
	}, func() string { return "nothing crossed the mTLS link" })

	// A zipper whose certificate another CA issued cannot link to B.
	rogueCA := newTestCA(t, "rogue ca")
	var logs syncBuffer
	zr, _ := serve("zipper-r", zconf("zipper-r", rogueCA), yomo.WithMesh(mesh.Peer{Name: "zipper-b", Addr: addrB}),
		yomo.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	// Its certificate is not from a CA zipper-b accepts, so TLS does not
	// even send it: "certificate required".
	eventually(t, 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "mesh dial failed") && strings.Contains(logs.String(), "certificate required")
	}, func() string { return "the rogue zipper's dials did not fail on its certificate: " + logs.String() })
	// The configured peer is listed, never up, with the reason.
	if l := zr.Stats().Links; len(l) != 1 || l[0].Peer != "zipper-b" || l[0].State != "connecting" ||
		!strings.Contains(l[0].LastError, "certificate required") {
		t.Fatalf("rogue zipper's links: %+v; want zipper-b, connecting, with the certificate error", l)
	}
	if l := zb.Stats().Links; len(l) != 1 || l[0].Peer != "zipper-a" {
		t.Fatalf("zipper-b links: %+v", l)
	}
	_ = za
}

func TestTokenIdentity(t *testing.T) {
	t.Parallel()
	run(t, func(t *testing.T, tr transportKind) {
		var seen connInfos
		tz := newZipper(t, tr, yomo.WithAuthToken("first", "second"), yomo.WithHooks(seen.hooks()))
		connectSource(t, tz, "src-"+tr.String(), append(tz.clients, yomo.WithCredential("token:second")))
		if id, _ := seen.identity("src-" + tr.String()); id != "token#2" {
			t.Fatalf("%s: identity %q, want token#2", tr, id)
		}
	})
}

func TestAuthenticatorOutcomes(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	auth := yomo.AuthenticatorFunc(func(ctx context.Context, r *yomo.AuthRequest) (*yomo.Identity, error) {
		calls.Add(1)
		switch r.Credential {
		case "ok":
			return &yomo.Identity{Name: "svc-" + r.Name}, nil
		case "denied":
			return nil, &yomo.RejectedError{Code: frame.RejectDenied, Reason: "account suspended"}
		case "nil":
			return nil, nil
		case "panic":
			panic("authenticator bug")
		case "slow":
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, errors.New("no such account")
	})
	var seen connInfos
	tz := startZipper(t, "", yomo.WithAuthenticator(auth), yomo.WithAuthToken("tok"), yomo.WithHandshakeTimeout(time.Second), yomo.WithHooks(seen.hooks()))
	cases := []struct {
		cred string
		code int
		want string
	}{
		{"token:tok", frame.RejectAuth, "no such account"}, // the token passes, the authenticator still decides
		{"token:bad", frame.RejectAuth, "authentication failed"},
	}
	for _, c := range cases {
		s := yomo.NewSource("s", tz.addr, append(tz.clients, yomo.WithCredential(c.cred))...)
		err := s.Connect(ctxT(t))
		s.Close()
		var rej *yomo.RejectedError
		if !errors.As(err, &rej) || rej.Code != c.code || rej.Reason != c.want {
			t.Fatalf("credential %q: %v, want code %d %q", c.cred, err, c.code, c.want)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("authenticator called %d times; a bad token must be refused before it", calls.Load())
	}

	// Without the token requirement.
	run(t, func(t *testing.T, tr transportKind) {
		tz := newZipper(t, tr, yomo.WithAuthenticator(auth), yomo.WithHandshakeTimeout(500*time.Millisecond), yomo.WithHooks(seen.hooks()))
		for _, c := range []struct {
			cred string
			code int
			want string
		}{
			{"denied", frame.RejectDenied, "account suspended"},
			{"nil", frame.RejectAuth, "authentication failed"},
			{"panic", frame.RejectAuth, "authentication failed"},
			{"other", frame.RejectAuth, "no such account"},
			{"slow", frame.RejectAuth, "context deadline exceeded"},
		} {
			s := yomo.NewSource("s", tz.addr, append(tz.clients, yomo.WithCredential(c.cred))...)
			err := s.Connect(ctxT(t))
			s.Close()
			var rej *yomo.RejectedError
			if !errors.As(err, &rej) || rej.Code != c.code || rej.Reason != c.want {
				t.Fatalf("%s, credential %q: %v, want code %d %q", tr, c.cred, err, c.code, c.want)
			}
		}
		connectSource(t, tz, "good-"+tr.String(), append(tz.clients, yomo.WithCredential("ok")))
		if id, _ := seen.identity("good-" + tr.String()); id != "svc-good-"+tr.String() {
			t.Fatalf("identity %q", id)
		}
		// Per transport: 4 of the 5 refusals for authentication, 1 denied.
		st := tz.Stats().Connections
		if st.RejectedBy["auth"] != 4 || st.RejectedBy["denied"] != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestAuthRequestHidesCredential(t *testing.T) {
	t.Parallel()
	r := &yomo.AuthRequest{Kind: "source", Name: "n", Credential: "token:hunter2", RemoteAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "req", r)
	for _, s := range []string{fmt.Sprint(r), fmt.Sprintf("%v %+v %#v %s", r, r, r, r), b.String()} {
		if strings.Contains(s, "hunter2") {
			t.Fatalf("credential printed: %s", s)
		}
		if !strings.Contains(s, "REDACTED") || !strings.Contains(s, "192.0.2.1:9") {
			t.Fatalf("unexpected rendering: %s", s)
		}
	}
}

// TestACL: an identity's ACL limits the tags it writes and observes and the
// function names it registers. Violations are rejected with a clear
// reason, counted, final, and affect nobody else.
func TestACL(t *testing.T) {
	t.Parallel()
	acls := map[string]*yomo.ACL{
		"pipeline": nil,
		"sensor":   {Write: []yomo.Tag{1, 2}, Observe: []yomo.Tag{}},
		"app":      {Write: []yomo.Tag{1}, Observe: []yomo.Tag{10, 11}, Functions: []string{"upper"}},
		"mute":     {Write: []yomo.Tag{}},
		"zipper":   {Write: []yomo.Tag{1}},
	}
	run(t, func(t *testing.T, tr transportKind) {
		var seen connInfos
		tz := newZipper(t, tr, yomo.WithAuthenticator(aclAuth(acls, nil)), yomo.WithHooks(seen.hooks()))
		opts := func(id string) []yomo.ClientOption { return append(tz.clients, yomo.WithCredential("id:"+id)) }
		p := startPipeline(t, tz, opts("pipeline"))
		var forbidden atomic.Int64 // frames of tag 3 anyone received
		connectFn(t, tz, "tag3", opts("pipeline"), []yomo.Tag{3}, func(yomo.Context) { forbidden.Add(1) })
		var allowed atomic.Int64
		connectFn(t, tz, "tag1", opts("pipeline"), []yomo.Tag{1}, func(yomo.Context) { allowed.Add(1) })

		p.during(t, func() {
			// Handshake-time violations: rejected, final, with the reason.
			reject := func(what string, err error, want string) {
				t.Helper()
				var rej *yomo.RejectedError
				if !errors.As(err, &rej) || rej.Code != frame.RejectDenied || rej.Reason != want {
					t.Fatalf("%s: %v, want RejectedError(denied, %q)", what, err, want)
				}
			}
			f := newFn(t, tz, "upper", opts("app"), []yomo.Tag{10, 12}, func(yomo.Context) {})
			reject("observe a forbidden tag", f.Connect(ctxT(t)), `identity "app" may not observe tag 12`)
			f = newFn(t, tz, "evil", opts("app"), []yomo.Tag{10}, func(yomo.Context) {})
			reject("register a forbidden function", f.Connect(ctxT(t)), `identity "app" may not register function "evil"`)
			s := newSource(t, tz, "sensor-backflow", opts("sensor"), 10)
			reject("a source observing backflow it may not", s.Connect(ctxT(t)), `identity "sensor" may not observe tag 10`)
			s = newSource(t, tz, "zip", opts("zipper"))
			yomo.ConnectAsZipperForTest(s)
			err := s.Connect(ctxT(t))
			if rej, ok := errors.AsType[*yomo.RejectedError](err); !ok || rej.Code != frame.RejectDenied || !strings.Contains(rej.Reason, "a mesh link cannot be restricted") {
				t.Fatalf("mesh link with an ACL: %v", err)
			}
			connectFn(t, tz, "upper", opts("app"), []yomo.Tag{10, 11}, func(yomo.Context) {})

			// Write violation: the frame is dropped, the connection
			// closed with a final rejection naming the tag.
			var reported errs
			s = newSource(t, tz, "sensor-1", opts("sensor"))
			s.SetErrorHandler(reported.add)
			if err := s.Connect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if id, _ := seen.identity("sensor-1"); id != "sensor" {
				t.Fatalf("identity %q", id)
			}
			before := allowed.Load()
			for i := 0; i < 10; i++ {
				if err := s.Write(1, []byte("ok")); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, 5*time.Second, func() bool { return allowed.Load() == before+10 }, func() string { return "allowed writes" })
			accepted := tz.Stats().Connections.Accepted
			s.Write(3, []byte("forbidden")) // asynchronous: accepted locally
			const want = `identity "sensor" may not write tag 3`
			eventually(t, 5*time.Second, func() bool {
				return reported.find(func(err error) bool {
					rej, ok := errors.AsType[*yomo.RejectedError](err)
					return ok && rej.Code == frame.RejectDenied && rej.Reason == want
				})
			}, func() string { return fmt.Sprintf("the writer was not told: %v", reported.String()) })
			err = s.Write(1, []byte("after"))
			if rej, ok := errors.AsType[*yomo.RejectedError](err); !ok || rej.Reason != want {
				t.Fatalf("write after the violation = %v, want the final rejection", err)
			}
			// An identity that may write nothing.
			m := connectSource(t, tz, "mute", opts("mute"))
			m.Write(1, []byte("x"))
			eventually(t, 5*time.Second, func() bool { return tz.Stats().Denied == 6 }, func() string { return fmt.Sprintf("denied = %d", tz.Stats().Denied) })
			// A reconnect would show up within this window: not a wait for a
			// condition but the time during which nothing may happen. In
			// memory (simulated time) it covers the longest reconnect backoff.
			quiet := 100 * time.Millisecond
			if tr == memTransport {
				quiet = yomo.DefaultReconnectMax
			}
			time.Sleep(quiet)
			if got := tz.Stats().Connections.Accepted; got != accepted+1 {
				t.Fatalf("accepted %d connections after the violation, want 1 (mute): the violator reconnected", got-accepted)
			}
		})
		if forbidden.Load() != 0 {
			t.Fatalf("a forbidden frame was delivered")
		}
		st := tz.Stats()
		if st.Denied != 6 || st.Connections.RejectedBy["denied"] != 4 {
			t.Fatalf("denied %d, rejected %+v; want 6 violations, 4 at the handshake", st.Denied, st.Connections)
		}
	})
}

func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name         string
		total, perIP int
		want         string
	}{
		{"per IP", 0, 3, "too many connections from 127.0.0.1 (limit 3)"},
		{"total", 3, 0, "too many connections (limit 3)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tz, p := pipelineZipper(t, yomo.WithConnectionLimits(c.total, c.perIP)) // 2 connections
			third := connectSource(t, tz, "third", tz.clients)
			p.during(t, func() {
				s := yomo.NewSource("fourth", tz.addr, tz.clients...)
				err := s.Connect(ctxT(t))
				s.Close()
				var ce *transport.CloseError
				if _, rejected := errors.AsType[*yomo.RejectedError](err); rejected || !errors.As(err, &ce) || ce.Code != yomo.CloseLimitForTest || ce.Reason != c.want {
					t.Fatalf("connection over the limit: %v, want a (non-final) close %#x %q", err, yomo.CloseLimitForTest, c.want)
				}
				// In-memory clients do not count.
				connectSource(t, tz, "mem", []yomo.ClientOption{yomo.WithInMemory(tz.Zipper)})
				third.Close()
				eventually(t, 5*time.Second, func() bool {
					s := newSource(t, tz, "fourth", tz.clients)
					return s.Connect(ctxT(t)) == nil
				}, func() string { return "a slot did not free up" })
			})
			if st := tz.Stats().Connections; st.RejectedBy["limit"] == 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestMaxPendingHandshakes: at the limit, the zipper stops accepting
// rather than refusing: a client that arrives while silent peers hold
// every slot waits in the listener's backlog and is served when a slot
// frees (here: when the silent peers time out).
func TestMaxPendingHandshakes(t *testing.T) {
	const timeout = 500 * time.Millisecond
	tz, p := pipelineZipper(t, yomo.WithMaxPendingHandshakes(2), yomo.WithHandshakeTimeout(timeout))
	p.during(t, func() {
		a, b := rawConn(t, tz), rawConn(t, tz)
		eventually(t, 2*time.Second, func() bool { return tz.Stats().Connections.Pending == 2 }, func() string { return fmt.Sprintf("pending %d", tz.Stats().Connections.Pending) })
		start := time.Now()
		connectSource(t, tz, "waits", tz.clients)
		if d := time.Since(start); d < timeout/2 {
			t.Fatalf("connected after %v, while two silent peers held both slots for %v", d, timeout)
		}
		for _, c := range []transport.Conn{a, b} {
			if ce := closeErrorOf(t, c, 5*time.Second); ce.Code != yomo.CloseProtocolForTest {
				t.Fatalf("silent peer closed with %v", ce)
			}
		}
		if st := tz.Stats().Connections; st.RejectedBy["limit"] != 0 {
			t.Fatalf("refused at the limit: %+v", st)
		}
	})
}

func TestMaxObservedTags(t *testing.T) {
	t.Parallel()
	tz := startZipper(t, "", yomo.WithMaxObservedTags(3))
	f := newFn(t, tz, "many", tz.clients, []yomo.Tag{1, 2, 3, 4}, func(yomo.Context) {})
	err := f.Connect(ctxT(t))
	if rej, ok := errors.AsType[*yomo.RejectedError](err); !ok || rej.Code != frame.RejectDenied || rej.Reason != "too many observed tags: 4 (limit 3)" {
		t.Fatalf("4 tags with a limit of 3: %v", err)
	}
	connectFn(t, tz, "few", tz.clients, []yomo.Tag{1, 2, 3}, func(yomo.Context) {})
}

func TestSecurityOptionsValidated(t *testing.T) {
	t.Parallel()
	for _, opt := range []yomo.ZipperOption{
		yomo.WithAuthenticator(nil),
		yomo.WithConnectionLimits(-1, 0),
		yomo.WithConnectionLimits(0, -1),
		yomo.WithMaxPendingHandshakes(-1),
		yomo.WithMaxObservedTags(0),
	} {
		if _, err := yomo.NewZipper("z", opt); err == nil {
			t.Errorf("option accepted: %#v", opt)
		}
	}
	if _, err := yomo.NewZipper("z", yomo.WithConnectionLimits(0, 0), yomo.WithMaxPendingHandshakes(0)); err != nil {
		t.Fatalf("0 (no limit) refused: %v", err)
	}
}
