package yomo

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/mesh"
)

// ZipperOption configures a Zipper (NewZipper).
type ZipperOption interface{ applyZipper(*zipperOptions) }

// ClientOption configures a Source or a StreamFunction.
type ClientOption interface{ applyClient(*clientOptions) }

// Option configures a Zipper as well as clients; it is accepted wherever a
// ZipperOption or a ClientOption is.
type Option interface {
	ZipperOption
	ClientOption
}

type zipperFunc func(*zipperOptions)

func (f zipperFunc) applyZipper(o *zipperOptions) { f(o) }

type clientFunc func(*clientOptions)

func (f clientFunc) applyClient(o *clientOptions) { f(o) }

type bothFunc struct {
	z func(*zipperOptions)
	c func(*clientOptions)
}

func (f bothFunc) applyZipper(o *zipperOptions) { f.z(o) }
func (f bothFunc) applyClient(o *clientOptions) { f.c(o) }

// OverflowPolicy says what a zipper does with a frame for a function whose
// queue is full.
type OverflowPolicy int

const (
	// DropStalled (the default) tells a slow function from a stuck one.
	// While the function keeps taking data (its stream accepted a write
	// within the stall timeout), a frame for its full queue waits for room:
	// a healthy function that is briefly behind loses nothing. Once it has
	// taken nothing for the stall timeout, frames for its full queue are
	// dropped at once, counted in Stats and reported to it, until it has
	// caught up (emptied its queue). So a stuck or very slow function
	// costs the writers of its tags one stall timeout per episode, and
	// other functions nothing more.
	DropStalled OverflowPolicy = iota
	// DropNewest drops a frame for a full queue at once: the strictest
	// isolation (a writer never waits for any function), at the price of
	// drops whenever a function falls behind a burst. Under a sustained
	// flood it delivers less than Block, not more: the work spent on
	// frames that are then dropped is lost.
	DropNewest
	// Block makes the writer wait for room however long it takes: no loss,
	// but a slow or stuck function slows the writers of the tags it
	// observes (backpressure) and, through them, other functions.
	Block
)

func (p OverflowPolicy) String() string {
	switch p {
	case DropStalled:
		return "drop-stalled"
	case DropNewest:
		return "drop-newest"
	case Block:
		return "block"
	}
	return fmt.Sprintf("OverflowPolicy(%d)", int(p))
}

// Defaults.
const (
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultQueueFrames      = 16384
	DefaultQueueBytes       = 8 << 20
	DefaultWriteBuffer      = 4 << 20
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReconnectMin     = 50 * time.Millisecond
	DefaultReconnectMax     = 2 * time.Second
	DefaultStallTimeout     = 250 * time.Millisecond
	// DefaultReconnectGrace covers the clients' reconnect backoff
	// (DefaultReconnectMax) plus a handshake: after a restart every client
	// using the defaults is back within it of the first one.
	DefaultReconnectGrace = 3 * time.Second
)

// Default limits of a zipper (see SECURITY.md). The largest data frame,
// both ways, is frame.DefaultMaxSize (4 MiB; WithMaxFrameSize), a control
// frame at most frame.MaxControlSize (64 KiB), and a client has
// DefaultHandshakeTimeout (WithHandshakeTimeout) to complete its handshake.
const (
	// DefaultMaxConnections bounds the network connections a zipper holds
	// at once, clients and mesh links, accepted or still in their
	// handshake (WithConnectionLimits).
	DefaultMaxConnections = 10000
	// DefaultMaxConnectionsPerIP bounds the connections from one IP
	// address (WithConnectionLimits). Raise it when many clients share an
	// address (NAT).
	DefaultMaxConnectionsPerIP = 1000
	// DefaultMaxPendingHandshakes bounds the connections that completed
	// QUIC but not yet the yomo handshake (WithMaxPendingHandshakes).
	DefaultMaxPendingHandshakes = 256
	// DefaultMaxObservedTags bounds the tags one client may observe
	// (WithMaxObservedTags).
	DefaultMaxObservedTags = 1024
)

