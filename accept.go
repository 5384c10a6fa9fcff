package yomo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/internal/transport"
	"github.com/yomo-dev/yomo/mesh"
	"github.com/yomo-dev/yomo/router"
)

// This file is the zipper's side of a new connection: the handshake
// (validation, authentication, authorisation), registration in the
// routing table, and unregistration when it ends.

func (z *Zipper) serveConn(tc transport.Conn, s *server, adm admission) {
	defer z.wg.Done()
	defer z.release(&adm) // unless serveClient took it over
	c := z.newConn(tc, s)
	done := true // close c.done here, unless serveClient took it over
	defer func() {
		if done {
			close(c.done)
		}
	}()
	rd, err := z.handshake(c)
	z.handshakeDone(&adm)
	if err != nil {
		z.log.Info("client rejected", "remote", tc.RemoteAddr().String(), "identity", c.ident, "reason", err.Error())
		return
	}
	if c.hs.Kind == frame.KindZipper {
		z.log.Info("mesh peer authenticated", "peer", c.hs.Name, "identity", c.ident, "remote", tc.RemoteAddr().String())
		l := z.newLink(c.hs.Name, c, c.ctrl, rd, false)
		if err := z.runLink(l); err != nil && z.ctx.Err() == nil {
			z.log.Info("mesh link down", "peer", l.link.peer, "err", err)
		}
		return
	}
	z.log.Info("client connected", "kind", c.hs.Kind.String(), "name", c.hs.Name, "identity", c.ident, "conn", c.id,
		"remote", tc.RemoteAddr().String())
	c.ctrlRd = rd
	// The client's connection is served on a goroutine of its own, with
	// a new stack: this one's grew during the handshake (decoding,
	// authentication, registration), and the goroutine that reads the
	// control stream of an idle connection for its whole life would keep
	// that stack (BENCHMARKS.md, connection scale).
	z.wg.Add(1)
	go z.serveClient(c, adm) // owned by z: ends when c's connection closes; Close waits on z.wg
	adm, done = admission{}, false
}

// serveClient serves client connection c, whose handshake succeeded, until
// it ends, then unregisters it and releases its admission.
func (z *Zipper) serveClient(c *conn, adm admission) {
	defer z.wg.Done()
	defer z.release(&adm)
	defer close(c.done)
	err := c.serve()
	z.unregister(c)
	if c.info != nil {
		z.onDisconnect(*c.info, err)
	}
	z.log.Info("client disconnected", "kind", c.hs.Kind.String(), "name", c.hs.Name, "identity", c.ident, "conn", c.id, "reason", errString(err))
}

func errString(err error) string {
	if err == nil {
		return "done"
	}
	return err.Error()
}

// rejection is a handshake refusal with the reason sent to the client.
type rejection struct {
	code   uint16
	reason string
}

func (r *rejection) Error() string { return r.reason }

