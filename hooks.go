package yomo

import (
	"unsafe"

	"github.com/yomo-dev/yomo/frame"
)

// Hooks let a zipper's owner observe and police connections and frames
// (metrics, tracing, custom checks) without forking the library. Every
// field is optional. Hooks run on the zipper's goroutines and must be safe
// for concurrent use; a slow hook slows the connection it runs for.
type Hooks struct {
	// OnConnect runs after a client authenticated, before it is accepted.
	// A non-nil error rejects the client; the error's text is sent to the
	// client as the reason, so it must not contain secrets.
	OnConnect func(info ConnInfo) error
	// OnDisconnect runs once after an accepted client's connection ended,
	// with the reason.
	OnDisconnect func(info ConnInfo, err error)
	// OnFrame runs for every data frame the zipper receives from a client,
	// on that connection's read goroutine, before routing. Returning false
	// drops the frame (counted in Stats.Filtered).
	OnFrame func(f *FrameInfo) bool
}

// WithHooks adds hooks. It may be given several times; hooks of one kind
// run in the order given, and for OnFrame the first false stops the chain.
func WithHooks(h Hooks) ZipperOption {
	return zipperFunc(func(o *zipperOptions) { o.hooks = append(o.hooks, h) })
}

// ConnInfo describes a client connection.
type ConnInfo struct {
	ID   uint64 // assigned by the zipper, unique for its lifetime
	Kind string // "source" or "function"
	Name string
	// Identity is who the client authenticated as (Identity.Name): the
	// Authenticator's answer, else the verified client certificate's name
	// (common name or first SAN), else "token#<n>" for the n-th token of
	// WithAuthToken; "" when the zipper does not authenticate.
	Identity   string
	RemoteAddr string
	Tags       []Tag  // observed tags; do not modify
	Target     string // wanted target
}

// FrameInfo describes a data frame passing through the zipper. It and
// everything it returns are valid only during the hook call.
type FrameInfo struct {
	From *ConnInfo // the client that sent the frame
	Tag  Tag
	Size int // payload bytes
	d    *frame.Data
}

// Target returns the frame's target ("" when none).
func (f *FrameInfo) Target() string { return string(f.d.Target) }

// Metadata returns the value of a metadata key, e.g. "traceparent".
func (f *FrameInfo) Metadata(key string) (string, bool) { return f.d.Metadata.Get(key) }

// Payload returns the frame's payload; valid only during the hook call.
func (f *FrameInfo) Payload() []byte { return f.d.Payload }

func (z *Zipper) connInfo(c *conn) ConnInfo {
	return ConnInfo{
		ID:         c.id,
		Kind:       c.hs.Kind.String(),
		Name:       c.hs.Name,
		Identity:   c.ident,
		RemoteAddr: c.tc.RemoteAddr().String(),
		Tags:       c.hs.ObserveTags,
		Target:     c.hs.WantedTarget,
	}
}

// onConnect runs the OnConnect hooks; the first error rejects.
func (z *Zipper) onConnect(info ConnInfo) error {
	for _, h := range z.opts.hooks {
		if h.OnConnect != nil {
			if err := h.OnConnect(info); err != nil {
				return err
			}
		}
	}
	return nil
}

func (z *Zipper) onDisconnect(info ConnInfo, err error) {
	for _, h := range z.opts.hooks {
		if h.OnDisconnect != nil {
			h.OnDisconnect(info, err)
		}
	}
}

// onFrame runs the OnFrame hooks and reports whether to route the frame.
func (z *Zipper) onFrame(from *conn, d *frame.Data) bool {
	// from.info is set: a zipper with frame hooks has hooks.
	f := FrameInfo{From: from.info, Tag: d.Tag, Size: len(d.Payload), d: d}
	for _, h := range z.frameHooks {
		if !h(&f) {
			return false
		}
	}
	return true
}

// unsafeString views b as a string without copying, for lookups that do not
// retain it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
