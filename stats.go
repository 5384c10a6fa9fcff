package yomo

import (
	"slices"
	"sort"
	"time"

	"github.com/yomo-dev/yomo/frame"
)

// Stats is a snapshot of a zipper's counters. Counters only grow over the
// zipper's lifetime (those of functions that disconnected are kept under
// their function name). It is plain data, ready to export (e.g. as JSON).
type Stats struct {
	Name        string          `json:"name"`
	Connections ConnectionStats `json:"connections"`
	// FramesIn counts data frames received from clients and mesh links.
	// A connection's reader counts the frames of a stream in batches
	// (RATIONALE.md, "Why do readers work in batches?"), each before the
	// batch's last frame is routed: once a frame's effect is seen (a
	// function handled it, a source got its result) and nothing followed
	// it on its stream, it and every frame before it are counted. A frame
	// in the middle of a batch may be routed a moment before it is. The
	// per-connection and per-function counts of frames in are kept the
	// same way.
	FramesIn uint64 `json:"frames_in"`
	// Dropped counts frames for any client dropped because its queue was
	// full or it disconnected with frames still queued, frames a mesh link
	// held that found no path within 2 s of its failure, and MeshStale.
	Dropped uint64 `json:"dropped"`
	// Unroutable counts frames no function observed (and no origin Source
	// wanted back); they are dropped without an error to the writer.
	Unroutable uint64 `json:"unroutable"`
	// ClientDuplicates counts frames from clients dropped because they
	// had been routed already: the client's connection ended before the
	// zipper's Custody covered them, and the client sent them again.
	ClientDuplicates uint64 `json:"client_duplicates"`
	// MeshDuplicates counts frames from mesh links dropped because they
	// had been delivered here already: a link failed before its peer's
	// Custody covered them, and custody sent them again over another path.
	MeshDuplicates uint64 `json:"mesh_duplicates"`
	// MeshGaps counts frames of mesh flows delivered here that never
	// arrived: the frames after them waited for them (up to 3 s, or 1 s
	// for the frames of a flow sent shortly before over another path) and
	// were delivered without them. Each was lost upstream (with a zipper
	// that crashed, or dropped and counted by the zipper that dropped it).
	MeshGaps uint64 `json:"mesh_gaps"`
	// MeshLate counts frames delivered after a later frame of their flow:
	// their gap had been given up on (they left MeshGaps), or the flow's
	// first frame seen here came by a faster path and nothing said to
	// wait for them.
	MeshLate uint64 `json:"mesh_late"`
	// MeshStale counts frames of a writer's mesh flow dropped because they
	// arrived after frames of the writer's newer generation of the flow
	// (started after its zipper lost frames for want of a path); they are
	// also in Dropped. Delivering them would have broken the writer's order.
	MeshStale uint64 `json:"mesh_stale"`
	// MeshHeld is not a counter but the number of mesh frames held here
	// now: waiting at this zipper for a gap in their flow to fill, or
	// routed again from a failed link and waiting for a path. Each leaves
	// it within seconds: delivered, sent on, or dropped and counted.
	MeshHeld int64 `json:"mesh_held"`
	// Datagrams counts the frames of datagram tags (WithDatagramTags)
	// this zipper received and sent in datagrams, and those it dropped or
	// knows were lost. They are not in Dropped, and not reported to
	// functions (DroppedError).
	Datagrams DatagramStats `json:"datagrams"`
	// Filtered counts frames an OnFrame hook dropped.
	Filtered uint64 `json:"filtered"`
	// Denied counts ACL violations: handshakes refused because of an ACL
	// (also in Connections.RejectedBy["denied"]) and data frames written to
	// a tag the writer may not write (each dropped, its connection closed).
	Denied uint64 `json:"denied"`
	// Streams counts body streams (Source.OpenStream).
	Streams StreamStats `json:"streams"`
	// UnroutableByTag breaks Unroutable down by tag.
	UnroutableByTag map[Tag]uint64 `json:"unroutable_by_tag,omitempty"`
	// Functions has one entry per function name, sorted by name.
	Functions []FunctionStats `json:"functions"`
	// Sources has one entry per connected Source name, sorted by name.
	Sources []ClientStats `json:"sources"`
	// Links has one entry per mesh link, sorted by peer name.
	Links []LinkStats `json:"links,omitempty"`
	// Routes lists, for a zipper in a mesh, every function it can reach
	// and where it sends their frames, sorted by tag and name.
	Routes []RouteStats `json:"routes,omitempty"`
}

