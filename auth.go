package yomo

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/yomo-dev/yomo/frame"
)

// AuthRequest is what an Authenticator decides on: a client's handshake
// and what the transport proved about it.
//
// Credential is a secret: never log it, and never put it (or any other
// secret) in the text of an error returned by Authenticate, since that
// text is sent to the client. AuthRequest's String, GoString and LogValue
// leave the credential out, so logging the request itself is safe.
type AuthRequest struct {
	// Kind is "source", "function" or "zipper" (a mesh link from another
	// zipper).
	Kind string
	// Name is the client's application name (function name, source name,
	// or the zipper's name). The client chose it: it proves nothing.
	Name string
	// Credential is what the client presented (WithCredential, or
	// mesh.Peer.Credential), e.g. "token:<secret>"; "" when none.
	Credential string
	// PeerCertificates is the client's certificate chain, leaf first, as
	// verified by TLS against the zipper's ClientCAs (see WithTLSConfig);
	// nil when the client presented none, and for in-memory clients.
	PeerCertificates []*x509.Certificate
	// RemoteAddr is the client's address ("mem" network for in-memory
	// clients).
	RemoteAddr net.Addr
	// ObserveTags are the tags the client asks to receive (a function's
	// tags, a Source's backflow tags). A copy.
	ObserveTags []Tag
	// WantedTarget is a function's wanted target ("" when none).
	WantedTarget string
}

// CertificateName returns the identity the leaf certificate states: its
// subject common name, or else its first subject alternative name (DNS
// name, URI, e-mail address, then IP address). It returns "" without a
// certificate.
func (r *AuthRequest) CertificateName() string {
	if len(r.PeerCertificates) == 0 {
		return ""
	}
	return certificateName(r.PeerCertificates[0])
}

func certificateName(c *x509.Certificate) string {
	switch {
	case c == nil:
		return ""
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	case len(c.EmailAddresses) > 0:
		return c.EmailAddresses[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return ""
}

// String describes the request without its credential.
func (r *AuthRequest) String() string {
	var remote string
	if r.RemoteAddr != nil {
		remote = r.RemoteAddr.String()
	}
	return fmt.Sprintf("AuthRequest{Kind: %s, Name: %q, Credential: %s, Certificate: %q, RemoteAddr: %s, ObserveTags: %v, WantedTarget: %q}",
		r.Kind, r.Name, redacted(r.Credential), r.CertificateName(), remote, r.ObserveTags, r.WantedTarget)
}

// GoString is String, so that %#v does not print the credential either.
func (r *AuthRequest) GoString() string { return r.String() }

// LogValue makes slog log the request without its credential.
func (r *AuthRequest) LogValue() slog.Value {
	var remote string
	if r.RemoteAddr != nil {
		remote = r.RemoteAddr.String()
	}
	return slog.GroupValue(
		slog.String("kind", r.Kind),
		slog.String("name", r.Name),
		slog.String("credential", redacted(r.Credential)),
		slog.String("certificate", r.CertificateName()),
		slog.String("remote", remote),
	)
}

func redacted(cred string) string {
	if cred == "" {
		return "none"
	}
	return "REDACTED"
}

// Identity is who an authenticated client is, and what it may do.
type Identity struct {
	// Name names the principal (e.g. a certificate's common name, a user
	// or service account). It appears in ConnInfo.Identity, in the zipper's
	// logs and in rejection reasons; it must not be a secret.
	Name string
	// ACL restricts what the client may do; nil allows everything.
	ACL *ACL
}

// ACL restricts an identity. In each list, nil means "anything" and an
// empty, non-nil list means "nothing":
//
//	&ACL{Write: []Tag{1, 2}}                 // may write tags 1 and 2; may observe any tag; any function name
//	&ACL{Write: []Tag{}, Observe: []Tag{9}}  // may write nothing, may observe tag 9 only
//
// Observe and Functions are checked once, at the handshake: a client that
// asks to observe a tag outside Observe (a function's tags, or a Source's
// backflow tags), or a function whose name is not in Functions, is
// rejected (RejectedError with code frame.RejectDenied). Write is checked
// for every data frame the client sends: a frame with a tag outside Write
// is dropped, counted (Stats.Denied), and the connection is closed with a
// final rejection that names the tag (the client reports a *RejectedError
// to its error handler, and its writes then return it).
//
// ACLs apply to Sources and StreamFunctions. A mesh link (another zipper)
// forwards the frames of many clients, already checked where they entered
// the mesh; it cannot be restricted by an ACL, so a zipper identity with a
// non-nil ACL is rejected rather than silently let through unrestricted.
type ACL struct {
	Write     []Tag    // tags it may write
	Observe   []Tag    // tags it may observe
	Functions []string // function names it may register as (functions only)
}

// Authenticator decides who a connecting client is. It runs once per
// connection (and per mesh link), after the transport handshake (and TLS
// client certificate verification) and before the client is accepted.
//
// Authenticate returns the client's Identity, or an error to reject it. The
// error's text is sent to the client as the rejection reason and logged:
// it must not contain secrets (the credential, a token, a key). By default
// the rejection has code frame.RejectAuth; return a *RejectedError to
// choose another code (e.g. frame.RejectDenied). A nil Identity with a nil
// error is treated as a failure.
//
// It is called concurrently, from the connection's own goroutine, so a
// slow authenticator (a database, a token service) delays only that
// client; it must return once ctx is done (the handshake timeout).
type Authenticator interface {
	Authenticate(ctx context.Context, req *AuthRequest) (*Identity, error)
}

// AuthenticatorFunc adapts a function to the Authenticator interface.
type AuthenticatorFunc func(ctx context.Context, req *AuthRequest) (*Identity, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, req *AuthRequest) (*Identity, error) {
	return f(ctx, req)
}

// WithAuthenticator makes the zipper authenticate and authorise every
// client (and every mesh peer dialing in) with a. It runs after the
// built-in checks: with WithAuthToken, the token must be valid first, and a
// TLS configuration requiring client certificates has verified them. The
// Identity it returns replaces the default one (see ConnInfo.Identity).
func WithAuthenticator(a Authenticator) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if a == nil {
			o.errs = append(o.errs, errors.New("yomo: WithAuthenticator(nil)"))
		}
		o.authenticator = a
	})
}

