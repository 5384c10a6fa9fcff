package mesh_test

import (
	"fmt"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/mesh"
)

// Three zippers: a function runs at ap-south; us-east reaches ap-south
// directly (300 µs) or through eu-west (100 + 120 µs). Each table is fed
// what its owner would receive over its links, and the advertisements it
// returns are what the owner would send. No I/O, no clock.
func ExampleTable() {
	usEast, euWest, apSouth := mesh.New("us-east"), mesh.New("eu-west"), mesh.New("ap-south")
	billing := mesh.Key{Kind: frame.RouteFunction, Tag: 0x20, Name: "billing"}

	// send hands a table's changes to a neighbour, as the link would.
	send := func(from *mesh.Table, changes []mesh.Change, to *mesh.Table) []mesh.Change {
		routes := make([]frame.Route, len(changes))
		for i, c := range changes {
			routes[i] = from.Advert(c)
		}
		return to.Learn(from.Self(), routes)
	}
	route := func(t *mesh.Table) string {
		b, ok := t.Best(billing)
		switch {
		case !ok:
			return "no route"
		case b.Via == "":
			return "local"
		}
		return fmt.Sprintf("via %s, %d µs, path %v", b.Via, b.Cost, b.Path)
	}

	// Links come up, with their measured round trips in microseconds.
	apSouth.LinkUp("eu-west", 120)
	euWest.LinkUp("ap-south", 120)
	usEast.LinkUp("eu-west", 100)
	usEast.LinkUp("ap-south", 300)

	// An instance of billing connects at ap-south; the news spreads.
	local := apSouth.AddLocal(billing)
	send(euWest, send(apSouth, local, euWest), usEast)
	send(apSouth, local, usEast)
	fmt.Println("us-east: ", route(usEast)) // the nearest way, not the shortest path

	// The link to eu-west is lost: us-east reroutes on the direct link.
	usEast.LinkDown("eu-west")
	fmt.Println("us-east: ", route(usEast))

	// eu-west tells ap-south its whole table. Its route to billing runs
	// through ap-south, so ap-south ignores it: when the instance leaves,
	// ap-south has no route, rather than one that loops back through
	// eu-west.
	apSouth.Learn("eu-west", euWest.Adverts())
	apSouth.RemoveLocal(billing)
	fmt.Println("ap-south:", route(apSouth))
	// Output:
	// us-east:  via eu-west, 220 µs, path [ap-south eu-west]
	// us-east:  via ap-south, 300 µs, path [ap-south]
	// ap-south: no route
}