type zipperOptions struct {
	tls              *tls.Config
	logger           *slog.Logger
	tokens           []string
	extraRoots       [][]byte // WithRootCAPEM
	peers            []mesh.Peer
	maxFrame         int
	handshakeTimeout time.Duration
	queueFrames      int
	queueBytes       int
	policy           OverflowPolicy
	stallTimeout     time.Duration
	reconnectGrace   time.Duration
	hooks            []Hooks
	authenticator    Authenticator
	maxConns         int
	maxConnsPerIP    int
	maxPending       int
	maxTags          int
	errs             []error
}

type clientOptions struct {
	tls          *tls.Config
	insecure     bool
	logger       *slog.Logger
	credential   string
	maxFrame     int
	connectRetry bool
	extraRoots   [][]byte // WithRootCAPEM
	inMemory     *Zipper
	writeBuffer  int
	writeTimeout time.Duration
	reconnectMin time.Duration
	reconnectMax time.Duration
	concurrency  int
	unordered    bool // WithUnorderedHandlers
	broadcast    bool // WithBroadcast
	datagramTags map[Tag]struct{}
	errs         []error
}

// WithTLSConfig sets the TLS configuration. For a zipper: its certificates
// (and ClientCAs with ClientAuth for mutual TLS). For clients: the roots
// that verify the zipper (RootCAs; nil means the system roots) and a
// client certificate for mutual TLS. The configuration is cloned; the
// library sets the ALPN and requires TLS 1.3.
func WithTLSConfig(c *tls.Config) Option {
	return bothFunc{
		z: func(o *zipperOptions) { o.tls = c },
		c: func(o *clientOptions) { o.tls = c },
	}
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return bothFunc{
		z: func(o *zipperOptions) { o.logger = l },
		c: func(o *clientOptions) { o.logger = l },
	}
}

// WithMaxFrameSize sets the largest payload of a data frame accepted and
// sent (default frame.DefaultMaxSize, 4 MiB): a payload of exactly n bytes
// goes through; target, key and metadata come on top, up to
// frame.MaxEnvelope. A write above it fails with ErrFrameTooLarge before
// anything is sent.
func WithMaxFrameSize(n int) Option {
	check := func(errs *[]error) {
		if n <= 0 || n > 1<<30 {
			*errs = append(*errs, fmt.Errorf("yomo: max frame size %d out of range (1 B .. 1 GiB)", n))
		}
	}
	return bothFunc{
		z: func(o *zipperOptions) { o.maxFrame = n; check(&o.errs) },
		c: func(o *clientOptions) { o.maxFrame = n; check(&o.errs) },
	}
}

// WithCredential sets the credential a client presents, "token:<secret>".
func WithCredential(cred string) ClientOption {
	return clientFunc(func(o *clientOptions) { o.credential = cred })
}

// WithAuthToken makes the zipper require a credential "token:<t>" with t
// one of tokens. Tokens are compared in constant time and never logged.
// The client's identity (ConnInfo.Identity) is then "token#<n>", n being
// the token's position among all tokens given (from 1), unless a verified
// client certificate or an Authenticator names it; see WithAuthenticator.
//
// WithAuthToken with no token is an error from NewZipper (ErrNoTokens):
// it would otherwise leave the zipper open to anyone, which is never what
// a call that asks for authentication means (a token list read from an
// empty configuration, for instance).
func WithAuthToken(tokens ...string) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if len(tokens) == 0 {
			o.errs = append(o.errs, ErrNoTokens)
		}
		for _, t := range tokens {
			if t == "" {
				o.errs = append(o.errs, errors.New("yomo: empty auth token"))
				continue
			}
			o.tokens = append(o.tokens, t)
		}
	})
}

