// Command wasm-go runs a stream function written in standard Go with the guest SDK, built as a WASI reactor,
// behind a zipper, over real QUIC on localhost. A source writes words and
// gets them back upper-cased.
//
//	go run ./examples/wasm-go                      # builds guest/ from source first
//	go run ./examples/wasm-go -module upper.wasm   # or runs a guest built before
//
// The guest's source is in guest/; examples/wasm-guests.sh builds it.
package main

import "github.com/yomo-dev/yomo/examples/internal/wasmexample"

func main() { wasmexample.Main("go") }
