package router_test

import (
	"fmt"

	"github.com/yomo-dev/yomo/router"
)

// Every function name observing a tag gets each frame once; instances of
// one name take turns; a nearer instance (lower Cost) is preferred; a
// target narrows a frame to the instances that want it.
func Example() {
	r := router.New[string]()
	for _, in := range []router.Instance[string]{
		{ID: 1, Name: "parse", Tags: []router.Tag{0x10}, Dest: "parse-a"},
		{ID: 2, Name: "parse", Tags: []router.Tag{0x10}, Dest: "parse-b"},
		{ID: 3, Name: "parse", Tags: []router.Tag{0x10}, Cost: 40, Dest: "parse-remote"},
		{ID: 4, Name: "audit", Tags: []router.Tag{0x10}, Dest: "audit"},
		{ID: 5, Name: "session", Tags: []router.Tag{0x20}, Target: "alice", Dest: "alice's session"},
		{ID: 6, Name: "session", Tags: []router.Tag{0x20}, Target: "bob", Dest: "bob's session"},
	} {
		if err := r.Add(in); err != nil {
			panic(err)
		}
	}
	t := r.Table() // immutable: publish it to the reader goroutines

	var dst []string // reused: Route does not allocate once it has grown
	for range 3 {
		dst = t.Route(0x10, "", dst[:0])
		fmt.Println(dst)
	}
	fmt.Println(t.Route(0x20, "bob", dst[:0]))

	// When the local instances leave, the remote one takes over.
	r.Remove(1)
	r.Remove(2)
	fmt.Println(r.Table().Route(0x10, "", dst[:0]))
	// Output:
	// [audit parse-a]
	// [audit parse-b]
	// [audit parse-a]
	// [bob's session]
	// [audit parse-remote]
}