// StreamStats counts the bodies (Source.OpenStream) a zipper relayed,
// from Sources and from mesh links, each by how it ended: Delivered,
// Unroutable, Refused, Aborted, Lost or Limited. A body relayed by
// several zippers of a mesh is counted by each.
type StreamStats struct {
	// Open is the number of bodies being relayed now.
	Open int64 `json:"open"`
	// Buffered is the number of body bytes in the zipper's relay buffers
	// now: at most 32 KiB per open body, whatever the bodies' sizes (the
	// rest waits in the writers, held back by flow control).
	Buffered int64 `json:"buffered"`
	// Bytes counts body bytes read from writers and links.
	Bytes uint64 `json:"bytes"`
	// Delivered counts bodies every destination read to the end and
	// accepted (its handler returned nil).
	Delivered uint64 `json:"delivered"`
	// Unroutable counts bodies refused at open: nothing observes the tag.
	Unroutable uint64 `json:"unroutable"`
	// Refused counts bodies a destination stopped reading before the end,
	// or whose handler returned an error.
	Refused uint64 `json:"refused"`
	// Aborted counts bodies their writer abandoned.
	Aborted uint64 `json:"aborted"`
	// Lost counts bodies cut by a connection that closed on their path.
	Lost uint64 `json:"lost"`
	// Limited counts bodies refused because a connection already had 64
	// bodies open.
	Limited uint64 `json:"limited"`
}

// RouteStats is the route a mesh zipper uses to reach a function.
type RouteStats struct {
	Tag      Tag    `json:"tag"`
	Function string `json:"function"`
	Target   string `json:"target,omitempty"`
	// Via is the next zipper; "" when an instance is connected here.
	Via string `json:"via,omitempty"`
	// Path lists the zippers from the function's to Via.
	Path []string      `json:"path"`
	Cost time.Duration `json:"cost"` // sum of measured link latencies (in JSON: nanoseconds)
}

// ConnectionStats counts connections.
type ConnectionStats struct {
	Sources   int    `json:"sources"`   // connected now
	Functions int    `json:"functions"` // function instances connected now
	Accepted  uint64 `json:"accepted"`  // handshakes accepted so far
	Rejected  uint64 `json:"rejected"`  // connections refused before being accepted, so far
	// Pending counts network connections in their handshake now.
	Pending int `json:"pending"`
	// RejectedBy breaks Rejected down by cause: "bad_handshake",
	// "version", "auth", "denied" (an ACL, a limit of the handshake, an
	// OnConnect hook), "shutdown", "limit" (a connection limit:
	// WithConnectionLimits, WithMaxPendingHandshakes), "timeout" (no
	// complete handshake within the handshake timeout) and "incomplete"
	// (the peer left before its handshake). Only non-zero counts appear.
	RejectedBy map[string]uint64 `json:"rejected_by,omitempty"`
}

// FunctionStats are the counters of one function name, summed over its
// instances (present and past).
type FunctionStats struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"` // connected now
	// FramesIn counts frames the function wrote to the zipper.
	FramesIn uint64 `json:"frames_in"`
	// FramesOut counts frames written to the function's stream.
	FramesOut uint64 `json:"frames_out"`
	// Dropped counts frames meant for the function that were dropped.
	Dropped uint64 `json:"dropped"`
	// QueuedFrames and QueuedBytes wait in its queues now.
	QueuedFrames int `json:"queued_frames"`
	QueuedBytes  int `json:"queued_bytes"`
	// Tags breaks deliveries down by tag, sorted by tag.
	Tags []TagStats `json:"tags"`
}

// TagStats counts, for one function and tag, frames accepted into its queue
// and frames dropped.
type TagStats struct {
	Tag     Tag    `json:"tag"`
	Queued  uint64 `json:"queued"`
	Dropped uint64 `json:"dropped"`
}

// ClientStats are the counters of one Source name.
type ClientStats struct {
	Name      string `json:"name"`
	Instances int    `json:"instances"`
	FramesIn  uint64 `json:"frames_in"`  // frames it wrote
	FramesOut uint64 `json:"frames_out"` // backflow frames written to it
	Dropped   uint64 `json:"dropped"`    // backflow frames dropped
}

// functionTotals accumulates counters of instances that left.
type functionTotals struct {
	in, out, dropped uint64
	tags             map[Tag]*TagStats
}

func (t *functionTotals) add(c *conn) {
	t.in += c.cnt.framesIn.Load()
	t.out += c.cnt.framesOut.Load()
	t.dropped += c.cnt.dropped.Load()
	for tag, tc := range c.sub.Load().tags {
		t.addTag(tag, tc)
	}
}

func (t *functionTotals) addTag(tag Tag, tc *tagCounters) {
	ts := t.tags[tag]
	if ts == nil {
		ts = &TagStats{Tag: tag}
		t.tags[tag] = ts
	}
	ts.Queued += tc.queued.Load()
	ts.Dropped += tc.dropped.Load()
}

// totalsOf returns the totals of function name's departed instances and
// unsubscribed tags; z.mu is held.
func (z *Zipper) totalsOf(name string) *functionTotals {
	t := z.gone[name]
	if t == nil {
		t = &functionTotals{tags: make(map[Tag]*TagStats)}
		z.gone[name] = t
	}
	return t
}