func (z *Zipper) handshake(c *conn) (*frame.Reader, error) {
	timeout := z.opts.handshakeTimeout
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(z.ctx, deadline)
	defer cancel()
	st, err := c.tc.AcceptStream(ctx)
	if err != nil {
		kind, reason := rejectIncomplete, "no handshake: "+err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			kind, reason = rejectTimeout, fmt.Sprintf("no handshake within %v", timeout)
		}
		z.countReject(kind)
		c.tc.CloseWithError(uint64(frame.CloseProtocol), reason)
		return nil, errors.New(reason)
	}
	c.ctrl = st
	st.SetReadDeadline(deadline)
	rd := frame.NewReaderSize(st, frame.MaxControlSize, frame.ControlBufferSize)
	hs, rej := z.readHandshake(rd)
	if rej == nil {
		rej = z.authenticate(ctx, c, hs)
	}
	if rej == nil {
		rej = z.authorize(c, hs)
	}
	if rej == nil {
		rej = z.register(c, hs)
	}
	if rej != nil {
		if rej.code == 0 {
			// Not a verdict on the client: its handshake did not arrive
			// in time. Close without a rejection, so that it may retry.
			z.countReject(rejectTimeout)
			c.tc.CloseWithError(uint64(frame.CloseProtocol), rej.reason)
			return nil, rej
		}
		rej.reason = truncate(rej.reason, maxReasonLen) // e.g. an OnConnect error
		z.countReject(rejectKindOf(rej.code))           // before the client can learn of it
		b, _ := frame.AppendControl(nil, &frame.Rejected{Code: rej.code, Reason: rej.reason})
		st.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = st.Write(b) // best effort: the close carries the reason too
		st.Close()
		c.tc.CloseWithError(uint64(frame.CloseCodeForReject(frame.RejectCode(rej.code))), rej.reason)
		return nil, rej
	}
	st.SetReadDeadline(time.Time{})
	// A source that announces its body streams gets no acceptor until it
	// does (frame.Bodies): an idle source costs one goroutine fewer.
	c.lazyBodies = hs.Kind == frame.KindSource && hs.AnnouncesBodies
	// Likewise a client that announces its data stream gets no reader
	// until it does (frame.DataStream), and one that sends no datagrams
	// none for them: a client that has not written costs two fewer.
	client := hs.Kind == frame.KindSource || hs.Kind == frame.KindFunction
	c.lazyData = client && hs.AnnouncesData
	c.noDatagrams = client && hs.NoDatagrams
	// And the other way: a client that asks for it starts reading our
	// data stream on our DataStream frame (announcingStream).
	c.announceData = client && hs.AnnounceData
	ack, _ := frame.AppendControl(nil, &frame.HandshakeAck{ConnID: c.id, Zipper: z.name, MaxFrameSize: uint32(z.opts.maxFrame),
		Custody: c.writer != nil, AnnounceBodies: c.lazyBodies, AnnounceData: c.lazyData, AnnouncesData: c.announceData})
	st.SetWriteDeadline(deadline)
	if _, err := st.Write(ack); err != nil {
		z.unregister(c)
		c.neverServed()
		c.tc.CloseWithError(uint64(frame.CloseProtocol), "handshake write failed")
		return nil, err
	}
	st.SetWriteDeadline(time.Time{})
	return rd, nil
}

// readHandshake reads and validates the first frame of a control stream.
// A rejection with code 0 is not a verdict on the client (the handshake did
// not arrive in time); every other one is final.
func (z *Zipper) readHandshake(rd *frame.Reader) (*frame.Handshake, *rejection) {
	t, body, err := rd.Next()
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &rejection{0, fmt.Sprintf("no complete handshake within %v", z.opts.handshakeTimeout)}
		}
		if errors.Is(err, io.EOF) {
			return nil, &rejection{frame.RejectBadHandshake, "bad handshake: control stream ended before a handshake"}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &rejection{frame.RejectBadHandshake, "bad handshake: truncated frame"}
		}
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: " + err.Error()}
	}
	if t != frame.TypeHandshake {
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: first frame is " + t.String()}
	}
	v, err := frame.DecodeControl(t, body)
	if err != nil {
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: " + err.Error()}
	}
	hs := v.(*frame.Handshake)
	switch {
	case hs.Version != frame.ProtocolVersion:
		return nil, &rejection{frame.RejectVersion, fmt.Sprintf("unsupported protocol version %d (zipper speaks %d)", hs.Version, frame.ProtocolVersion)}
	case hs.Name == "":
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: empty name"}
	case strings.IndexByte(hs.Name, broadcastSep) >= 0:
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: name contains a NUL byte"}
	case len(hs.Name) > maxNameLen:
		return nil, &rejection{frame.RejectBadHandshake, fmt.Sprintf("bad handshake: name of %d bytes (limit %d)", len(hs.Name), maxNameLen)}
	case len(hs.WantedTarget) > maxTargetLen:
		return nil, &rejection{frame.RejectBadHandshake, fmt.Sprintf("bad handshake: target of %d bytes (limit %d)", len(hs.WantedTarget), maxTargetLen)}
	case hs.Kind != frame.KindSource && hs.Kind != frame.KindFunction && hs.Kind != frame.KindZipper:
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: unsupported client kind " + hs.Kind.String()}
	case len(hs.ObserveTags) > z.opts.maxTags:
		return nil, &rejection{frame.RejectDenied, fmt.Sprintf("too many observed tags: %d (limit %d)", len(hs.ObserveTags), z.opts.maxTags)}
	case hs.Kind == frame.KindFunction && len(hs.ObserveTags) == 0:
		return nil, &rejection{frame.RejectBadHandshake, "bad handshake: a function must observe at least one tag"}
	}
	return hs, nil
}

