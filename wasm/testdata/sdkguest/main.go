//go:build wasip1

// Command sdkguest tests the Go guest SDK (package wasm/guest) from the
// host side. Built by testdata/build.sh:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o testdata/sdk.wasm ./testdata/sdkguest
//
// It observes tags 1 to 6 and wants target "sdk-target". Its handler:
//
//	1: writes the payload (tag 0x101), then upper-cased (tag 0x102)
//	2: writes the payload with itself as target (tag 0x103)
//	3: panics
//	4: writes to tag 999 (which the test's host fails) and reports the
//	   error's text (tag 0x104)
//	5: writes the value of the metadata key in the payload (tag 0x105),
//	   or "absent"
//	6: GETs the URL in the payload and writes the status code and the
//	   body (tag 0x106), or the error's text
//
// Its init function fails when the environment has FAIL_INIT.
package main

import (
	"bytes"
	"errors"
	"os"
	"strconv"

	"github.com/yomo-dev/yomo/wasm/guest"
)

func init() {
	guest.ObserveDataTags(1, 2, 3, 4, 5, 6)
	guest.SetWantedTarget("sdk-target")
	guest.SetInit(func() error {
		if err := guest.Write(1, nil); !errors.Is(err, guest.ErrNoContext) {
			return errors.New("Write outside the handler did not fail with ErrNoContext")
		}
		if os.Getenv("FAIL_INIT") != "" {
			return errors.New("asked to fail")
		}
		return nil
	})
	guest.SetHandler(handle)
}

func handle(tag guest.Tag, data []byte) {
	switch tag {
	case 1:
		must(guest.Write(0x101, data))
		must(guest.Write(0x102, bytes.ToUpper(data)))
	case 2:
		must(guest.WriteWithTarget(0x103, data, string(data)))
	case 3:
		panic("boom")
	case 4:
		err := guest.Write(999, data)
		if err == nil {
			err = errors.New("no error")
		}
		must(guest.Write(0x104, []byte(err.Error())))
	case 5:
		v, ok := guest.Metadata(string(data))
		if !ok {
			v = "absent"
		}
		must(guest.Write(0x105, []byte(v)))
	case 6:
		resp, err := guest.HTTPSend(&guest.HTTPRequest{Method: "GET", URL: string(data),
			Header: map[string][]string{"X-In": {"sdk"}}})
		if err != nil {
			must(guest.Write(0x106, []byte(err.Error())))
			return
		}
		must(guest.Write(0x106, []byte(strconv.Itoa(resp.StatusCode)+" "+resp.Header["X-Out"]+" "+string(resp.Body))))
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func main() {}
