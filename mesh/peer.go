package mesh

// Peer is another zipper this zipper links to.
type Peer struct {
	Name       string // the peer zipper's name
	Addr       string // host:port of its QUIC listener
	Credential string // presented to the peer, e.g. "token:<secret>"
}
