package wasm

import "github.com/tetratelabs/wazero/experimental"

// linearMemory backs one instance's WebAssembly memory and enforces the
// memory limit. It is wazero's allocation hook: every memory.grow that
// passes the module's own maximum comes here, so, unlike a limit set in
// the runtime configuration (which refuses silently), it sees the
// refusals and lets the failed call be reported as ErrMemoryLimit.
//
// It is used only by the goroutine running a call on its instance.
type linearMemory struct {
	buf     []byte
	limit   uint64
	refused bool // a grow was refused since the last call began
}

func newAllocator(limit uint64, out **linearMemory) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(capacity, _ uint64) experimental.LinearMemory {
		m := &linearMemory{limit: limit}
		if capacity > limit {
			capacity = limit
		}
		m.buf = make([]byte, 0, capacity)
		*out = m
		return m
	})
}

// Reallocate implements experimental.LinearMemory. The bytes past the old
// length are zero: memory never shrinks, so they were never handed out.
func (m *linearMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		m.refused = true
		return nil
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// Grow geometrically, so that a guest growing page by page does not
	// copy its memory at every page, but never past the limit.
	c := max(size, min(2*uint64(cap(m.buf)), m.limit))
	b := make([]byte, size, c)
	copy(b, m.buf)
	m.buf = b
	return b
}

// Free implements experimental.LinearMemory. It leaves the buffer to the
// garbage collector: wazero may free a module's resources while its call
// is being interrupted, and compiled code must not lose its memory then.
func (m *linearMemory) Free() {}
