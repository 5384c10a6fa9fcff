package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"github.com/yomo-dev/yomo"
)

// Exports of the YoMo ABI.
const (
	exportInitialize = "_initialize" // WASI reactor start
	exportStart      = "_start"      // WASI command entry point: main
	exportInit       = "yomo_init"
	exportObserve    = "yomo_observe_datatags"
	exportTarget     = "yomo_wanted_target"
	exportHandler    = "yomo_handler"
	exportAlloc      = "yomo_alloc" // for yomo_http_send's response
	exportMemory     = "memory"
)

// exportSpec is an export the host calls, with its required signature.
type exportSpec struct {
	name            string
	required        bool
	params, results []api.ValueType
}

var exportSpecs = []exportSpec{
	{exportStart, false, nil, nil},
	{exportInitialize, false, nil, nil},
	{exportInit, false, nil, []api.ValueType{i32}},
	{exportObserve, true, nil, nil},
	{exportTarget, false, nil, nil},
	{exportHandler, true, nil, nil},
	{exportAlloc, false, []api.ValueType{i32}, []api.ValueType{i32}},
}

// startSequence is what every instance runs when it starts, in YoMo's
// order; the exports a module lacks are skipped.
var startSequence = []string{exportStart, exportInitialize, exportObserve, exportTarget, exportInit}

// Function is a loaded WebAssembly module serving as a stream function
// handler. Its methods are safe for concurrent use: Handle runs on up to
// Config.Instances instances at once and waits for a free one beyond
// that.
type Function struct {
	set      settings
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	modCfg   wazero.ModuleConfig
	exports  map[string]bool // optional exports present
	tags     []yomo.Tag
	target   string

	// free holds the idle instances; a nil entry is a slot whose instance
	// failed and could not be replaced yet (the next call retries).
	free    chan *instance
	closing chan struct{}
	base    context.Context // parent of every call; canceled by Close
	cancel  context.CancelFunc

	closeOnce sync.Once
	closeErr  error

	calls, failed, replaced, writeErrs atomic.Uint64
}

// instance is one instantiated module. It is used by one call at a time.
type instance struct {
	f       *Function
	mod     api.Module
	handler api.Function
	alloc   api.Function // yomo_alloc, nil if the module has none
	mem     *linearMemory
	cctx    *callContext // of handler calls

	cur   yomo.Context // the frame being handled, nil outside yomo_handler
	phase string       // the export being called
	// exited is set when _start called proc_exit(0): the call ended, the
	// instance stays usable.
	exited bool
	// Collected while the instance starts; the first instance's are the
	// Function's.
	tags   []yomo.Tag
	target string
}

// Load compiles module, checks it against the YoMo ABI and starts
// cfg.Instances instances of it. Each instance runs, in YoMo's order, the
// exports it has of _start (a WASI command's main) or _initialize (a
// reactor's), yomo_observe_datatags, yomo_wanted_target and yomo_init;
// the first instance's registrations are what ObserveDataTags and
// WantedTarget return. ctx bounds the compilation and the starts; the
// Function does not keep it.
//
// Errors: one wrapping ErrInvalidModule when the module does not fit the
// ABI (the message names the export, import or signature at fault), an
// *InitError when yomo_init returns non-zero, a *CallError when a start
// export traps, times out or exits (except _start with code 0), or an
// error from cfg.
func Load(ctx context.Context, module []byte, cfg Config) (*Function, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if err := checkHeader(module); err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig()
	if cfg.Interpreter {
		rc = wazero.NewRuntimeConfigInterpreter()
	}
	rc = rc.WithCloseOnContextDone(true)
	if cfg.Cache != nil {
		rc = rc.WithCompilationCache(cfg.Cache.c)
	}
	f := &Function{
		set:     set,
		rt:      wazero.NewRuntimeWithConfig(ctx, rc),
		modCfg:  cfg.moduleConfig(),
		exports: make(map[string]bool),
		free:    make(chan *instance, set.instances),
		closing: make(chan struct{}),
	}
	f.base, f.cancel = context.WithCancel(context.Background())
	if err := f.load(ctx, module); err != nil {
		f.cancel()
		for len(f.free) > 0 {
			if in := <-f.free; in != nil {
				in.close()
			}
		}
		_ = f.rt.Close(context.Background())
		return nil, err
	}
	return f, nil
}

