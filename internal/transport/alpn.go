package transport

import (
	"context"
	"crypto/tls"
)

// DialALPN is Dial offering the application protocol alpn instead of ALPN.
// It exists for tests (in this module) that check a zipper refuses other
// protocols during the TLS handshake; applications use Dial.
func DialALPN(ctx context.Context, addr string, tlsConf *tls.Config, cfg QUICConfig, alpn string) (Conn, error) {
	return dial(ctx, addr, tlsConf, cfg, alpn)
}
