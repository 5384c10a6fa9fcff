package yomo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/yomo-dev/yomo/frame"
	"github.com/yomo-dev/yomo/router"
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
	hmu     sync.RWMutex // held for reading by the workers' handler calls; SetHandler writes
	handler Handler      // written under hmu and c.handleMu; read under either
	hctx    fnContext
	workers *workers // with WithHandlerConcurrency(n > 1)

	shandler atomic.Pointer[StreamHandler] // SetStreamHandler; nil: bodies are refused
}

// NewStreamFunction returns a function named name for the zipper at
// zipperAddr (host:port, or several separated by commas, as for
// NewSource). Instances sharing a name share the load of their tags. It
// does no I/O; invalid options are reported by Connect.
func NewStreamFunction(name, zipperAddr string, opts ...ClientOption) *StreamFunction {
	f := &StreamFunction{c: newClient(frame.KindFunction, name, zipperAddr, opts)}
	f.hctx.f = f
	f.c.onData = f.onData
	f.c.onBody = f.handleBody
	return f
}

// SetObserveDataTags sets the tags the function handles. It may be called
// at any time: after Connect it returns once the zipper routes the new
// tags to it (and no more the dropped ones) for every frame it routes from
// then on, and the mesh learns of it; no reconnection, and frames already
// queued for it are still handled. A refusal (its ACL, the tag limit), or
// no answer within the handshake timeout, goes to the error handler and
// the zipper keeps the previous tags. With no tag, the function stays
// connected and receives nothing.
func (f *StreamFunction) SetObserveDataTags(tags ...Tag) {
	f.c.setTags(tags)
	if err := f.c.resubscribe(); err != nil {
		f.c.report(err)
	}
}

// SetWantedTarget makes the function receive, besides untargeted frames,
// the frames written with this target (and no other targeted frames). Like
// SetObserveDataTags, it may be called at any time.
func (f *StreamFunction) SetWantedTarget(target string) {
	f.c.mu.Lock()
	f.c.target = target
	f.c.subVer++
	f.c.mu.Unlock()
	if err := f.c.resubscribe(); err != nil {
		f.c.report(err)
	}
}

// State returns the function's connection state.
func (f *StreamFunction) State() State { return f.c.state() }

// SetStateHandler sets a function told of every change of the connection
// state (see Source.SetStateHandler).
func (f *StreamFunction) SetStateHandler(fn func(StateChange)) { f.c.setStateHandler(fn) }

// Flush returns once the zipper has read every result written before the
// call (see Source.Flush).
func (f *StreamFunction) Flush(ctx context.Context) error { return f.c.flush(ctx) }

// Shutdown is Close with a drain that ctx bounds: it flushes the results
// written so far (Flush), then closes. It returns Flush's error (ctx's,
// when it ended first); the function is closed either way.
func (f *StreamFunction) Shutdown(ctx context.Context) error {
	err := f.c.flush(ctx)
	if errors.Is(err, ErrNotConnected) || errors.Is(err, ErrClosed) {
		err = nil
	}
	_ = f.Close() // never fails
	return err
}

// SetHandler sets the handler; nil returns ErrNoHandler. It may be called
// at any time, also to swap the handler of a connected function (a new
// version, a reloaded WebAssembly module) without reconnecting: it waits
// for the calls of the previous handler in progress to return, and once
// it returns every frame not yet handled goes to fn, each frame to
// exactly one handler, and no call of the previous one starts. So the
// previous handler's resources may be released when SetHandler returns.
// Do not call it from a handler: it would wait for itself.
//
// A handler that panics is recovered; the panic is reported to the error
// handler as a *PanicError and the function goes on with the next frame.
func (f *StreamFunction) SetHandler(fn Handler) error {
	if fn == nil {
		return ErrNoHandler
	}
	f.c.handleMu.Lock() // the calls on the read goroutines (callHeld)
	f.hmu.Lock()        // the workers' calls (call)
	f.handler = fn
	f.hmu.Unlock()
	f.c.handleMu.Unlock()
	return nil
}

// SetErrorHandler sets the function that receives asynchronous errors:
// lost connections, a final rejection, a handler's panic. It is called
// from the function's goroutines and should return quickly. Without one,
// errors are logged.
func (f *StreamFunction) SetErrorHandler(fn func(err error)) { f.c.setErrorHandler(fn) }

