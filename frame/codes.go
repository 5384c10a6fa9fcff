package frame

import (
	"fmt"
	"math"
)

// CloseCode is the application error code a side closes a connection
// with (spec.md §4.1), sent with a human-readable reason.
type CloseCode uint64

// Close codes.
const (
	CloseNormal   CloseCode = 0x0 // normal close: the client reconnects unless it is closing itself
	CloseGoAway   CloseCode = 0x1 // the zipper is going away: reconnect, to the next address if any
	CloseProtocol CloseCode = 0x2 // protocol error (the reason says which): reconnect with backoff
	// CloseLimit: the zipper is at one of its connection limits (total,
	// per address, pending handshakes). It is not a rejection: the client
	// reports the reason and tries again later, with backoff, since the
	// limit is about load, not about who the client is.
	CloseLimit CloseCode = 0x3
	// CloseRejectBase plus a RejectCode closes a rejected connection; see
	// CloseCodeForReject and CloseCode.Reject.
	CloseRejectBase CloseCode = 0x100
)

// closeNames holds the name of every close code below CloseRejectBase;
// CloseCode.String and spec.md's table of close codes derive from it.
var closeNames = [...]string{
	CloseNormal:   "normal",
	CloseGoAway:   "goaway",
	CloseProtocol: "protocol",
	CloseLimit:    "limit",
}

// CloseCodeForReject returns the code that closes a connection rejected
// with code r: CloseRejectBase + r.
func CloseCodeForReject(r RejectCode) CloseCode { return CloseRejectBase + CloseCode(r) }

// Reject returns the rejection code c carries, if c is CloseRejectBase
// plus a RejectCode.
func (c CloseCode) Reject() (RejectCode, bool) {
	if c < CloseRejectBase || c-CloseRejectBase > math.MaxUint16 {
		return 0, false
	}
	return RejectCode(c - CloseRejectBase), true
}

// String returns the name of c: "normal", "goaway", "protocol", "limit",
// "rejected(auth)" for CloseCodeForReject(RejectAuth), or "close(0xNN)"
// for a code without a name.
func (c CloseCode) String() string {
	if c < CloseCode(len(closeNames)) && closeNames[c] != "" {
		return closeNames[c]
	}
	if r, ok := c.Reject(); ok {
		if r.Known() {
			return "rejected(" + r.String() + ")"
		}
		return fmt.Sprintf("rejected(%d)", uint16(r))
	}
	return fmt.Sprintf("close(%#x)", uint64(c))
}

// RejectCode says why a zipper refused a client: the code of a Rejected
// frame, and of a close with CloseCodeForReject.
type RejectCode uint16

// Rejection codes carried by Rejected. A receiver treats a code it does
// not know like RejectDenied.
//
// They are untyped constants, so that they compare with
// yomo.RejectedError.Code (an int) and Rejected.Code (a uint16) as they
// always have; RejectCode(RejectAuth).String() names one.
const (
	RejectBadHandshake = 1 // malformed or incomplete handshake
	RejectVersion      = 2 // unsupported protocol version
	RejectAuth         = 3 // authentication failed
	RejectDenied       = 4 // authorisation or a limit refused the client
	RejectShutdown     = 5 // the zipper is shutting down
)

// rejectNames holds the name of every rejection code; RejectCode.String,
// RejectCode.Known and spec.md's table of rejection codes derive from it.
// The names are those of the zipper's ConnectionStats.RejectedBy.
var rejectNames = [...]string{
	RejectBadHandshake: "bad_handshake",
	RejectVersion:      "version",
	RejectAuth:         "auth",
	RejectDenied:       "denied",
	RejectShutdown:     "shutdown",
}

// Known reports whether r is a rejection code of this protocol version.
func (r RejectCode) Known() bool { return int(r) < len(rejectNames) && rejectNames[r] != "" }

// String returns the name of r ("bad_handshake", "version", "auth",
// "denied", "shutdown"), or "reject(N)" for an unknown code.
func (r RejectCode) String() string {
	if r.Known() {
		return rejectNames[r]
	}
	return fmt.Sprintf("reject(%d)", uint16(r))
}