// WithMesh links the zipper to other zippers. Once the zipper serves
// (Serve or ListenAndServe), it dials every peer and keeps the link up,
// reconnecting with backoff and jitter; a peer that dials it first needs
// no dial back (one connection per pair carries both directions). The
// link uses the zipper's WithTLSConfig both ways: its Certificates present
// it, its RootCAs verify the peer (the system roots when nil), and a
// ClientCAs/ClientAuth setting authenticates dialing peers like clients.
// Peer.Name must be the peer zipper's name (checked after the handshake);
// Peer.Credential is presented like a client's (WithAuthToken on the peer).
// Zipper names must be unique in a mesh.
func WithMesh(peers ...mesh.Peer) ZipperOption {
	return zipperFunc(func(o *zipperOptions) { o.peers = append(o.peers, peers...) })
}

// WithHandshakeTimeout bounds how long a connected client may take to send
// its handshake (default DefaultHandshakeTimeout).
func WithHandshakeTimeout(d time.Duration) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if d <= 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: handshake timeout %v must be positive", d))
		}
		o.handshakeTimeout = d
	})
}

// WithConnectionLimits bounds the network connections the zipper holds at
// once: in total and from one IP address (defaults DefaultMaxConnections,
// DefaultMaxConnectionsPerIP; 0 means no limit). Clients and mesh links
// count, from the end of the QUIC handshake until they are gone;
// in-memory clients do not. A connection over a limit is closed at once
// with a reason ("too many connections from 192.0.2.7 (limit 1000)"); the
// client's Connect returns that error, which is not a rejection: a
// connected client that lost its connection keeps retrying with backoff.
func WithConnectionLimits(total, perIP int) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if total < 0 || perIP < 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: connection limits %d total / %d per IP must not be negative", total, perIP))
		}
		o.maxConns, o.maxConnsPerIP = total, perIP
	})
}

// WithMaxPendingHandshakes bounds the connections that completed QUIC but
// not the yomo handshake (default DefaultMaxPendingHandshakes; 0 means no
// limit). At the limit, Serve stops taking connections from its listener
// until a slot frees: they wait in the listener's backlog, which holds
// as many as the total connection limit (WithConnectionLimits;
// DefaultMaxConnections when there is none), each holding no goroutine of
// the zipper, and a connection that finds the backlog full is closed at
// once with a reason and CloseLimit, as for WithConnectionLimits (the
// client tries again later). So a burst of
// clients is served in turn rather than refused. Each pending connection
// is closed after the handshake timeout, so silent peers hold a slot for
// at most that long.
func WithMaxPendingHandshakes(n int) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if n < 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: max pending handshakes %d must not be negative", n))
		}
		o.maxPending = n
	})
}

// WithMaxObservedTags bounds the tags one client may observe (default
// DefaultMaxObservedTags). A handshake with more is rejected
// (frame.RejectDenied).
func WithMaxObservedTags(n int) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if n < 1 {
			o.errs = append(o.errs, fmt.Errorf("yomo: max observed tags %d must be at least 1", n))
		}
		o.maxTags = n
	})
}

// WithQueueLimits bounds the zipper's queue towards each client, in frames
// and bytes (defaults DefaultQueueFrames, DefaultQueueBytes).
func WithQueueLimits(frames, bytes int) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if frames <= 0 || bytes <= 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: queue limits %d frames / %d bytes must be positive", frames, bytes))
		}
		o.queueFrames, o.queueBytes = frames, bytes
	})
}

// WithOverflowPolicy sets what happens to a frame for a function whose
// queue is full (default DropStalled).
func WithOverflowPolicy(p OverflowPolicy) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if p != DropStalled && p != DropNewest && p != Block {
			o.errs = append(o.errs, fmt.Errorf("yomo: unknown overflow policy %d", int(p)))
		}
		o.policy = p
	})
}