// Connect connects to the zipper and returns once the zipper accepted the
// handshake, or with the error (see Source.Connect). It needs a handler
// and at least one observed tag. The handler is a frame handler
// (SetHandler), a stream handler (SetStreamHandler), or both; frames
// that arrive for a function with no frame handler are reported to the
// error handler and not handled.
func (f *StreamFunction) Connect(ctx context.Context) error {
	f.hmu.RLock()
	h := f.handler
	f.hmu.RUnlock()
	if h == nil && f.shandler.Load() == nil {
		return ErrNoHandler
	}
	var started *workers
	if n := f.c.opts.concurrency; n > 1 {
		f.c.mu.Lock()
		if f.c.state() == StateIdle && f.workers == nil {
			started = startWorkers(f, n, f.c.opts.unordered)
			f.workers = started
		}
		f.c.mu.Unlock()
	}
	err := f.c.connect(ctx)
	if err != nil && started != nil {
		f.c.mu.Lock()
		f.workers = nil
		f.c.mu.Unlock()
		started.stop()
	}
	return err
}

// Close sends the results still queued and handles the frames the zipper
// still has for the function (waiting at most 2 s for both), closes the
// connection, stops reconnecting and waits for the function's goroutines,
// including the handler calls in progress. Frames not handled by then are
// discarded, not handed to the handler, so a slow handler delays Close by
// at most its current call. Idempotent.
func (f *StreamFunction) Close() error {
	err := f.c.close()
	f.c.mu.Lock()
	w := f.workers
	f.c.mu.Unlock()
	if w != nil {
		w.stop()
	}
	return err
}

func (f *StreamFunction) onData(d *frame.Data) {
	if f.workers != nil {
		f.workers.dispatch(d)
		return
	}
	f.callHeld(&f.hctx, d) // under f.c.handleMu (client.handle, readData)
}

// call runs the handler for one frame on a worker.
func (f *StreamFunction) call(x *fnContext, d *frame.Data) {
	f.hmu.RLock() // SetHandler waits for this call
	defer f.hmu.RUnlock()
	f.callHeld(x, d)
}

// callHeld runs the handler for one frame, turning a panic into a report.
// f.hmu or f.c.handleMu is held, so that SetHandler waits for the call:
// the read goroutines hold handleMu (across a batch of frames on the data
// stream, one lock for many calls), the workers hmu.
func (f *StreamFunction) callHeld(x *fnContext, d *frame.Data) {
	defer func() {
		if v := recover(); v != nil {
			f.c.recovered(v)
			if d.TID&frame.TIDRequest != 0 {
				f.answerPanic(d, v)
			}
		}
		x.d = nil
	}()
	if f.handler == nil {
		f.c.report(fmt.Errorf("yomo: a frame of tag %d and no frame handler (SetHandler)", d.Tag))
		return
	}
	x.d = d
	f.handler(x)
}

// answerPanic tells the origin of a request that the handler panicked on
// it, so its Request fails at once rather than at its deadline.
func (f *StreamFunction) answerPanic(d *frame.Data, v any) {
	r := frame.Data{Tag: d.Tag, Origin: d.Origin, TID: d.TID | frame.TIDReplyOnly, OriginZipper: d.OriginZipper,
		Metadata: frame.MetadataOf(frame.StatusKey, frame.StatusPanic, frame.ErrorKey,
			truncate(fmt.Sprintf("%s: handler panicked: %v", f.c.name, v), maxReasonLen))}
	if err := f.c.write(&r); err != nil {
		f.c.report(fmt.Errorf("yomo: answering a request after a panic: %w", err))
	}
}

// workers run a handler with several concurrent calls. Frames are copied
// (into pooled buffers) and partitioned by (origin, tag), so the frames of
// one Source and tag are still handled one at a time, in order.
type workers struct {
	f     *StreamFunction
	chans []chan *job
	pool  sync.Pool
	wg    sync.WaitGroup
	once  sync.Once
}

type job struct {
	d   frame.Data
	buf []byte
}

// workerQueue is each worker's queue length; the reader waits when full.
const workerQueue = 64

