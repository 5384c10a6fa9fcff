package wasm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"github.com/yomo-dev/yomo"
)

// The host module of the YoMo ABI, and its functions.
const hostModule = "env"

// Write statuses returned to the guest.
const (
	statusOK         = 0
	statusOutOfRange = 1
	statusFailed     = 2
)

const i32 = api.ValueTypeI32

// hostFunc is one function of module "env".
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(ctx context.Context, in *instance, m api.Module, stack []uint64)
	needs   string // an export that a module importing it must have
}

var hostFuncs = []hostFunc{
	{"yomo_observe_datatag", []api.ValueType{i32}, nil, hostObserveDataTag, ""},
	{"yomo_context_tag", nil, []api.ValueType{i32}, hostContextTag, ""},
	{"yomo_context_data_size", nil, []api.ValueType{i32}, hostContextDataSize, ""},
	{"yomo_context_data", []api.ValueType{i32, i32}, []api.ValueType{i32}, hostContextData, ""},
	{"yomo_context_metadata", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, hostContextMetadata, ""},
	{"yomo_write", []api.ValueType{i32, i32, i32}, []api.ValueType{i32}, hostWrite, ""},
	{"yomo_write_with_target", []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, hostWriteWithTarget, ""},
	{"yomo_get_wanted_target", []api.ValueType{i32, i32}, nil, hostGetWantedTarget, ""},
	{"yomo_http_send", []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, hostHTTPSend, exportAlloc},
}

// instantiateHost adds module "env" to r. Every host function finds the
// calling instance in the call's context.
func instantiateHost(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(hostModule)
	for _, h := range hostFuncs {
		fn := h.fn
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, m api.Module, stack []uint64) {
				fn(ctx, ctx.Value(instanceKey{}).(*instance), m, stack)
			}), h.params, h.results).
			Export(h.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// instantiateWASI adds WASI preview 1 to r, wazero's, except proc_exit:
// a command's _start that exits with code 0 (as C's exit(0) or a
// runtime's end of main do) ends _start without closing the instance, so
// YoMo's exports can be called next, as YoMo's host allowed. Every other
// exit closes the instance, as wazero's does: it cannot be called again.
func instantiateWASI(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(procExit), []api.ValueType{i32}, nil).
		WithParameterNames("rval").
		Export("proc_exit") // replaces wazero's
	_, err := b.Instantiate(ctx)
	return err
}

func procExit(ctx context.Context, m api.Module, stack []uint64) {
	code := api.DecodeU32(stack[0])
	if in, ok := ctx.Value(instanceKey{}).(*instance); ok && in.phase == exportStart && code == 0 {
		// Unwind the guest's stack without closing it. What main left in
		// memory stays; the frames it abandons on the shadow stack are
		// a few bytes, lost once per instance.
		in.exited = true
		panic(errStartExited)
	}
	_ = m.CloseWithExitCode(ctx, code)
	panic(sys.NewExitError(code))
}

var errStartExited = errors.New("_start exited with code 0")

// instanceKey is the context key of the *instance being called.
type instanceKey struct{}

// hostTrap aborts the guest call: wazero turns a panic in a host function
// into an error of the call, which becomes a *TrapError.
func hostTrap(format string, args ...any) {
	panic(fmt.Errorf(format, args...))
}

func hostObserveDataTag(_ context.Context, in *instance, _ api.Module, stack []uint64) {
	if in.phase != exportObserve {
		hostTrap("yomo_observe_datatag called from %s; call it from yomo_observe_datatags", in.phase)
	}
	in.tags = append(in.tags, yomo.Tag(api.DecodeU32(stack[0])))
}

func hostGetWantedTarget(_ context.Context, in *instance, m api.Module, stack []uint64) {
	if in.phase != exportTarget {
		hostTrap("yomo_get_wanted_target called from %s; call it from yomo_wanted_target", in.phase)
	}
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		hostTrap("yomo_get_wanted_target: [%d, %d+%d) is outside the module's memory", ptr, ptr, n)
	}
	in.target = string(b)
}

func hostContextTag(_ context.Context, in *instance, _ api.Module, stack []uint64) {
	var tag yomo.Tag
	if in.cur != nil {
		tag = in.cur.Tag()
	}
	stack[0] = api.EncodeU32(tag)
}

func hostContextDataSize(_ context.Context, in *instance, _ api.Module, stack []uint64) {
	var n int
	if in.cur != nil {
		n = len(in.cur.Data())
	}
	stack[0] = api.EncodeU32(uint32(n))
}

func hostContextData(_ context.Context, in *instance, m api.Module, stack []uint64) {
	ptr, capacity := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	var data []byte
	if in.cur != nil {
		data = in.cur.Data()
	}
	n := uint32(len(data))
	if n <= capacity && !m.Memory().Write(ptr, data) {
		hostTrap("yomo_context_data: [%d, %d+%d) is outside the module's memory", ptr, ptr, n)
	}
	stack[0] = api.EncodeU32(n)
}

// hostContextMetadata is yomo_context_metadata(key_ptr, key_len, ptr,
// cap) -> len: the value of the metadata key of the frame being handled,
// copied like yomo_context_data; -1 when the frame has no such key.
func hostContextMetadata(_ context.Context, in *instance, m api.Module, stack []uint64) {
	kptr, kn := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	ptr, capacity := api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	mem := m.Memory()
	key, ok := mem.Read(kptr, kn)
	if !ok {
		hostTrap("yomo_context_metadata: key [%d, %d+%d) is outside the module's memory", kptr, kptr, kn)
	}
	var v string
	if in.cur != nil {
		v, ok = in.cur.Metadata(string(key))
	} else {
		ok = false
	}
	if !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	n := uint32(len(v))
	if n <= capacity && !mem.WriteString(ptr, v) {
		hostTrap("yomo_context_metadata: [%d, %d+%d) is outside the module's memory", ptr, ptr, n)
	}
	stack[0] = api.EncodeU32(n)
}

func hostWrite(_ context.Context, in *instance, m api.Module, stack []uint64) {
	tag, ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	data, ok := m.Memory().Read(ptr, n)
	if !ok {
		stack[0] = statusOutOfRange
		return
	}
	stack[0] = in.write(tag, data, "")
}

func hostWriteWithTarget(_ context.Context, in *instance, m api.Module, stack []uint64) {
	tag, ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2])
	tptr, tn := api.DecodeU32(stack[3]), api.DecodeU32(stack[4])
	mem := m.Memory()
	data, ok := mem.Read(ptr, n)
	target, tok := mem.Read(tptr, tn)
	if !ok || !tok {
		stack[0] = statusOutOfRange
		return
	}
	stack[0] = in.write(tag, data, string(target))
}

// signature formats a function type the way the WebAssembly text format
// reads: "(i32, i32) -> i32", "() -> ()".
func signature(params, results []api.ValueType) string {
	return typeList(params) + " -> " + typeList(results)
}

func typeList(ts []api.ValueType) string {
	if len(ts) == 1 {
		return api.ValueTypeName(ts[0])
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = api.ValueTypeName(t)
	}
	return "(" + strings.Join(names, ", ") + ")"
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
