package sidebyside

import "context"

// A system is one of the compared messaging systems, seen from the three
// kinds of process: the router between producer and consumers, the
// producer, the consumer (one or more connections), and a bare client for
// the connection-scale cell.
type system struct {
	name string // as in the table
	// router listens on 127.0.0.1 (and links to a.peer when set); its role's
	// info is "<client address> <address for a downstream router's link>".
	router func(ctx context.Context, a childArgs, certs *tlsFiles) (role, error)
	// producer connects to a.addr; onReply, when not nil, gets the replies of
	// the round trip.
	producer func(ctx context.Context, a childArgs, certs *tlsFiles, onReply func([]byte)) (producer, error)
	// consumer connects a.consumers consumers to a.addr, each getting every
	// message (onMsg(i, p), p valid during the call); with a.rtt each
	// echoes what it gets as the reply.
	consumer func(ctx context.Context, a childArgs, certs *tlsFiles, onMsg func(i int, p []byte)) (consumer, error)
	// connect connects client number i and returns its close.
	connect func(ctx context.Context, a childArgs, certs *tlsFiles, i int) (func(), error)
}

type producer interface {
	send(p []byte) error // p may be reused once send returns
	flush() error        // everything sent has left this process
	close()
}

type consumer interface{ close() }

// Names of the systems, in table order.
const (
	sysYomo    = "yomo"
	sysNATS    = "nats-tcp"
	sysNATSTLS = "nats-tls"
	sysRaw     = "raw-relay"
	// sysAgain is yomo once more under another name: run next to yomo, it
	// shows how far apart two cells of the same code land in one round on
	// this machine (the A/A comparison), which a ratio to another system
	// must clear before it says anything. Not run unless asked for.
	sysAgain = "yomo-again"
)

// systemOrder is the table's order; defaultSystems what a run compares
// unless told otherwise.
var (
	defaultSystems = []string{sysYomo, sysNATS, sysNATSTLS, sysRaw}
	systemOrder    = append(defaultSystems[:len(defaultSystems):len(defaultSystems)], sysAgain)
)

var systems = map[string]system{
	sysYomo:    yomoSystem,
	sysNATS:    natsSystem(false),
	sysNATSTLS: natsSystem(true),
	sysRaw:     rawSystem,
	sysAgain:   yomoAgain(),
}

func yomoAgain() system {
	s := yomoSystem
	s.name = "yomo again"
	return s
}

// routerRole is a router process's role: it only answers the generic
// commands (cpu, rss).
type routerRole struct {
	addrs string
	stop  func()
	stats func() string // what the router counted (drops, refusals); may be nil
}

func (r *routerRole) info() string { return r.addrs }
func (r *routerRole) close()       { r.stop() }

func (r *routerRole) handle(cmd string) (string, error) {
	if cmd != "stats" {
		return "", errNotSupported
	}
	if r.stats == nil {
		return "stats -", nil
	}
	return "stats " + r.stats(), nil
}

type closerFunc func()

func (f closerFunc) close() { f() }
