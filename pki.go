package yomo

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/yomo-dev/yomo/internal/transport"
)

// Trust across processes without certificate code of your own: a zipper
// that generated its certificate exports it as PEM (RootCAPEM), and a
// client or zipper in another process trusts it with WithRootCAPEM. For a
// mesh, or to keep one certificate across restarts, DevCertificate makes
// one to give every zipper. These are for development and tests: in
// production, give zippers certificates from your own CA (WithTLSConfig).

// DevCertificate returns a fresh self-signed certificate (ECDSA P-256,
// valid one year, for server and client authentication) for hosts (IP
// addresses or DNS names; default "localhost", "127.0.0.1" and "::1") and
// its PEM encoding, which WithRootCAPEM takes to trust it. Give the
// certificate to zippers with WithTLSConfig(&tls.Config{Certificates:
// []tls.Certificate{cert}}) (a mesh of zippers sharing it trusts itself
// once each is also given WithRootCAPEM(pem)). Write the PEM to a file
// other processes read; the private key stays in the certificate.
func DevCertificate(hosts ...string) (tls.Certificate, []byte, error) {
	cert, _, err := transport.SelfSigned(hosts...)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return cert, certPEM(cert), nil
}

// RootCAPEM returns the zipper's generated certificate in PEM, for clients
// in other processes (WithRootCAPEM). It is nil when the zipper was given
// certificates (WithTLSConfig).
func (z *Zipper) RootCAPEM() []byte {
	if z.roots == nil {
		return nil
	}
	return certPEM(z.tls.Certificates[0])
}

func certPEM(cert tls.Certificate) []byte {
	var out []byte
	for _, der := range cert.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

// WithRootCAPEM adds the certificates of a PEM block (RootCAPEM,
// DevCertificate, or a CA's file) to the roots that verify zippers: a
// client's, or a zipper's for its mesh links. It combines with
// WithTLSConfig in either order (added to its RootCAs; when those are nil,
// the PEM's certificates are the only roots, not the system's). PEM
// without a certificate is an error from NewZipper or Connect.
func WithRootCAPEM(pemCerts []byte) Option {
	pool := x509.NewCertPool()
	var err error
	if !pool.AppendCertsFromPEM(pemCerts) {
		err = errors.New("yomo: WithRootCAPEM: no certificate in the PEM")
	}
	return bothFunc{
		z: func(o *zipperOptions) {
			o.extraRoots = append(o.extraRoots, pemCerts)
			if err != nil {
				o.errs = append(o.errs, err)
			}
		},
		c: func(o *clientOptions) {
			o.extraRoots = append(o.extraRoots, pemCerts)
			if err != nil {
				o.errs = append(o.errs, err)
			}
		},
	}
}

// withRoots returns t (a clone, or a new config when nil) with the PEM
// roots added to its RootCAs.
func withRoots(t *tls.Config, roots [][]byte) (*tls.Config, error) {
	if t == nil {
		t = &tls.Config{}
	} else {
		t = t.Clone()
	}
	if len(roots) == 0 {
		return t, nil
	}
	pool := t.RootCAs
	if pool == nil {
		pool = x509.NewCertPool()
	} else {
		pool = pool.Clone()
	}
	for _, p := range roots {
		if !pool.AppendCertsFromPEM(p) {
			return nil, fmt.Errorf("yomo: no certificate in a root CA PEM")
		}
	}
	t.RootCAs = pool
	return t, nil
}