func (f *Function) load(ctx context.Context, module []byte) error {
	if err := instantiateWASI(ctx, f.rt); err != nil {
		return fmt.Errorf("wasm: WASI: %w", err)
	}
	if err := instantiateHost(ctx, f.rt); err != nil {
		return fmt.Errorf("wasm: host module: %w", err)
	}
	compiled, err := f.rt.CompileModule(ctx, module)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return invalid("%v", err)
	}
	f.compiled = compiled
	if err := f.check(); err != nil {
		return err
	}
	first, err := f.instantiate(ctx, true)
	if err != nil {
		return err
	}
	f.free <- first
	for _, t := range first.tags {
		if !slices.Contains(f.tags, t) {
			f.tags = append(f.tags, t)
		}
	}
	f.target = first.target
	first.tags = nil
	if len(f.tags) == 0 {
		return invalid("%s registered no tag: it must call yomo_observe_datatag at least once", exportObserve)
	}
	for i := 1; i < f.set.instances; i++ {
		in, err := f.instantiate(ctx, false)
		if err != nil {
			return err
		}
		f.free <- in
	}
	return nil
}

// checkHeader tells apart bytes that are not WebAssembly at all, for a
// clearer error than the decoder's.
func checkHeader(b []byte) error {
	if len(b) < 8 || !bytes.Equal(b[:4], []byte("\x00asm")) {
		return invalid("not a WebAssembly binary (no \\0asm header)")
	}
	if !bytes.Equal(b[4:8], []byte{1, 0, 0, 0}) {
		return invalid("WebAssembly binary version %x unsupported: need a core module (version 1), not a component", b[4:8])
	}
	return nil
}

// check verifies the compiled module against the ABI.
func (f *Function) check() error {
	exports := f.compiled.ExportedFunctions()
	for _, spec := range exportSpecs {
		def, ok := exports[spec.name]
		if !ok {
			if spec.required {
				return invalid("missing required export %s (func %s)", spec.name, signature(spec.params, spec.results))
			}
			continue
		}
		if !sameTypes(def.ParamTypes(), spec.params) || !sameTypes(def.ResultTypes(), spec.results) {
			return invalid("export %s has signature %s, want %s", spec.name,
				signature(def.ParamTypes(), def.ResultTypes()), signature(spec.params, spec.results))
		}
		f.exports[spec.name] = true
	}
	if f.exports[exportStart] && f.exports[exportInitialize] {
		return invalid("module exports both %s and %s: a WASI module is a command or a reactor, not both",
			exportStart, exportInitialize)
	}
	for _, def := range f.compiled.ImportedFunctions() {
		mod, name, _ := def.Import()
		switch mod {
		case wasi_snapshot_preview1.ModuleName:
			// wazero implements all of preview 1 and checks signatures.
		case hostModule:
			h, ok := hostFunc{}, false
			for _, hf := range hostFuncs {
				if hf.name == name {
					h, ok = hf, true
				}
			}
			if !ok {
				return invalid("imports %s.%s, which the host does not provide", mod, name)
			}
			if !sameTypes(def.ParamTypes(), h.params) || !sameTypes(def.ResultTypes(), h.results) {
				return invalid("import %s.%s has signature %s, want %s", mod, name,
					signature(def.ParamTypes(), def.ResultTypes()), signature(h.params, h.results))
			}
			if h.needs != "" && !f.exports[h.needs] {
				return invalid("imports %s.%s but does not export %s, through which the host hands it the answer",
					mod, name, h.needs)
			}
		default:
			return invalid("imports %s.%s: the host provides only modules %s (YoMo) and %s",
				mod, name, hostModule, wasi_snapshot_preview1.ModuleName)
		}
	}
	if len(f.compiled.ImportedMemories()) > 0 {
		return invalid("module imports its memory; it must define and export it as %q", exportMemory)
	}
	mem, ok := f.compiled.ExportedMemories()[exportMemory]
	if !ok {
		return invalid("missing required export %s (its linear memory)", exportMemory)
	}
	if need := uint64(mem.Min()) * pageSize; need > f.set.memLimit {
		return &markedError{
			msg:   fmt.Sprintf("%v: its memory starts at %d KiB, over the memory limit of %d KiB", ErrInvalidModule, need>>10, f.set.memLimit>>10),
			marks: []error{ErrInvalidModule, ErrMemoryLimit},
		}
	}
	return nil
}

