// Package mesh decides, at every zipper of a mesh, where each frame goes
// next: it is the mesh's route selection, a pure table. The links
// themselves (QUIC connections, pings, the exchange of advertisements) are
// connections of the root package, which feeds this table the events it
// sees and applies the changes it returns; see "Driving a Table".
//
// # The mesh
//
// A zipper serves the sources and stream functions of one region. Zippers
// in several regions (say eu-west, us-east and ap-south) link to one
// another over QUIC, one connection per pair carrying both directions, and
// together form a mesh. A frame written at any zipper then reaches, for
// each function name observing its tag, the nearest instance of that
// function anywhere in the mesh: a local instance if there is one, else
// the one with the lowest total link latency. What a function writes
// flows on by the same rules, and backflow finds its way to the zipper of
// the source that started the chain. The links need not form a
// full mesh: zippers forward for one another.
//
// The root package wires it up: each [Peer] names another zipper, the
// address of its QUIC listener and the credential to present to it.
//
//	z, err := yomo.NewZipper("eu-west", yomo.WithMesh(
//		mesh.Peer{Name: "us-east", Addr: "us-east.example:9000", Credential: "token:" + secret},
//		mesh.Peer{Name: "ap-south", Addr: "ap-south.example:9000", Credential: "token:" + secret},
//	))
//
// # Routing
//
// Every zipper keeps a [Table], a path-vector routing table. Destinations
// are [Key]s: a function (kind frame.RouteFunction: its name, the tag it
// observes and its wanted target) or a zipper (kind frame.RouteZipper:
// where backflow for that zipper's sources goes). Neighbours exchange
// advertisements, frame.Route values saying "I reach this key at this
// cost along this path of zippers". For every key a table selects the
// local instance if there is one, else the neighbour offering the lowest
// total cost (its advertised cost plus the cost of the link to it,
// in microseconds of measured latency); ties go to the shorter path, then
// to the neighbour whose name sorts first. A table ignores any
// advertisement whose path already contains its own name, so the path of a
// selected route never runs through the selecting zipper, paths never
// repeat a zipper, and a lost link cannot make routes count to infinity.
// Once advertisements stop flowing every zipper's selection is a least-cost
// path, and following the next hops from any zipper walks that path to
// the destination without a loop. RATIONALE.md gives the argument, and how
// frames stay loop-free while routes are still converging.
//
// # Driving a Table
//
// A Table does no I/O and has no goroutines and no clock; it is not safe
// for concurrent use. Its owner, the zipper, feeds it events:
//
//   - AddLocal and RemoveLocal when a local destination appears or goes
//     (instances are counted: two AddLocal need two RemoveLocal). The
//     zipper adds its own zipper key once, at start.
//   - LinkUp when a link to a neighbour is established, with its cost
//     (at least 1); SetCost when the measured latency moves; LinkDown when
//     the link is lost, which forgets everything learned over it.
//   - Learn with the routes of every RouteUpdate received from a neighbour
//     whose link is up (between its LinkUp and its LinkDown).
//
// Every method returns the [Change]s it caused. The owner turns each into
// an advertisement with [Table.Advert] and sends it to every neighbour
// whose link is up; when a link comes up it also sends the new neighbour
// the whole table, [Table.Adverts]. To forward, it asks [Table.Best]: Via
// is the next-hop neighbour ("" when the destination is local), Cost the
// total cost and Path the zippers the route runs through.
//
//	t := mesh.New("eu-west")
//	send := func(changes []mesh.Change) {
//		if len(changes) == 0 {
//			return
//		}
//		routes := make([]frame.Route, len(changes))
//		for i, c := range changes {
//			routes[i] = t.Advert(c)
//		}
//		for _, l := range linksUp {
//			l.send(&frame.RouteUpdate{Routes: routes})
//		}
//	}
//	send(t.AddLocal(mesh.Key{Kind: frame.RouteZipper, Name: "eu-west"}))
//
//	// A link to us-east is established; rtt is in microseconds.
//	send(t.LinkUp("us-east", rtt))
//	usEast.send(&frame.RouteUpdate{Routes: t.Adverts()})
//
//	// us-east sent a RouteUpdate.
//	send(t.Learn("us-east", update.Routes))
//
//	// A frame for function "uppercase" observing tag 0x10.
//	key := mesh.Key{Kind: frame.RouteFunction, Tag: 0x10, Name: "uppercase"}
//	if b, ok := t.Best(key); ok && b.Via != "" {
//		// forward to neighbour b.Via
//	}
//
// Slices a Table returns (Best.Path, the Path of its advertisements) may
// share memory with the table: read them, do not modify them.
package mesh