func startWorkers(f *StreamFunction, n int, unordered bool) *workers {
	queues := n
	if unordered {
		queues = 1 // one queue for all: any free worker takes the next frame
	}
	w := &workers{f: f, chans: make([]chan *job, queues)}
	w.pool.New = func() any { return new(job) }
	for i := range w.chans {
		w.chans[i] = make(chan *job, workerQueue)
	}
	for i := range n {
		ch := w.chans[i%queues]
		w.wg.Add(1)
		go w.run(ch) // owned by w: ends when stop closes ch
	}
	return w
}

func (w *workers) run(ch chan *job) {
	defer w.wg.Done()
	x := &fnContext{f: w.f}
	for j := range ch {
		if w.f.c.ctx.Err() == nil { // after Close, queued frames are skipped
			w.f.call(x, &j.d)
		}
		w.pool.Put(j)
	}
}

func (w *workers) dispatch(d *frame.Data) {
	j := w.pool.Get().(*job)
	b := append(j.buf[:0], d.Target...)
	b = append(b, d.Metadata...)
	b = append(b, d.OriginZipper...)
	b = append(b, d.Key...)
	b = append(b, d.Payload...)
	j.buf = b
	t, m, o, k := len(d.Target), len(d.Metadata), len(d.OriginZipper), len(d.Key)
	j.d = frame.Data{Tag: d.Tag, Origin: d.Origin, TID: d.TID,
		Target: b[:t:t], Metadata: frame.Metadata(b[t : t+m : t+m]),
		OriginZipper: b[t+m : t+m+o : t+m+o], Key: b[t+m+o : t+m+o+k : t+m+o+k], Payload: b[t+m+o+k:]}
	// One partition per (origin, tag): a writer's frames of a tag are
	// handled in order. A keyed frame is partitioned by its key instead,
	// so one key's frames never run concurrently, whoever wrote them (its
	// state in the handler needs no lock).
	h := (d.Origin ^ uint64(d.Tag)*0x9e3779b97f4a7c15) * 0xff51afd7ed558ccd
	if len(d.Key) > 0 {
		h = router.HashKey(d.Key) * 0xff51afd7ed558ccd
	}
	select {
	case w.chans[h>>32%uint64(len(w.chans))] <- j:
	case <-w.f.c.ctx.Done():
		w.pool.Put(j)
	}
}

// stop ends the workers after the frames already queued; it runs after
// the client's read loop has stopped, so nothing dispatches any more.
func (w *workers) stop() {
	w.once.Do(func() {
		for _, ch := range w.chans {
			close(ch)
		}
	})
	w.wg.Wait()
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
	return x.WriteMessage(Message{Tag: tag, Data: data})
}

func (x *fnContext) WriteWithTarget(tag Tag, data []byte, target string) error {
	return x.WriteMessage(Message{Tag: tag, Data: data, Target: target})
}

// TID identifies the origin write: the origin Source's id and its write's
// transaction number.
func (x *fnContext) TID() string {
	if x.d == nil {
		return ""
	}
	return fmt.Sprintf("%016x-%d", x.d.Origin, x.d.TID)
}

func (x *fnContext) Key() string {
	if x.d == nil {
		return ""
	}
	return string(x.d.Key)
}

func (x *fnContext) WriteMessage(m Message) error {
	if x.d == nil {
		return errContextDone
	}
	md, err := encodeMetadata(x.d.Metadata, m.Metadata)
	if err != nil {
		return x.reportWrite(m.Tag, err)
	}
	key := x.d.Key
	if m.Key != "" {
		key = bytesOf(m.Key)
	}
	out := frame.Data{
		Tag:          m.Tag,
		Target:       bytesOf(m.Target), // read only
		Origin:       x.d.Origin,
		TID:          x.d.TID,
		Metadata:     md,
		Payload:      m.Data,
		OriginZipper: x.d.OriginZipper,
		Key:          key,
		Datagram:     x.f.c.isDatagramTag(m.Tag),
	}
	if err := x.f.c.write(&out); err != nil {
		return x.reportWrite(m.Tag, err)
	}
	return nil
}

// reportWrite hands a failed write to the function's error handler too:
// handlers often have nowhere to send an error.
func (x *fnContext) reportWrite(tag Tag, err error) error {
	x.f.c.report(fmt.Errorf("yomo: handler write of tag %d: %w", tag, err))
	return err
}

// DatagramStats returns the counters of the frames of datagram tags this
// function received and wrote (WithDatagramTags), over all its
// connections.
func (f *StreamFunction) DatagramStats() DatagramStats { return f.c.dgram.snapshot() }
