// Package guest is the YoMo guest SDK for WebAssembly functions written in
// standard Go (no TinyGo). A module built with it runs on the host side in
// package github.com/yomo-dev/yomo/wasm.
//
// Register the tags, the handler and optionally a wanted target and an init
// function from an init function of package main; main itself is never
// called (the module is a WASI reactor), but package main needs one:
//
//	package main
//
//	import (
//		"bytes"
//
//		"github.com/yomo-dev/yomo/wasm/guest"
//	)
//
//	func init() {
//		guest.ObserveDataTags(0x10)
//		guest.SetHandler(func(tag guest.Tag, data []byte) {
//			guest.Write(0x11, bytes.ToUpper(data))
//		})
//	}
//
//	func main() {}
//
// Build it as a reactor module with the standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fn.wasm .
//
// The package implements the guest side of the YoMo ABI: it imports the
// host functions of module "env" (yomo_observe_datatag, yomo_context_tag,
// yomo_context_data_size, yomo_context_data, yomo_write,
// yomo_write_with_target, yomo_get_wanted_target; yomo_http_send and
// yomo_context_metadata only when the program calls HTTPSend or Metadata)
// and exports yomo_init, yomo_observe_datatags, yomo_wanted_target,
// yomo_handler and yomo_alloc.
//
// A module is single-threaded: the host calls one export at a time on an
// instance, so handlers need no locking. The host may run several
// instances of a module side by side; they share nothing.
//
// The API (see it with GOOS=wasip1 GOARCH=wasm go doc -all):
//
//	type Tag = uint32
//	type Handler func(tag Tag, data []byte) // data valid until it returns
//	func ObserveDataTags(tags ...Tag)        // call from init
//	func SetWantedTarget(target string)     // call from init
//	func SetHandler(h Handler)              // call from init
//	func SetInit(fn func() error)           // optional, once per instance
//	func Write(tag Tag, data []byte) error  // in the handler, any number of times
//	func WriteWithTarget(tag Tag, data []byte, target string) error
//	func Metadata(key string) (string, bool) // in the handler: "traceparent"...
//	func HTTPSend(req *HTTPRequest) (*HTTPResponse, error) // through wasm.Config.HTTPClient
//	var ErrOutOfRange, ErrWriteFailed, ErrNoContext error
//
// Everything but this documentation is built only for GOOS=wasip1, so
// the package is empty on other platforms.
package guest