// instantiate starts one instance: the exports of startSequence it has,
// in order. The first instance's tags and target are the Function's.
func (f *Function) instantiate(ctx context.Context, first bool) (*instance, error) {
	in := &instance{f: f}
	ictx := context.WithValue(ctx, instanceKey{}, in)
	// The deadline covers the module's own start function, if it has one.
	mctx, cancel := context.WithTimeout(experimental.WithMemoryAllocator(ictx, newAllocator(f.set.memLimit, &in.mem)), f.set.initTimeout)
	mod, err := f.rt.InstantiateModule(mctx, f.compiled, f.modCfg)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if in.mem != nil {
			return nil, &CallError{Export: "start function", Err: in.cause(err, f.set.initTimeout)}
		}
		return nil, fmt.Errorf("wasm: instantiate: %w", err)
	}
	in.mod = mod
	in.handler = mod.ExportedFunction(exportHandler)
	in.alloc = mod.ExportedFunction(exportAlloc)
	in.cctx = newCallContext(in, f.base)
	var stack [1]uint64
	for _, name := range startSequence {
		if !f.exports[name] {
			continue
		}
		cctx, cancel := context.WithTimeout(ictx, f.set.initTimeout)
		err := in.call(cctx, name, mod.ExportedFunction(name), stack[:], f.set.initTimeout)
		cancel()
		if err == nil && name == exportInit && int32(stack[0]) != 0 {
			err = &InitError{Code: int32(stack[0])}
		}
		if err != nil {
			in.close()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("wasm: %s: %w", name, ctx.Err())
			}
			return nil, err
		}
	}
	if !first {
		in.tags, in.target = nil, ""
	}
	return in, nil
}

// call runs one export of the instance, bounded by ctx whose deadline is
// timeout, and turns its failure into a *CallError.
func (in *instance) call(ctx context.Context, name string, fn api.Function, stack []uint64, timeout time.Duration) error {
	in.phase = name
	in.mem.refused = false
	err := fn.CallWithStack(ctx, stack)
	in.phase = ""
	if err == nil || in.exited {
		in.exited = false // _start called proc_exit(0): it is done
		return nil
	}
	ce := &CallError{Export: name, Err: in.cause(err, timeout)}
	if in.cur != nil {
		ce.Tag = in.cur.Tag()
	}
	return ce
}

// cause classifies an error of a call.
func (in *instance) cause(err error, timeout time.Duration) error {
	var cause error
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		return &timeoutError{timeout}
	case errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeContextCanceled:
		return fmt.Errorf("interrupted: %w", yomo.ErrClosed)
	case errors.As(err, &exit):
		cause = &ExitError{Code: exit.ExitCode()}
	default:
		cause = &TrapError{Message: err.Error()}
	}
	if in.mem != nil && in.mem.refused {
		return &memoryLimitError{limit: in.mem.limit, cause: cause}
	}
	return cause
}

// write sends a frame for yomo_write and yomo_write_with_target and
// returns the status for the guest.
func (in *instance) write(tag uint32, data []byte, target string) uint64 {
	if in.cur == nil {
		return statusFailed // not handling a frame: nothing to write for
	}
	var err error
	if target == "" {
		err = in.cur.Write(tag, data)
	} else {
		err = in.cur.WriteWithTarget(tag, data, target)
	}
	if err != nil {
		in.f.writeErrs.Add(1)
		in.f.set.onError(&WriteError{Tag: tag, Target: target, Err: err})
		return statusFailed
	}
	return statusOK
}

