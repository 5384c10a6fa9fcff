package yomotest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/yomo-dev/yomo"
)

// Context is a yomo.Context, and a yomo.MessageContext, for unit tests of
// handlers: it serves the frame it was made with and records what the
// handler writes. Create it with NewContext; its zero value is a context
// for an empty frame of tag 0.
//
// Unlike the Context a StreamFunction passes, it stays valid after the
// handler returns, so a test can inspect it. It is safe for concurrent use
// (handlers may write from several goroutines).
type Context struct {
	in      yomo.Message
	tid     string
	mu      sync.Mutex
	written []yomo.Message
	err     error
}

var _ yomo.MessageContext = (*Context)(nil)

// NewContext returns a Context for a handler call on the frame m. The
// context keeps m's fields; it copies m.Data and m.Metadata.
func NewContext(m yomo.Message) *Context {
	m.Data = slices.Clone(m.Data)
	m.Metadata = maps.Clone(m.Metadata)
	return &Context{in: m, tid: "yomotest-1"}
}

// SetTID sets what TID returns ("yomotest-1" by default).
func (c *Context) SetTID(tid string) { c.tid = tid }

// FailWrites makes every later write return err (nil: writes succeed
// again), as a real write fails when the function is closed or its queue
// stays full.
func (c *Context) FailWrites(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Tag is the frame's tag.
func (c *Context) Tag() yomo.Tag { return c.in.Tag }

// Data is the frame's payload.
func (c *Context) Data() []byte { return c.in.Data }

// Metadata returns a metadata value of the frame.
func (c *Context) Metadata(key string) (string, bool) {
	v, ok := c.in.Metadata[key]
	return v, ok
}

// TID identifies the origin write (see SetTID).
func (c *Context) TID() string { return c.tid }

// Key is the frame's affinity key.
func (c *Context) Key() string { return c.in.Key }

// Write records a result with tag and data (copied).
func (c *Context) Write(tag yomo.Tag, data []byte) error {
	return c.WriteMessage(yomo.Message{Tag: tag, Data: data})
}

// WriteWithTarget records a result with a target.
func (c *Context) WriteWithTarget(tag yomo.Tag, data []byte, target string) error {
	return c.WriteMessage(yomo.Message{Tag: tag, Data: data, Target: target})
}

// WriteMessage records m as the library would send it: with the frame's
// metadata (m's entries added or replacing) and, when m.Key is empty, the
// frame's key.
func (c *Context) WriteMessage(m yomo.Message) error {
	if len(m.Metadata) > maxMetadata {
		return fmt.Errorf("yomotest: %d metadata entries, limit %d", len(m.Metadata), maxMetadata)
	}
	out := yomo.Message{Tag: m.Tag, Data: slices.Clone(m.Data), Target: m.Target, Key: m.Key}
	if out.Key == "" {
		out.Key = c.in.Key
	}
	if len(c.in.Metadata)+len(m.Metadata) > 0 {
		out.Metadata = maps.Clone(c.in.Metadata)
		if out.Metadata == nil {
			out.Metadata = make(map[string]string, len(m.Metadata))
		}
		maps.Copy(out.Metadata, m.Metadata)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.written = append(c.written, out)
	return nil
}

// Written returns the messages written so far, in order.
func (c *Context) Written() []yomo.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.written)
}

// maxMetadata mirrors the library's limit on metadata entries.
const maxMetadata = 64

// ErrWrite is a convenient error for FailWrites.
var ErrWrite = errors.New("yomotest: write failed")