// tokenSet holds the SHA-256 of each accepted token, so that comparing a
// credential with them takes the same time whatever their lengths.
type tokenSet [][sha256.Size]byte

func newTokenSet(tokens []string) tokenSet {
	s := make(tokenSet, len(tokens))
	for i, t := range tokens {
		s[i] = sha256.Sum256([]byte(t))
	}
	return s
}

// match returns the 1-based index of the token cred ("token:<t>") carries,
// or 0. It compares with every token, in constant time.
func (s tokenSet) match(cred string) int {
	secret, ok := strings.CutPrefix(cred, "token:")
	h := sha256.Sum256([]byte(secret))
	idx := 0
	for i := range s {
		eq := subtle.ConstantTimeCompare(h[:], s[i][:])
		idx = subtle.ConstantTimeSelect(eq, i+1, idx)
	}
	if !ok {
		return 0
	}
	return idx
}

// maxReasonLen bounds a rejection reason (an authenticator's error text).
const maxReasonLen = 512

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}

// authenticate establishes who c is: the token (WithAuthToken), the
// verified client certificate, then the Authenticator. It sets c.ident
// and c.acl. The credential is never logged nor echoed.
func (z *Zipper) authenticate(ctx context.Context, c *conn, hs *frame.Handshake) *rejection {
	var ident string
	if len(z.tokens) > 0 {
		i := z.tokens.match(hs.Credential)
		if i == 0 {
			return &rejection{frame.RejectAuth, "authentication failed"}
		}
		ident = "token#" + strconv.Itoa(i)
	}
	certs := c.tc.PeerCertificates()
	if name := certName(certs); name != "" {
		ident = name
	}
	c.ident = ident
	a := z.opts.authenticator
	if a == nil {
		return nil
	}
	req := &AuthRequest{
		Kind:             hs.Kind.String(),
		Name:             hs.Name,
		Credential:       hs.Credential,
		PeerCertificates: certs,
		RemoteAddr:       c.tc.RemoteAddr(),
		ObserveTags:      slices.Clone(hs.ObserveTags),
		WantedTarget:     hs.WantedTarget,
	}
	id, err := z.callAuthenticator(ctx, a, req)
	if err != nil {
		if rej, ok := errors.AsType[*RejectedError](err); ok && rej.Code >= frame.RejectBadHandshake && rej.Code <= frame.RejectShutdown {
			return &rejection{uint16(rej.Code), truncate(rej.Reason, maxReasonLen)}
		}
		return &rejection{frame.RejectAuth, truncate(err.Error(), maxReasonLen)}
	}
	if id == nil {
		z.log.Error("authenticator returned neither an identity nor an error; rejecting", "client", req)
		return &rejection{frame.RejectAuth, "authentication failed"}
	}
	c.ident = id.Name
	c.acl = id.ACL
	return nil
}

