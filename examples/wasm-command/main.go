// Command wasm-command runs a stream function written in C, built as a WASI command (a main, run once per instance through _start),
// behind a zipper, over real QUIC on localhost. A source writes words and
// gets them back upper-cased.
//
//	go run ./examples/wasm-command                      # builds guest/ from source first
//	go run ./examples/wasm-command -module upper.wasm   # or runs a guest built before
//
// The guest's source is in guest/; examples/wasm-guests.sh builds it.
package main

import "github.com/yomo-dev/yomo/examples/internal/wasmexample"

func main() { wasmexample.Main("command") }
