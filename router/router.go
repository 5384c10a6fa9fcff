package router

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// Tag identifies the kind of a data frame. It is a plain alias of uint32 so
// that values of the frame package's tag type convert freely.
type Tag = uint32

// Errors returned by [Router.Add]. They are wrapped with the offending
// instance's ID; test for them with [errors.Is].
var (
	// ErrDuplicateID means an instance with the same ID is already in the
	// Router.
	ErrDuplicateID = errors.New("duplicate instance ID")
	// ErrEmptyName means the instance has no function name.
	ErrEmptyName = errors.New("empty function name")
)

// Instance is one connected function instance, as given to [Router.Add].
//
// An Instance is a plain value: Add copies it (including Tags), so the caller
// may reuse or modify it afterwards.
type Instance[D any] struct {
	// ID identifies the instance; it must be unique among the instances of
	// a Router.
	ID uint64
	// Name is the function name. It is required. Instances that share a
	// name form a group: each frame routed to the group goes to exactly one
	// of them.
	Name string
	// Tags are the observed tags. Duplicates are ignored; an instance with
	// no tags is kept (and counted by Len) but receives nothing.
	Tags []Tag
	// Target is the target the instance wants, "" for none. A frame with a
	// non-empty target goes only to instances whose Target equals it; a
	// frame with an empty target may go to any instance.
	Target string
	// Cost is the distance to the instance: 0 for a local instance, larger
	// for farther ones (for example behind a mesh link). Within a group only
	// the instances with the lowest cost are candidates.
	Cost uint32
	// Dest is opaque to the router and is what [Table.Route] returns for
	// the instance.
	Dest D
	// Key is the instance's stable identity for keyed routing
	// ([Table.RouteKey]): it should stay the same across the instance's
	// reconnections, so that its keys stay with it. 0 means ID.
	Key uint64
}

// entry is the Router's private copy of an Instance; tags are sorted and
// duplicate-free.
type entry[D any] struct {
	id     uint64
	name   string
	tags   []Tag
	target string
	cost   uint32
	dest   D
	key    uint64
}

// Router holds the set of connected function instances and derives routing
// [Table]s from it.
//
// A Router is not safe for concurrent use: its owner must serialise all
// calls (mutations and [Router.Table] alike). Tables it returns are
// immutable and may be shared freely with other goroutines.
//
// The zero Router is not usable; create one with [New].
type Router[D any] struct {
	entries map[uint64]*entry[D]
	// byTag indexes entries by observed tag.
	byTag map[Tag]map[uint64]*entry[D]
	// dirty holds the tags whose routes changed since table was built.
	dirty map[Tag]struct{}
	// changed reports whether anything (including Len) changed since table
	// was built.
	changed bool
	// table is the last Table returned by Table; never nil.
	table *Table[D]
}

// New returns an empty Router.
func New[D any]() *Router[D] {
	return &Router[D]{
		entries: make(map[uint64]*entry[D]),
		byTag:   make(map[Tag]map[uint64]*entry[D]),
		dirty:   make(map[Tag]struct{}),
		table:   &Table[D]{},
	}
}

// Add adds an instance. It fails, leaving the Router unchanged, with an error
// wrapping [ErrEmptyName] if in.Name is empty and with one wrapping
// [ErrDuplicateID] if an instance with in.ID is already present. Add copies
// in.Tags.
func (r *Router[D]) Add(in Instance[D]) error {
	if in.Name == "" {
		return fmt.Errorf("router: add instance %d: %w", in.ID, ErrEmptyName)
	}
	if _, ok := r.entries[in.ID]; ok {
		return fmt.Errorf("router: add instance %d: %w", in.ID, ErrDuplicateID)
	}
	tags := slices.Clone(in.Tags)
	slices.Sort(tags)
	tags = slices.Clip(slices.Compact(tags))
	e := &entry[D]{
		id:     in.ID,
		name:   in.Name,
		tags:   tags,
		target: in.Target,
		cost:   in.Cost,
		dest:   in.Dest,
		key:    cmp.Or(in.Key, in.ID),
	}
	r.entries[e.id] = e
	for _, tag := range e.tags {
		set := r.byTag[tag]
		if set == nil {
			set = make(map[uint64]*entry[D])
			r.byTag[tag] = set
		}
		set[e.id] = e
	}
	r.touch(e)
	return nil
}

// Remove removes the instance with the given ID. It reports whether the
// instance was present.
func (r *Router[D]) Remove(id uint64) bool {
	e, ok := r.entries[id]
	if !ok {
		return false
	}
	delete(r.entries, id)
	for _, tag := range e.tags {
		set := r.byTag[tag]
		delete(set, id)
		if len(set) == 0 {
			delete(r.byTag, tag)
		}
	}
	r.touch(e)
	return true
}

// Update sets the cost of the instance with the given ID, for example when a
// mesh link's distance changes. It reports whether the instance was present.
func (r *Router[D]) Update(id uint64, cost uint32) bool {
	e, ok := r.entries[id]
	if !ok {
		return false
	}
	if e.cost != cost {
		// Entries are shared with the index only, never with a Table, so
		// they may be modified in place.
		e.cost = cost
		r.touch(e)
	}
	return true
}

// touch records that e's tags must be rebuilt.
func (r *Router[D]) touch(e *entry[D]) {
	r.changed = true
	for _, tag := range e.tags {
		r.dirty[tag] = struct{}{}
	}
}

// Len returns the number of instances.
func (r *Router[D]) Len() int { return len(r.entries) }

// Table returns an immutable snapshot of the current state. Later mutations
// of r do not affect it. While r is unchanged, Table returns the same
// *Table.
//
// Table rebuilds only the routes of the tags affected by mutations since the
// previous call; routes of the other tags (including their round-robin
// counters) are shared with the previous Table.
func (r *Router[D]) Table() *Table[D] {
	if !r.changed {
		return r.table
	}
	prev := r.table
	t := &Table[D]{
		untargeted: maps.Clone(prev.untargeted),
		targeted:   maps.Clone(prev.targeted),
		n:          len(r.entries),
	}
	if t.untargeted == nil {
		t.untargeted = make(map[Tag]*route[D])
	}
	if t.targeted == nil {
		t.targeted = make(map[tagTarget]*route[D])
	}
	var buf []*entry[D]
	for tag := range r.dirty {
		if old := t.untargeted[tag]; old != nil {
			for _, target := range old.targets {
				delete(t.targeted, tagTarget{tag, target})
			}
			delete(t.untargeted, tag)
		}
		set := r.byTag[tag]
		if len(set) == 0 {
			continue
		}
		buf = buf[:0]
		for _, e := range set {
			buf = append(buf, e)
		}
		t.build(tag, buf)
	}
	clear(r.dirty)
	r.changed = false
	r.table = t
	return t
}