// Stats returns a snapshot of the zipper's counters.
func (z *Zipper) Stats() Stats {
	z.mu.Lock()
	defer z.mu.Unlock()
	s := Stats{
		Name:       z.name,
		FramesIn:   z.framesIn.Load(),
		Dropped:    z.droppedAll.Load(),
		Unroutable: z.unroutedN.Load(),
		Filtered:   z.filtered.Load(),

		ClientDuplicates: z.clientDups.Load(),

		MeshDuplicates: z.seqDups.Load(),
		MeshGaps:       z.seqGaps.Load(),
		MeshLate:       z.seqLate.Load(),
		MeshStale:      z.seqStale.Load(),
		MeshHeld:       z.meshHeld.Load(),
		Datagrams:      z.dgram.snapshot(),
	}
	b := &z.bodies
	s.Streams = StreamStats{Open: b.open.Load(), Buffered: b.buffered.Load(), Bytes: b.bytes.Load(),
		Delivered: b.delivered.Load(), Unroutable: b.unroutable.Load(), Refused: b.refused.Load(),
		Aborted: b.aborted.Load(), Lost: b.lost.Load(), Limited: b.limited.Load()}
	s.Links = z.linkStatsLocked()
	if z.meshOn.Load() {
		for _, e := range z.mesh.Entries() {
			if e.Key.Kind != frame.RouteFunction {
				continue
			}
			s.Routes = append(s.Routes, RouteStats{Tag: e.Key.Tag, Function: functionName(e.Key.Name), Target: e.Key.Target,
				Via: e.Best.Via, Path: slices.Clone(e.Best.Path), Cost: time.Duration(e.Best.Cost) * time.Microsecond})
		}
	}
	s.Connections.Accepted = z.accepted.Load()
	s.Connections.Rejected = z.rejected.Load()
	s.Connections.RejectedBy = z.rejectedByName()
	s.Connections.Pending = z.pending
	s.Denied = z.denied.Load()
	if len(z.unroutable) > 0 {
		s.UnroutableByTag = make(map[Tag]uint64, len(z.unroutable))
		for k, v := range z.unroutable {
			s.UnroutableByTag[k] = v
		}
	}
	funcs := make(map[string]*FunctionStats)
	tags := make(map[string]map[Tag]*TagStats)
	fn := func(name string) *FunctionStats {
		f := funcs[name]
		if f == nil {
			f = &FunctionStats{Name: name}
			funcs[name] = f
			tags[name] = make(map[Tag]*TagStats)
		}
		return f
	}
	addTag := func(name string, tag Tag, q, d uint64) {
		ts := tags[name][tag]
		if ts == nil {
			ts = &TagStats{Tag: tag}
			tags[name][tag] = ts
		}
		ts.Queued += q
		ts.Dropped += d
	}
	for name, t := range z.gone {
		f := fn(name)
		f.FramesIn += t.in
		f.FramesOut += t.out
		f.Dropped += t.dropped
		for tag, ts := range t.tags {
			addTag(name, tag, ts.Queued, ts.Dropped)
		}
	}
	srcs := make(map[string]*ClientStats)
	for _, c := range z.conns {
		switch c.hs.Kind {
		case frame.KindFunction:
			s.Connections.Functions++
			f := fn(c.hs.Name)
			f.Instances++
			f.FramesIn += c.cnt.framesIn.Load()
			f.FramesOut += c.cnt.framesOut.Load()
			f.Dropped += c.cnt.dropped.Load()
			qf, qb := c.queueDepth()
			f.QueuedFrames += qf
			f.QueuedBytes += qb
			for tag, tc := range c.sub.Load().tags {
				addTag(c.hs.Name, tag, tc.queued.Load(), tc.dropped.Load())
			}
		case frame.KindSource:
			s.Connections.Sources++
			cs := srcs[c.hs.Name]
			if cs == nil {
				cs = &ClientStats{Name: c.hs.Name}
				srcs[c.hs.Name] = cs
			}
			cs.Instances++
			cs.FramesIn += c.cnt.framesIn.Load()
			cs.FramesOut += c.cnt.framesOut.Load()
			cs.Dropped += c.cnt.dropped.Load()
		}
	}
	for name, f := range funcs {
		for _, ts := range tags[name] {
			f.Tags = append(f.Tags, *ts)
		}
		sort.Slice(f.Tags, func(i, j int) bool { return f.Tags[i].Tag < f.Tags[j].Tag })
		s.Functions = append(s.Functions, *f)
	}
	sort.Slice(s.Functions, func(i, j int) bool { return s.Functions[i].Name < s.Functions[j].Name })
	for _, cs := range srcs {
		s.Sources = append(s.Sources, *cs)
	}
	sort.Slice(s.Sources, func(i, j int) bool { return s.Sources[i].Name < s.Sources[j].Name })
	return s
}

// Function returns the stats of the named function, if it is known.
func (s Stats) Function(name string) (FunctionStats, bool) {
	for _, f := range s.Functions {
		if f.Name == name {
			return f, true
		}
	}
	return FunctionStats{}, false
}