func (z *Zipper) register(c *conn, hs *frame.Handshake) *rejection {
	c.hs = hs
	if hs.Resumed && z.opts.reconnectGrace > 0 {
		c.graceUntil = nanotime() + int64(z.opts.reconnectGrace)
	}
	if hs.Kind == frame.KindZipper {
		z.mu.Lock()
		z.nextConnID++
		c.id = z.nextConnID
		z.mu.Unlock()
		return nil // a mesh link: registered by runLink
	}
	if m := int(hs.MaxFrameSize); m > 0 && m < z.opts.maxFrame {
		c.recvMax = m
	}
	c.sub.Store(newSubscription(hs.ObserveTags, hs.WantedTarget, nil))
	z.mu.Lock()
	z.nextConnID++
	c.id = z.nextConnID
	z.mu.Unlock()
	if len(z.opts.hooks) > 0 {
		info := z.connInfo(c)
		c.info = &info
		if err := z.onConnect(info); err != nil {
			return &rejection{frame.RejectDenied, err.Error()}
		}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed || z.draining {
		return &rejection{frame.RejectShutdown, "zipper is shutting down"}
	}
	if (hs.Kind == frame.KindFunction || hs.Custody) && !z.reporting {
		z.reporting = true
		z.wg.Add(1)
		go z.report() // owned by z: ends when Close cancels z.ctx
	}
	switch hs.Kind {
	case frame.KindFunction:
		c.group = hs.Name
		if hs.Broadcast {
			// A group of its own, with a name stable across reconnections
			// and zippers: every instance gets every frame, mesh-wide.
			c.group = fmt.Sprintf("%s%c%016x", hs.Name, broadcastSep, hs.ID)
		}
		c.dst = &dest{conn: c, name: c.group}
		err := z.router.Add(router.Instance[*dest]{ID: c.id, Name: c.group, Tags: hs.ObserveTags, Target: hs.WantedTarget, Dest: c.dst, Key: hs.ID})
		if err != nil {
			return &rejection{frame.RejectBadHandshake, err.Error()}
		}
		if !hs.Broadcast {
			c.inst = instanceName(hs.Name, hs.ID)
			c.instDst = &dest{conn: c, name: c.inst}
			z.addInstanceLocked(c, hs.ObserveTags, hs.WantedTarget)
		}
		z.storeTableLocked()
		for _, k := range c.meshKeys() {
			z.applyChangesLocked(z.mesh.AddLocal(k))
		}
	case frame.KindSource:
		z.sources.Store(hs.ID, c) // a reconnecting source replaces its stale connection
		z.signalTableLocked()     // backflow held for it may go now
	}
	z.attachWriter(c, hs)
	z.conns[c.id] = c
	z.accepted.Add(1)
	return nil
}

func (z *Zipper) unregister(c *conn) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.conns[c.id]; !ok {
		return
	}
	delete(z.conns, c.id)
	if c.writer != nil {
		z.writers.detach(c)
	}
	switch c.hs.Kind {
	case frame.KindFunction:
		z.router.Remove(c.id)
		z.instRouter.Remove(c.id)
		z.storeTableLocked()
		for _, k := range c.meshKeys() {
			z.applyChangesLocked(z.mesh.RemoveLocal(k))
		}
	case frame.KindSource:
		z.sources.CompareAndDelete(c.hs.ID, c) // unless a newer connection replaced it
	}
	c.closeQueue()
	if c.hs.Kind == frame.KindFunction {
		z.totalsOf(c.hs.Name).add(c)
	}
}

// meshKeys are the destinations a function instance offers the mesh.
func (c *conn) meshKeys() []mesh.Key { return c.sub.Load().meshKeys(c.group, c.inst) }

// instanceName is the name of a function instance in the instance table
// and in RouteInstance advertisements: the function name, MemberSep, and
// the instance id in 16 hex digits.
func instanceName(fn string, id uint64) string {
	return fmt.Sprintf("%s%c%016x", fn, router.MemberSep, id)
}

// instanceKey is the id in an instance name (0 when it has none).
func instanceKey(name string) uint64 {
	i := strings.LastIndexByte(name, router.MemberSep)
	if i < 0 {
		return 0
	}
	id, _ := strconv.ParseUint(name[i+1:], 16, 64)
	return id
}

// addInstanceLocked puts c in the instance table with tags and target;
// z.mu is held.
func (z *Zipper) addInstanceLocked(c *conn, tags []Tag, target string) {
	if c.inst == "" || len(tags) == 0 {
		return
	}
	_ = z.instRouter.Add(router.Instance[*dest]{ID: c.id, Name: c.inst, Tags: tags, Target: target, Dest: c.instDst, Key: c.hs.ID})
}

