package yomo

import (
	"context"
	"unsafe"

	"github.com/yomo-dev/yomo/frame"
)

// StreamFunction handles the frames of the tags it observes, and may
// write results that flow on to other functions and back to the Source
// that started the chain.
//
// Configure it (SetObserveDataTags, SetWantedTarget, SetHandler,
// SetErrorHandler) before Connect. Its handler is called on one goroutine,
// for one frame at a time, in arrival order (frames from one Source with
// one tag arrive in write order). After Connect it reconnects by itself
// when the connection is lost; Close stops it.
type StreamFunction struct {
	c       *client
	handler Handler
	hctx    fnContext
}

// NewStreamFunction returns a function named name for the zipper at
// zipperAddr. Instances sharing a name share the load of their tags. It
// does no I/O; invalid options are reported by Connect.
func NewStreamFunction(name, zipperAddr string, opts ...ClientOption) *StreamFunction {
	f := &StreamFunction{c: newClient(frame.KindFunction, name, zipperAddr, opts)}
	f.hctx.f = f
	f.c.onData = f.onData
	return f
}

// SetObserveDataTags sets the tags the function handles. Call it before
// Connect.
func (f *StreamFunction) SetObserveDataTags(tags ...Tag) { f.c.setTags(tags) }

// SetWantedTarget makes the function receive, besides untargeted frames,
// the frames written with this target (and no other targeted frames).
// Call it before Connect.
func (f *StreamFunction) SetWantedTarget(target string) {
	f.c.mu.Lock()
	f.c.target = target
	f.c.mu.Unlock()
}

// SetHandler sets the handler. Call it before Connect.
func (f *StreamFunction) SetHandler(fn Handler) error {
	if fn == nil {
		return ErrNoHandler
	}
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.c.state != stateIdle {
		return ErrAlreadyConnected
	}
	f.handler = fn
	return nil
}

// SetErrorHandler sets the function that receives asynchronous errors:
// lost connections, a final rejection, a handler's panic. It is called
// from the function's goroutines and should return quickly. Without one,
// errors are logged.
func (f *StreamFunction) SetErrorHandler(fn func(err error)) { f.c.setErrorHandler(fn) }

// Connect connects to the zipper and returns once the zipper accepted the
// handshake, or with the error (see Source.Connect). It needs a handler
// and at least one observed tag.
func (f *StreamFunction) Connect(ctx context.Context) error {
	f.c.mu.Lock()
	h := f.handler
	f.c.mu.Unlock()
	if h == nil {
		return ErrNoHandler
	}
	return f.c.connect(ctx)
}

// Close closes the connection, stops reconnecting and waits for the
// function's goroutines, including a running handler. Idempotent.
func (f *StreamFunction) Close() error { return f.c.close() }

func (f *StreamFunction) onData(d *frame.Data) {
	defer func() {
		if v := recover(); v != nil {
			f.c.recovered(v)
		}
	}()
	f.hctx.d = d
	f.handler(&f.hctx)
	f.hctx.d = nil
}

// fnContext is the Context of a handler call; one is reused for every call.
type fnContext struct {
	f *StreamFunction
	d *frame.Data
}

func (x *fnContext) Tag() Tag     { return x.d.Tag }
func (x *fnContext) Data() []byte { return x.d.Payload }
func (x *fnContext) Metadata(key string) (string, bool) {
	return x.d.Metadata.Get(key)
}

func (x *fnContext) Write(tag Tag, data []byte) error {
	return x.WriteWithTarget(tag, data, "")
}

func (x *fnContext) WriteWithTarget(tag Tag, data []byte, target string) error {
	if x.d == nil {
		return errContextDone
	}
	out := frame.Data{
		Tag:      tag,
		Target:   unsafe.Slice(unsafe.StringData(target), len(target)), // read only
		Origin:   x.d.Origin,
		TID:      x.d.TID,
		Metadata: x.d.Metadata,
		Payload:  data,
	}
	return x.f.c.write(&out)
}