// callAuthenticator runs a, turning a panic into a rejection.
func (z *Zipper) callAuthenticator(ctx context.Context, a Authenticator, req *AuthRequest) (id *Identity, err error) {
	defer func() {
		if v := recover(); v != nil {
			z.log.Error("authenticator panicked; rejecting", "client", req, "panic", fmt.Sprint(v))
			id, err = nil, errors.New("authentication failed")
		}
	}()
	return a.Authenticate(ctx, req)
}

func certName(certs []*x509.Certificate) string {
	if len(certs) == 0 {
		return ""
	}
	return certificateName(certs[0])
}

// authorize applies c's ACL to its handshake and precomputes its write
// set. A denial is counted in Stats.Denied.
func (z *Zipper) authorize(c *conn, hs *frame.Handshake) *rejection {
	acl := c.acl
	if acl == nil {
		return nil
	}
	who := fmt.Sprintf("identity %q", c.ident)
	if hs.Kind == frame.KindZipper {
		z.denied.Add(1)
		return &rejection{frame.RejectDenied, who + " has an ACL: a mesh link cannot be restricted by one (give trusted zippers a nil ACL)"}
	}
	if acl.Observe != nil {
		for _, t := range hs.ObserveTags {
			if !slices.Contains(acl.Observe, t) {
				z.denied.Add(1)
				return &rejection{frame.RejectDenied, fmt.Sprintf("%s may not observe tag %d", who, t)}
			}
		}
	}
	if hs.Kind == frame.KindFunction && acl.Functions != nil && !slices.Contains(acl.Functions, hs.Name) {
		z.denied.Add(1)
		return &rejection{frame.RejectDenied, fmt.Sprintf("%s may not register function %q", who, hs.Name)}
	}
	if acl.Write != nil {
		c.write = newTagSet(acl.Write)
	}
	return nil
}

// tagSet is a connection's write ACL, checked for every frame: a sorted
// slice, scanned linearly when short and searched otherwise.
type tagSet struct{ tags []Tag }

func newTagSet(tags []Tag) *tagSet {
	s := slices.Clone(tags)
	if s == nil {
		s = []Tag{}
	}
	slices.Sort(s)
	return &tagSet{tags: slices.Compact(s)}
}

func (s *tagSet) has(t Tag) bool {
	if len(s.tags) <= 8 {
		for _, x := range s.tags {
			if x == t {
				return true
			}
		}
		return false
	}
	_, ok := slices.BinarySearch(s.tags, t)
	return ok
}

// denyWrite handles a data frame c may not write: it is dropped and
// counted, and the connection ends with a final rejection naming the tag.
func (z *Zipper) denyWrite(c *conn, tag Tag) *rejection {
	z.denied.Add(1)
	rej := &rejection{frame.RejectDenied, fmt.Sprintf("identity %q may not write tag %d", c.ident, tag)}
	z.log.Warn("write denied; closing the connection", "kind", c.hs.Kind.String(), "name", c.hs.Name,
		"identity", c.ident, "conn", c.id, "tag", tag)
	return rej
}

// verifyClientCerts makes a TLS configuration that asks for client
// certificates verify them (against ClientCAs): RequestClientCert becomes
// VerifyClientCertIfGiven and RequireAnyClientCert becomes
// RequireAndVerifyClientCert, unless the configuration verifies them
// itself (VerifyPeerCertificate or VerifyConnection). Configurations
// returned by GetConfigForClient get the same treatment.
func verifyClientCerts(c *tls.Config) {
	if c.VerifyPeerCertificate == nil && c.VerifyConnection == nil {
		switch c.ClientAuth {
		case tls.RequestClientCert:
			c.ClientAuth = tls.VerifyClientCertIfGiven
		case tls.RequireAnyClientCert:
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if gcfc := c.GetConfigForClient; gcfc != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			nc, err := gcfc(hello)
			if err != nil || nc == nil {
				return nc, err
			}
			nc = nc.Clone()
			verifyClientCerts(nc)
			return nc, nil
		}
	}
}