// broadcastSep separates a function name from the instance id in the group
// name of a broadcast instance; names may not contain it.
const broadcastSep = 0

// functionName is the function name of a group name.
func functionName(group string) string {
	if i := strings.IndexByte(group, broadcastSep); i >= 0 {
		return group[:i]
	}
	return group
}

// meshKeys are the routes a function instance offers the mesh: its group,
// and itself for keyed routing (inst, unless it broadcasts).
func (s *subscription) meshKeys(group, inst string) []mesh.Key {
	keys := make([]mesh.Key, 0, 2*len(s.tags))
	for tag := range s.tags {
		keys = append(keys, mesh.Key{Kind: frame.RouteFunction, Tag: tag, Name: group, Target: s.target})
		if inst != "" {
			keys = append(keys, mesh.Key{Kind: frame.RouteInstance, Tag: tag, Name: inst, Target: s.target})
		}
	}
	return keys
}

// newSubscription returns a subscription to tags and target, keeping the
// counters old has for tags it observed already.
func newSubscription(tags []Tag, target string, old *subscription) *subscription {
	s := &subscription{target: target}
	if len(tags) == 0 {
		return s // no map: a source that observes nothing has none to keep
	}
	s.tags = make(map[Tag]*tagCounters, len(tags))
	for _, t := range tags {
		if old != nil && old.tags[t] != nil {
			s.tags[t] = old.tags[t]
		} else {
			s.tags[t] = new(tagCounters)
		}
	}
	return s
}

// resubscribe applies a Subscribe from client c: checks it like a
// handshake, swaps the subscription, and updates the routing table and
// the mesh. It returns why it refused, or "".
func (z *Zipper) resubscribe(c *conn, sub *frame.Subscribe) string {
	switch {
	case len(sub.ObserveTags) > z.opts.maxTags:
		return fmt.Sprintf("too many observed tags: %d (limit %d)", len(sub.ObserveTags), z.opts.maxTags)
	case len(sub.WantedTarget) > maxTargetLen:
		return fmt.Sprintf("target of %d bytes (limit %d)", len(sub.WantedTarget), maxTargetLen)
	}
	if acl := c.acl; acl != nil && acl.Observe != nil {
		for _, t := range sub.ObserveTags {
			if !slices.Contains(acl.Observe, t) {
				z.denied.Add(1)
				return fmt.Sprintf("identity %q may not observe tag %d", c.ident, t)
			}
		}
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	if _, ok := z.conns[c.id]; !ok {
		return "connection closing"
	}
	old := c.sub.Load()
	next := newSubscription(sub.ObserveTags, sub.WantedTarget, old)
	if c.hs.Kind == frame.KindFunction {
		z.router.Remove(c.id)
		if len(sub.ObserveTags) > 0 {
			err := z.router.Add(router.Instance[*dest]{ID: c.id, Name: c.group, Tags: sub.ObserveTags, Target: sub.WantedTarget, Dest: c.dst, Key: c.hs.ID})
			if err != nil {
				// Put the old one back: nothing changed.
				_ = z.router.Add(router.Instance[*dest]{ID: c.id, Name: c.group, Tags: tagsOf(old), Target: old.target, Dest: c.dst, Key: c.hs.ID})
				return err.Error()
			}
		}
		c.sub.Store(next)
		z.instRouter.Remove(c.id)
		z.addInstanceLocked(c, sub.ObserveTags, sub.WantedTarget)
		z.storeTableLocked()
		oldKeys, newKeys := old.meshKeys(c.group, c.inst), next.meshKeys(c.group, c.inst)
		for _, k := range newKeys {
			if !slices.Contains(oldKeys, k) {
				z.applyChangesLocked(z.mesh.AddLocal(k))
			}
		}
		for _, k := range oldKeys {
			if !slices.Contains(newKeys, k) {
				z.applyChangesLocked(z.mesh.RemoveLocal(k))
			}
		}
		// Counters of the tags it no longer observes go to the function's
		// totals, as when an instance leaves.
		for t, tc := range old.tags {
			if next.tags[t] == nil {
				z.totalsOf(c.hs.Name).addTag(t, tc)
			}
		}
	} else {
		c.sub.Store(next)
		z.signalTableLocked() // backflow held for it may go now
	}
	return ""
}

func tagsOf(s *subscription) []Tag {
	out := make([]Tag, 0, len(s.tags))
	for t := range s.tags {
		out = append(out, t)
	}
	return out
}
