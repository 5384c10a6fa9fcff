//go:build wasip1

// Command guest-go is the example's Go guest: a YoMo stream function
// compiled to WebAssembly with the standard Go toolchain. It upper-cases
// every word (tag 0x10) and writes the result with tag 0x11.
//
// Build (from examples/wasm; go generate runs the same command):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o testdata/uppercase-go.wasm ./guest-go
package main

import (
	"bytes"

	"github.com/yomo-dev/yomo/wasm/guest"
)

const (
	tagWord  guest.Tag = 0x10
	tagUpper guest.Tag = 0x11
)

func init() {
	guest.ObserveDataTags(tagWord)
	guest.SetHandler(func(tag guest.Tag, data []byte) {
		// A failed write is the host's to report; nothing to do here.
		_ = guest.Write(tagUpper, bytes.ToUpper(data))
	})
}

// main is never called: the module is a reactor (-buildmode=c-shared) and
// the host calls its exports.
func main() {}
