// Command wasm-zig runs a stream function written in Zig 0.11, built as a wasm32-wasi library,
// behind a zipper, over real QUIC on localhost. A source writes words and
// gets them back upper-cased.
//
//	go run ./examples/wasm-zig                      # builds guest/ from source first
//	go run ./examples/wasm-zig -module upper.wasm   # or runs a guest built before
//
// The guest's source is in guest/; examples/wasm-guests.sh builds it.
package main

import "github.com/yomo-dev/yomo/examples/internal/wasmexample"

func main() { wasmexample.Main("zig") }
