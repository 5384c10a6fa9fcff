// Package router decides which stream function instances receive a data
// frame.
//
// A frame has a [Tag] and an optional target. The router delivers it as
// follows:
//
//   - Every function name observing the tag gets the frame once. Instances
//     sharing a name form a group, and each frame goes to exactly one
//     instance of the group.
//   - Within a group only the instances with the lowest Cost are candidates
//     (0 is local; larger is farther, e.g. behind a mesh link). Candidates
//     take turns, round robin.
//   - A frame with a non-empty target goes only to instances whose Target
//     equals it, and a group with no such instance is skipped. A frame with
//     an empty target may go to any instance of the group, whatever its
//     Target. The lowest cost is taken among the instances that qualify.
//   - Tags nobody observes route to nothing.
//
// The package is a pure data structure: it does no I/O, starts no
// goroutines, reads no clock and logs nothing.
//
// # Lifecycle
//
// The owner (the zipper) keeps one [Router] and serialises every call to it.
// After each mutation (or batch of mutations) it publishes the [Table]
// returned by [Router.Table], an immutable snapshot, for instance through an
// atomic.Pointer. Any number of reader goroutines load the current Table and
// call [Table.Route], each reusing its own destination slice so that routing
// does not allocate:
//
//	type Owner struct {
//		mu     sync.Mutex
//		r      *router.Router[*Conn]
//		routes atomic.Pointer[router.Table[*Conn]]
//	}
//
//	func (o *Owner) Connect(in router.Instance[*Conn]) error {
//		o.mu.Lock()
//		defer o.mu.Unlock()
//		if err := o.r.Add(in); err != nil {
//			return err
//		}
//		o.routes.Store(o.r.Table())
//		return nil
//	}
//
//	func (o *Owner) Disconnect(id uint64) {
//		o.mu.Lock()
//		defer o.mu.Unlock()
//		if o.r.Remove(id) {
//			o.routes.Store(o.r.Table())
//		}
//	}
//
//	// Each reader goroutine:
//	var dst []*Conn
//	for f := range frames {
//		dst = o.routes.Load().Route(f.Tag, f.Target, dst[:0])
//		for _, c := range dst {
//			c.Write(f)
//		}
//	}
//
// A nil *Table routes nothing, so readers may start before the first Store.
// A reader holding an older Table keeps routing by it until it loads the
// next one; the owner must therefore tolerate a frame reaching a
// destination that was removed a moment before.
package router
