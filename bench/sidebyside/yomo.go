package sidebyside

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/mesh"
)

// yomo: a zipper in the router process; a Source as producer (observing
// the reply tag for the round trip); a StreamFunction per consumer, each
// with its own name so that each gets every frame.

var quiet = yomo.WithLogger(slog.New(slog.DiscardHandler))

var yomoSystem = system{
	name: "yomo",
	router: func(ctx context.Context, a childArgs, certs *tlsFiles) (role, error) {
		opts := []yomo.ZipperOption{yomo.WithTLSConfig(certs.server), quiet}
		if a.peer != "" {
			opts = append(opts, yomo.WithMesh(mesh.Peer{Name: a.peerName, Addr: a.peer}))
		}
		z, err := yomo.NewZipper(a.name, opts...)
		if err != nil {
			return nil, err
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		served := make(chan error, 1)
		go func() { served <- z.Serve(context.Background(), pc) }() // owned by the role: stop closes z and waits
		addr := pc.LocalAddr().String()
		return &routerRole{
			addrs: addr + " " + addr,
			stop: func() {
				_ = z.Close()
				if err := <-served; !errors.Is(err, yomo.ErrClosed) {
					fmt.Fprintf(os.Stderr, "router %s: Serve returned %v, want ErrClosed\n", a.name, err)
				}
			},
			stats: func() string {
				st := z.Stats()
				s := fmt.Sprintf("%s: dropped=%d unroutable=%d rejected=%d", a.name, st.Dropped, st.Unroutable, st.Connections.Rejected)
				for _, k := range slices.Sorted(maps.Keys(st.Connections.RejectedBy)) {
					s += fmt.Sprintf(" rejected_%s=%d", k, st.Connections.RejectedBy[k])
				}
				return s
			},
		}, nil
	},
	producer: func(ctx context.Context, a childArgs, certs *tlsFiles, onReply func([]byte)) (producer, error) {
		src := yomo.NewSource("bench-producer", a.addr, yomo.WithTLSConfig(certs.client), quiet)
		src.SetErrorHandler(reportAsync)
		if onReply != nil {
			src.SetObserveDataTags(tagReply)
			src.SetReceiveHandler(func(_ yomo.Tag, data []byte) { onReply(data) })
		}
		if err := src.Connect(ctx); err != nil {
			return nil, err
		}
		return yomoProducer{src}, nil
	},
	consumer: func(ctx context.Context, a childArgs, certs *tlsFiles, onMsg func(int, []byte)) (consumer, error) {
		var fns []*yomo.StreamFunction
		closeAll := func() {
			for _, f := range fns {
				_ = f.Close()
			}
		}
		for i := range a.consumers {
			f := yomo.NewStreamFunction(fmt.Sprintf("sink%d", i), a.addr, yomo.WithTLSConfig(certs.client), quiet)
			f.SetObserveDataTags(tagData)
			f.SetErrorHandler(reportAsync)
			err := f.SetHandler(func(c yomo.Context) {
				onMsg(i, c.Data())
				if a.rtt {
					if err := c.Write(tagReply, c.Data()); err != nil {
						reportAsync(err)
					}
				}
			})
			if err != nil {
				closeAll()
				return nil, err
			}
			if err := f.Connect(ctx); err != nil {
				closeAll()
				return nil, err
			}
			fns = append(fns, f)
		}
		return closerFunc(closeAll), nil
	},
	connect: func(ctx context.Context, a childArgs, certs *tlsFiles, i int) (func(), error) {
		src := yomo.NewSource(fmt.Sprintf("client%d", i), a.addr, yomo.WithTLSConfig(certs.client), quiet)
		if err := src.Connect(ctx); err != nil {
			_ = src.Close()
			return nil, err
		}
		return func() { _ = src.Close() }, nil
	},
}

type yomoProducer struct{ src *yomo.Source }

func (p yomoProducer) send(b []byte) error { return p.src.Write(tagData, b) }

// flush: Write hands the frame to the Source's write buffer, and the public
// API has no flush; the orchestrator waits for the consumers instead.
func (p yomoProducer) flush() error { return nil }
func (p yomoProducer) close()       { _ = p.src.Close() }
