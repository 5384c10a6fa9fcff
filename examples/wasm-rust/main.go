// Command wasm-rust runs a stream function written in Rust, built for wasm32-wasi with Debian's rustc and cargo,
// behind a zipper, over real QUIC on localhost. A source writes words and
// gets them back upper-cased.
//
//	go run ./examples/wasm-rust                      # builds guest/ from source first
//	go run ./examples/wasm-rust -module upper.wasm   # or runs a guest built before
//
// The guest's source is in guest/; examples/wasm-guests.sh builds it.
package main

import "github.com/yomo-dev/yomo/examples/internal/wasmexample"

func main() { wasmexample.Main("rust") }
