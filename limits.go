package yomo

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/yomo-dev/yomo/frame"
)

// Limits on handshake fields, so that a name cannot bloat logs, Stats or
// the mesh's route advertisements.
const (
	maxNameLen   = 255 // bytes of a client name
	maxTargetLen = 255 // bytes of a wanted target
)

// admission is what a network connection holds of the zipper's connection
// limits while it lives; released by serveConn.
type admission struct {
	ip      netip.Addr
	counted bool // counted in z.live and z.perIP
	pending bool // counted in z.pending
}

// remoteIP returns the IP address of a network peer.
func remoteIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// admitLocked applies the connection limits to a new network connection
// from ip. It returns the reason to refuse it, or "" and records it. z.mu
// is held.
func (z *Zipper) admitLocked(ip netip.Addr) (admission, string) {
	o := &z.opts
	switch {
	case o.maxConns > 0 && z.live >= o.maxConns:
		return admission{}, fmt.Sprintf("too many connections (limit %d)", o.maxConns)
	case o.maxConnsPerIP > 0 && z.perIP[ip] >= o.maxConnsPerIP:
		return admission{}, fmt.Sprintf("too many connections from %s (limit %d)", ip, o.maxConnsPerIP)
	case o.maxPending > 0 && z.pending >= o.maxPending:
		return admission{}, fmt.Sprintf("too many pending handshakes (limit %d)", o.maxPending)
	}
	z.live++
	z.perIP[ip]++
	z.pending++
	return admission{ip: ip, counted: true, pending: true}, ""
}

// handshakeDone releases a's pending handshake slot.
func (z *Zipper) handshakeDone(a *admission) {
	if !a.pending {
		return
	}
	z.mu.Lock()
	z.pending--
	z.mu.Unlock()
	a.pending = false
	select { // wake a Serve loop waiting for a slot
	case z.pendingFree <- struct{}{}:
	default:
	}
}

// release releases everything a holds.
func (z *Zipper) release(a *admission) {
	z.handshakeDone(a)
	if !a.counted {
		return
	}
	z.mu.Lock()
	z.live--
	if n := z.perIP[a.ip] - 1; n > 0 {
		z.perIP[a.ip] = n
	} else {
		delete(z.perIP, a.ip)
	}
	z.mu.Unlock()
	a.counted = false
}

// Why a connection was refused before it was accepted; the keys of
// ConnectionStats.RejectedBy.
const (
	rejectBadHandshake = iota
	rejectVersion
	rejectAuth
	rejectDenied
	rejectShutdown
	rejectLimit
	rejectTimeout
	rejectIncomplete
	numRejectKinds
)

var rejectKindNames = [numRejectKinds]string{
	rejectBadHandshake: "bad_handshake",
	rejectVersion:      "version",
	rejectAuth:         "auth",
	rejectDenied:       "denied",
	rejectShutdown:     "shutdown",
	rejectLimit:        "limit",
	rejectTimeout:      "timeout",
	rejectIncomplete:   "incomplete",
}

// rejectCounters count refusals by kind.
type rejectCounters [numRejectKinds]atomic.Uint64

// countReject counts a refused connection, in total and by kind.
func (z *Zipper) countReject(kind int) {
	z.rejectedBy[kind].Add(1)
	z.rejected.Add(1)
}

// rejectKindOf maps a rejection code to its counter.
func rejectKindOf(code uint16) int {
	switch code {
	case frame.RejectBadHandshake:
		return rejectBadHandshake
	case frame.RejectVersion:
		return rejectVersion
	case frame.RejectAuth:
		return rejectAuth
	case frame.RejectShutdown:
		return rejectShutdown
	}
	return rejectDenied
}

// rejectedByName returns the non-zero refusal counters by name.
func (z *Zipper) rejectedByName() map[string]uint64 {
	var m map[string]uint64
	for i := range z.rejectedBy {
		if n := z.rejectedBy[i].Load(); n > 0 {
			if m == nil {
				m = make(map[string]uint64)
			}
			m[rejectKindNames[i]] = n
		}
	}
	return m
}