// WithStallTimeout sets how long a function may take no data before the
// DropStalled policy drops frames for it (default DefaultStallTimeout). For
// a destination with long round trips it is stretched to 8 round trips
// of its connection.
func WithStallTimeout(d time.Duration) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if d <= 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: stall timeout %v must be positive", d))
		}
		o.stallTimeout = d
	})
}

// WithReconnectGrace sets how long, after a client *re*connects (to this
// zipper after a restart, or here after another zipper's GOAWAY or a lost
// connection), the zipper holds a frame from it that nothing observes yet
// instead of counting it unroutable (default DefaultReconnectGrace; 0
// turns the grace off). Clients reconnect in no particular order; without
// the grace, whatever a source writes before the functions are back
// would be lost. During the grace such a frame waits until a function for
// it connects (or a mesh route appears) or the grace ends; the writer's
// later frames wait behind it, which keeps their order; other writers are
// not affected. Frames of clients connecting for the first time are never
// held.
func WithReconnectGrace(d time.Duration) ZipperOption {
	return zipperFunc(func(o *zipperOptions) {
		if d < 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: reconnect grace %v must not be negative", d))
		}
		o.reconnectGrace = d
	})
}

// WithConnectRetry makes Connect keep trying, every address in turn with
// backoff and jitter (WithReconnectBackoff), until the zipper accepts,
// refuses (a *RejectedError is final), or Connect's context ends; the error
// then names the last address and what went wrong there. Without it,
// Connect tries each address once (except that a dial the zipper's QUIC
// stack refuses with CONNECTION_REFUSED, a momentary overload, is tried
// again a few times within about 1.3 s). Useful when a process may start
// before its zipper.
func WithConnectRetry() ClientOption {
	return clientFunc(func(o *clientOptions) { o.connectRetry = true })
}

// WithInsecureSkipVerify disables verification of the zipper's
// certificate. INSECURE: anyone on the path can impersonate the zipper.
// Only for local development.
func WithInsecureSkipVerify() ClientOption {
	return clientFunc(func(o *clientOptions) { o.insecure = true })
}

// WithInMemory connects the client to z inside this process, without a
// network or TLS (authentication still applies). The zipper address given
// to the constructor is then only informative.
func WithInMemory(z *Zipper) ClientOption {
	return clientFunc(func(o *clientOptions) {
		if z == nil {
			o.errs = append(o.errs, errors.New("yomo: WithInMemory(nil)"))
		}
		o.inMemory = z
	})
}

// WithWriteBuffer bounds the bytes a client queues for sending (default
// DefaultWriteBuffer), including while it is disconnected.
func WithWriteBuffer(bytes int) ClientOption {
	return clientFunc(func(o *clientOptions) {
		if bytes <= 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: write buffer %d must be positive", bytes))
		}
		o.writeBuffer = bytes
	})
}

// WithWriteTimeout bounds how long a write waits for room in a full write
// buffer before failing with ErrWriteTimeout (default DefaultWriteTimeout).
func WithWriteTimeout(d time.Duration) ClientOption {
	return clientFunc(func(o *clientOptions) {
		if d <= 0 {
			o.errs = append(o.errs, fmt.Errorf("yomo: write timeout %v must be positive", d))
		}
		o.writeTimeout = d
	})
}

// WithReconnectBackoff sets the reconnection backoff: the first retry
// waits about min, each next one twice as long up to max, with jitter
// (defaults DefaultReconnectMin, DefaultReconnectMax).
func WithReconnectBackoff(min, max time.Duration) ClientOption {
	return clientFunc(func(o *clientOptions) {
		if min <= 0 || max < min {
			o.errs = append(o.errs, fmt.Errorf("yomo: reconnect backoff %v..%v invalid", min, max))
		}
		o.reconnectMin, o.reconnectMax = min, max
	})
}

