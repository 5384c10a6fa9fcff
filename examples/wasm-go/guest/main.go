//go:build wasip1

// Command guest is a YoMo stream function in standard Go, written with
// the guest SDK (package github.com/yomo-dev/yomo/wasm/guest) and built
// as a WASI reactor. It observes tag 0x10 and writes every payload
// upper-cased with tag 0x11.
//
// Build (the Go toolchain alone):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o upper.wasm .
package main

import (
	"bytes"

	"github.com/yomo-dev/yomo/wasm/guest"
)

func init() {
	guest.ObserveDataTags(0x10)
	guest.SetHandler(func(_ guest.Tag, data []byte) {
		_ = guest.Write(0x11, bytes.ToUpper(data)) // a failed write is reported on the host
	})
}

func main() {}
