package sidebyside

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS core (no JetStream): an embedded nats-server in the router process
// (two, clustered by a route, for the cascade), nats.go clients. The
// consumer subscribes to subjData; the round trip's consumer publishes
// each message back on subjRply, which the producer subscribes to (the
// same shape as yomo's backflow). Over TLS the client port (and the route
// of the cascade) require TLS 1.3 with the benchmark's certificate.

func natsSystem(secure bool) system {
	name := "NATS TCP"
	if secure {
		name = "NATS TLS"
	}
	return system{
		name: name,
		router: func(ctx context.Context, a childArgs, certs *tlsFiles) (role, error) {
			opts := &server.Options{
				ServerName: a.name,
				Host:       "127.0.0.1",
				Port:       -1,
				NoLog:      true,
				NoSigs:     true,
				Cluster:    server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: -1},
			}
			if secure {
				opts.TLSConfig = certs.server.Clone()
				opts.Cluster.TLSConfig = certs.server.Clone()
			}
			if a.peer != "" {
				opts.Routes = []*url.URL{{Scheme: "nats-route", Host: a.peer}}
			}
			s, err := server.NewServer(opts)
			if err != nil {
				return nil, err
			}
			go s.Start() // owned by the role: Shutdown stops it
			stop := func() { s.Shutdown(); s.WaitForShutdown() }
			if !s.ReadyForConnections(10 * time.Second) {
				stop()
				return nil, errors.New("nats-server not ready")
			}
			if a.peer != "" {
				for s.NumRoutes() == 0 {
					if ctx.Err() != nil {
						stop()
						return nil, fmt.Errorf("no route to %s: %w", a.peer, ctx.Err())
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			return &routerRole{
				addrs: s.Addr().String() + " " + s.ClusterAddr().String(),
				stop:  stop,
				stats: func() string {
					return fmt.Sprintf("%s: slow_consumers=%d (clients=%d routes=%d)", a.name,
						s.NumSlowConsumers(), s.NumSlowConsumersClients(), s.NumSlowConsumersRoutes())
				},
			}, nil
		},
		producer: func(ctx context.Context, a childArgs, certs *tlsFiles, onReply func([]byte)) (producer, error) {
			nc, err := natsConnect(a, certs, secure, "bench-producer")
			if err != nil {
				return nil, err
			}
			if onReply != nil {
				if _, err := nc.Subscribe(subjRply, func(m *nats.Msg) { onReply(m.Data) }); err != nil {
					nc.Close()
					return nil, err
				}
				if err := nc.Flush(); err != nil {
					nc.Close()
					return nil, err
				}
			}
			return natsProducer{nc}, nil
		},
		consumer: func(ctx context.Context, a childArgs, certs *tlsFiles, onMsg func(int, []byte)) (consumer, error) {
			var ncs []*nats.Conn
			closeAll := func() {
				for _, nc := range ncs {
					nc.Close()
				}
			}
			for i := range a.consumers {
				nc, err := natsConnect(a, certs, secure, fmt.Sprintf("sink%d", i))
				if err != nil {
					closeAll()
					return nil, err
				}
				ncs = append(ncs, nc)
				_, err = nc.Subscribe(subjData, func(m *nats.Msg) {
					onMsg(i, m.Data)
					if a.rtt {
						_ = nc.Publish(subjRply, m.Data)
					}
				})
				if err == nil {
					err = nc.Flush()
				}
				if err != nil {
					closeAll()
					return nil, err
				}
			}
			return closerFunc(closeAll), nil
		},
		connect: func(ctx context.Context, a childArgs, certs *tlsFiles, i int) (func(), error) {
			nc, err := natsConnect(a, certs, secure, fmt.Sprintf("client%d", i))
			if err != nil {
				return nil, err
			}
			return nc.Close, nil
		},
	}
}

func natsConnect(a childArgs, certs *tlsFiles, secure bool, name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(20 * time.Second),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { reportAsync(err) }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed by us
				reportAsync(fmt.Errorf("disconnected: %w", err))
			}
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil { // e.g. the server's "Slow Consumer" before it closed the connection
				reportAsync(fmt.Errorf("closed: %w", err))
			}
		}),
	}
	u := "nats://" + a.addr
	if secure {
		u = "tls://" + a.addr
		opts = append(opts, nats.Secure(certs.client.Clone()))
	}
	return nats.Connect(u, opts...)
}

type natsProducer struct{ nc *nats.Conn }

func (p natsProducer) send(b []byte) error { return p.nc.Publish(subjData, b) }

// flush makes sure the server got everything: the PING after the messages
// comes back as a PONG once they are processed.
func (p natsProducer) flush() error { return p.nc.FlushTimeout(30 * time.Second) }
func (p natsProducer) close()       { p.nc.Close() }