func newZipperOptions(opts []ZipperOption) (zipperOptions, error) {
	o := zipperOptions{
		handshakeTimeout: DefaultHandshakeTimeout,
		queueFrames:      DefaultQueueFrames,
		queueBytes:       DefaultQueueBytes,
		maxFrame:         frame.DefaultMaxSize,
		stallTimeout:     DefaultStallTimeout,
		reconnectGrace:   DefaultReconnectGrace,
		maxConns:         DefaultMaxConnections,
		maxConnsPerIP:    DefaultMaxConnectionsPerIP,
		maxPending:       DefaultMaxPendingHandshakes,
		maxTags:          DefaultMaxObservedTags,
	}
	for _, opt := range opts {
		if opt != nil {
			opt.applyZipper(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o, errors.Join(o.errs...)
}

func newClientOptions(opts []ClientOption) clientOptions {
	o := clientOptions{
		maxFrame:     frame.DefaultMaxSize,
		writeBuffer:  DefaultWriteBuffer,
		writeTimeout: DefaultWriteTimeout,
		reconnectMin: DefaultReconnectMin,
		reconnectMax: DefaultReconnectMax,
	}
	for _, opt := range opts {
		if opt != nil {
			opt.applyClient(&o)
		}
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// WithUnorderedHandlers drops the order of handler calls with
// WithHandlerConcurrency(n): every frame goes to the next free call, so n
// frames run at once even when they come from one Source with one tag
// (YoMo ran each call concurrently). For independent frames; frames of
// one writer and tag may then be handled, and their results written, in
// any order.
func WithUnorderedHandlers() ClientOption {
	return clientFunc(func(o *clientOptions) { o.unordered = true })
}

// WithBroadcast makes every instance of this StreamFunction's name receive
// every frame of its tags (YoMo v1.17+'s behaviour, e.g. for cache
// invalidation), here and across the mesh, rather than the default: the
// instances sharing a name form a group and each frame goes to one of
// them. Each broadcast instance is a group of its own: with other
// instances of the name that do not broadcast, those share the load
// among themselves.
func WithBroadcast() ClientOption {
	return clientFunc(func(o *clientOptions) { o.broadcast = true })
}

// WithHandlerConcurrency lets a StreamFunction run its handler for up to n
// frames at once (default 1: one at a time, in arrival order). Frames from
// one Source with one tag still reach the handler one at a time and in
// write order; frames of different Sources or tags may be handled
// concurrently; frames with a key (Message.Key) are handled one at a
// time per key, whoever wrote them. Each frame is copied once to make
// this possible. With WithUnorderedHandlers, any n frames run at once.
func WithHandlerConcurrency(n int) ClientOption {
	return clientFunc(func(o *clientOptions) {
		if n < 1 || n > 4096 {
			o.errs = append(o.errs, fmt.Errorf("yomo: handler concurrency %d out of range (1 .. 4096)", n))
		}
		o.concurrency = n
	})
}

// WithDatagramTags makes a Source or StreamFunction write the frames of
// these tags unreliably, in QUIC datagrams (RFC 9221), instead of on its
// data stream: each is sent once, never retransmitted, and never waits
// for a frame lost before it, so a loss costs that frame alone and no
// latency to the others. Every zipper forwards a frame that arrived in a
// datagram in a datagram again, to functions, across mesh links and as
// backflow; nothing else about routing changes. A frame must fit in one
// datagram (MaxDatagramFrame): a larger write fails with a
// *DatagramTooLargeError and sends nothing. Such writes never wait: a
// frame written while the client is not connected, or when its datagram
// queue is full, is dropped and counted (DatagramStats); one that the
// network loses is counted by the receiver when a later one arrives.
// Frames of a datagram tag have no order, between themselves or with
// others. Each call adds to the tags.
func WithDatagramTags(tags ...Tag) ClientOption {
	return clientFunc(func(o *clientOptions) {
		if o.datagramTags == nil {
			o.datagramTags = make(map[Tag]struct{}, len(tags))
		}
		for _, t := range tags {
			o.datagramTags[t] = struct{}{}
		}
	})
}
