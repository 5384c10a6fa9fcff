package yomo_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/frame"
)

// FuzzHandshake feeds arbitrary bytes, as the control stream of an
// in-memory connection, to a zipper that checks tokens, runs an
// Authenticator with ACLs and limits observed tags. Whatever the input,
// the zipper must not panic, must answer within a bound, must allocate a
// bounded amount, and must either accept a handshake that satisfies every
// rule or refuse with a known code and a reason that echoes no credential.
//
//	go test -run='^$' -fuzz='^FuzzHandshake$' -fuzztime=10s .
func FuzzHandshake(f *testing.F) {
	const token = "fuzz-token-0123456789"
	const maxTags = 8
	auth := yomo.AuthenticatorFunc(func(ctx context.Context, r *yomo.AuthRequest) (*yomo.Identity, error) {
		switch r.Name {
		case "restricted":
			return &yomo.Identity{Name: "r", ACL: &yomo.ACL{Write: []yomo.Tag{1}, Observe: []yomo.Tag{1, 2}, Functions: []string{"restricted"}}}, nil
		case "refused":
			return nil, errors.New("refused by the authenticator")
		}
		return &yomo.Identity{Name: "any"}, nil
	})
	z, err := yomo.NewZipper("fuzz", yomo.WithAuthToken(token), yomo.WithAuthenticator(auth), yomo.WithMaxObservedTags(maxTags),
		yomo.WithHandshakeTimeout(2*time.Second), yomo.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { z.Close() })

	hs := func(h frame.Handshake) []byte {
		if h.Version == 0 {
			h.Version = frame.ProtocolVersion
		}
		b, err := frame.AppendControl(nil, &h)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	cred := "token:" + token
	f.Add(hs(frame.Handshake{Name: "src", Kind: frame.KindSource, ID: 1, Credential: cred}))
	f.Add(hs(frame.Handshake{Name: "fn", Kind: frame.KindFunction, ID: 2, ObserveTags: []yomo.Tag{1, 2}, WantedTarget: "t", Credential: cred}))
	f.Add(hs(frame.Handshake{Name: "restricted", Kind: frame.KindFunction, ID: 3, ObserveTags: []yomo.Tag{1, 3}, Credential: cred}))
	f.Add(hs(frame.Handshake{Name: "restricted", Kind: frame.KindSource, ID: 3, ObserveTags: []yomo.Tag{2}, Credential: cred}))
	f.Add(hs(frame.Handshake{Name: "refused", Kind: frame.KindSource, ID: 4, Credential: cred}))
	f.Add(hs(frame.Handshake{Name: "zip", Kind: frame.KindZipper, ID: 5, Credential: cred}))
	f.Add(hs(frame.Handshake{Name: "src", Kind: frame.KindSource, ID: 6, Credential: "token:wrong-token-0123456789"}))
	f.Add(hs(frame.Handshake{Name: "fn", Kind: frame.KindFunction, ID: 7, ObserveTags: make([]yomo.Tag, maxTags+1), Credential: cred}))
	f.Add(hs(frame.Handshake{Version: 9, Name: "v", Kind: frame.KindSource}))
	f.Add(append(hs(frame.Handshake{Name: "src", Kind: frame.KindSource, ID: 1, Credential: cred}), frame.AppendPing(nil, 1, false)...))
	f.Add([]byte{byte(frame.TypeHandshake), 0x40, 0, 0, 0})
	f.Add([]byte{byte(frame.TypeHandshake), 0, 0, 0, 7, 0x81, 0xa4, 't', 'a', 'g', 's', 0xdd})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, in []byte) {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		ans := runHandshake(t, z, in)
		runtime.ReadMemStats(&m1)
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > uint64(len(in))+8<<20 {
			t.Fatalf("a %d-byte handshake made the process allocate %d KiB", len(in), alloc>>10)
		}

		// What the zipper must have decided, by the rules.
		var want *frame.Handshake
		var hsErr bool
		if ft, body, err := frame.NewReader(strings.NewReader(string(in)), frame.MaxControlSize).Next(); err == nil && ft == frame.TypeHandshake {
			if v, err := frame.DecodeControl(ft, body); err == nil {
				want = v.(*frame.Handshake)
			} else {
				hsErr = true
			}
		}
		if ans.ack {
			switch {
			case want == nil:
				t.Fatalf("accepted %q, which does not start with a valid handshake (decode error: %v)", in, hsErr)
			case want.Version != frame.ProtocolVersion, want.Name == "", len(want.Name) > yomo.MaxNameLenForTest, len(want.WantedTarget) > yomo.MaxTargetLenForTest,
				want.Kind < frame.KindSource || want.Kind > frame.KindZipper, len(want.ObserveTags) > maxTags,
				want.Kind == frame.KindFunction && len(want.ObserveTags) == 0,
				want.Credential != cred, want.Name == "refused":
				t.Fatalf("accepted a handshake that breaks a rule: %+v", want)
			case want.Name == "restricted":
				for _, tag := range want.ObserveTags {
					if tag != 1 && tag != 2 {
						t.Fatalf("accepted a restricted client observing tag %d", tag)
					}
				}
				if want.Kind == frame.KindZipper {
					t.Fatalf("accepted a mesh link with an ACL")
				}
			}
			return
		}
		if ans.code < frame.RejectBadHandshake || ans.code > frame.RejectShutdown || ans.reason == "" {
			t.Fatalf("refused with code %d reason %q", ans.code, ans.reason)
		}
		if want != nil && len(want.Credential) >= 12 && !strings.Contains(want.Name, want.Credential) &&
			!strings.Contains(want.WantedTarget, want.Credential) && strings.Contains(ans.reason, want.Credential) {
			t.Fatalf("the rejection %q echoes the credential", ans.reason)
		}
	})
}