// close discards the instance.
func (in *instance) close() {
	_ = in.mod.Close(context.Background())
	if in.cctx != nil {
		in.cctx.release()
	}
}

// ObserveDataTags returns the tags the module registered in
// yomo_observe_datatags, for StreamFunction.SetObserveDataTags. The slice
// is a copy.
func (f *Function) ObserveDataTags() []yomo.Tag { return append([]yomo.Tag(nil), f.tags...) }

// WantedTarget returns the target the module gave in yomo_wanted_target,
// for StreamFunction.SetWantedTarget, or "" if it has none.
func (f *Function) WantedTarget() string { return f.target }

// Handle handles one frame: it borrows an instance (waiting while all are
// busy), calls the module's yomo_handler, and gives the instance back. It
// is a yomo.Handler. Handle returns nothing: a failed call is reported to
// Config.OnError as a *CallError and its instance replaced, so the next
// frames are served. After Close, Handle reports yomo.ErrClosed at once.
func (f *Function) Handle(c yomo.Context) {
	var in *instance
	select {
	case in = <-f.free:
	case <-f.closing:
		f.set.onError(&CallError{Export: exportHandler, Tag: c.Tag(), Err: yomo.ErrClosed})
		return
	}
	defer func() { f.free <- in }()
	select {
	case <-f.closing:
		f.set.onError(&CallError{Export: exportHandler, Tag: c.Tag(), Err: yomo.ErrClosed})
		return
	default:
	}
	if in == nil { // the last replacement failed: try again
		if in = f.replace(); in == nil {
			return
		}
	}
	f.calls.Add(1)
	in.cur = c
	in.cctx.begin(f.set.timeout)
	err := in.call(in.cctx, exportHandler, in.handler, nil, f.set.timeout)
	in.cctx.finish()
	in.cur = nil
	if err != nil {
		f.failed.Add(1)
		f.set.onError(err)
		in.close()
		in = nil
		select {
		case <-f.closing: // Close discards the slot
		default:
			in = f.replace()
		}
	}
}

// replace starts an instance in place of a failed one; nil if it could
// not (the error is reported).
func (f *Function) replace() *instance {
	in, err := f.instantiate(f.base, false)
	if err != nil {
		f.set.onError(err)
		return nil
	}
	f.replaced.Add(1)
	return in
}

// Stats counts what a Function did.
type Stats struct {
	Calls       uint64 // yomo_handler calls
	Failed      uint64 // calls that trapped, exited, timed out or were interrupted
	Replaced    uint64 // instances started to replace failed ones
	WriteErrors uint64 // guest writes the host could not send
}

// Stats returns the Function's counters.
func (f *Function) Stats() Stats {
	return Stats{
		Calls:       f.calls.Load(),
		Failed:      f.failed.Load(),
		Replaced:    f.replaced.Load(),
		WriteErrors: f.writeErrs.Load(),
	}
}

// Close stops the Function: Handle refuses new frames (reporting
// yomo.ErrClosed), Close waits for the calls in progress to finish, then
// releases the instances and the compiled code. If ctx ends first, the
// running guests are interrupted, Close waits for their calls to return
// (a host function in progress, such as a write waiting for room, ends
// first) and returns ctx.Err(). Close the StreamFunction that calls
// Handle before its Function. Idempotent.
func (f *Function) Close(ctx context.Context) error {
	f.closeOnce.Do(func() {
		close(f.closing)
		for range f.set.instances {
			var in *instance
			select {
			case in = <-f.free:
			case <-ctx.Done():
				f.closeErr = ctx.Err()
				f.cancel()
				in = <-f.free
			}
			if in != nil {
				in.close()
			}
		}
		f.cancel()
		if err := f.rt.Close(context.Background()); err != nil && f.closeErr == nil {
			f.closeErr = err
		}
	})
	return f.closeErr
}
