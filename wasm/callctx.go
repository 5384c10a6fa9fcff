package wasm

import (
	"context"
	"sync"
	"time"
)

// callContext is the context.Context of an instance's calls. It carries
// the instance, for the host functions, and ends when the deadline of the
// current call passes or when the Function closes; wazero
// (WithCloseOnContextDone) then stops the guest.
//
// It does the work of a context.WithTimeout per call with one timer per
// instance, re-armed for each call, which saves about a third of the cost
// of a short call.
type callContext struct {
	in    *instance
	base  context.Context // the Function's: canceled by Close
	timer *time.Timer
	stop  func() bool // unregisters from base

	mu       sync.Mutex
	done     chan struct{}
	err      error
	deadline time.Time
}

func newCallContext(in *instance, base context.Context) *callContext {
	c := &callContext{in: in, base: base, done: make(chan struct{})}
	c.timer = time.AfterFunc(time.Hour, c.expired)
	c.timer.Stop()
	c.stop = context.AfterFunc(base, func() { c.end(context.Canceled) })
	return c
}

// begin arms the deadline of a call.
func (c *callContext) begin(timeout time.Duration) {
	c.mu.Lock()
	if c.err != nil {
		if c.base.Err() == nil {
			// The previous call timed out: this one needs an open channel.
			c.done, c.err = make(chan struct{}), nil
		} else {
			c.err = context.Canceled // closing: the call ends at once
		}
	}
	c.deadline = time.Now().Add(timeout)
	c.mu.Unlock()
	c.timer.Reset(timeout)
}

// finish disarms the deadline after a call.
func (c *callContext) finish() { c.timer.Stop() }

// expired runs when the timer fires. A timer that fired for an earlier
// call while the next one began finds a later deadline, and does nothing.
func (c *callContext) expired() {
	c.mu.Lock()
	late := !time.Now().Before(c.deadline)
	c.mu.Unlock()
	if late {
		c.end(context.DeadlineExceeded)
	}
}

func (c *callContext) end(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
	c.mu.Unlock()
}

// release stops the timer and the registration with the Function's
// context, when the instance is discarded.
func (c *callContext) release() {
	c.timer.Stop()
	c.stop()
}

func (c *callContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, !c.deadline.IsZero()
}

func (c *callContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

func (c *callContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *callContext) Value(key any) any {
	if key == (instanceKey{}) {
		return c.in
	}
	return c.base.Value(key)
}