// handshakeAnswer is how the zipper answered a control stream.
type handshakeAnswer struct {
	ack    bool
	code   uint16 // rejection code
	reason string
}

// runHandshake writes in (then a FIN) as the control stream of a new
// in-memory connection to z and returns the zipper's answer.
func runHandshake(t *testing.T, z *yomo.Zipper, in []byte) handshakeAnswer {
	t.Helper()
	rejected := z.Stats().Connections.Rejected // the zipper counts a refusal before the client learns of it
	cli, err := yomo.DialMemForTest(z, "fuzz")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.CloseWithError(0, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cli.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan struct{})
	go func() { // owned by runHandshake: ends when written or the connection closes
		defer close(wrote)
		st.SetWriteDeadline(time.Now().Add(5 * time.Second))
		st.Write(in)
		st.Close()
	}()
	defer func() { <-wrote }()
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	ft, body, err := frame.NewReader(st, frame.MaxControlSize).Next()
	if err == nil {
		v, derr := frame.DecodeControl(ft, body)
		switch v := v.(type) {
		case *frame.HandshakeAck:
			return handshakeAnswer{ack: true}
		case *frame.Rejected:
			closed := closeErrorOf(t, cli, 5*time.Second)
			if closed.Code != yomo.CloseRejectBaseForTest+uint64(v.Code) || closed.Reason != v.Reason {
				t.Fatalf("rejected %+v but closed with %v", v, closed)
			}
			return handshakeAnswer{code: v.Code, reason: v.Reason}
		}
		t.Fatalf("zipper answered %s (%v)", ft, derr)
	}
	// The connection was closed before the answer could be read: the
	// zipper refused the handshake, or accepted it and then closed the
	// connection because of what followed the handshake in the input (a
	// FIN, a bad frame). A refusal is counted before the client can see
	// it.
	closed := closeErrorOf(t, cli, 5*time.Second)
	if z.Stats().Connections.Rejected == rejected {
		if closed.Code != yomo.CloseNormalForTest && (closed.Code != yomo.CloseProtocolForTest || closed.Reason == "") {
			t.Fatalf("accepted, then closed with %v", closed)
		}
		return handshakeAnswer{ack: true}
	}
	if closed.Code <= yomo.CloseRejectBaseForTest || closed.Reason == "" {
		t.Fatalf("closed with %v (read: %v), want a rejection with a reason", closed, err)
	}
	return handshakeAnswer{code: uint16(closed.Code - yomo.CloseRejectBaseForTest), reason: closed.Reason}
}
