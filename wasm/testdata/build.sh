#!/bin/sh
# Rebuilds the test guests: the hand-written ones from their WebAssembly
# text (Debian: apt-get install wabt), the Go SDK's from sdkguest (the Go
# toolchain alone). Run by `go generate` in the parent directory.
set -e
cd "$(dirname "$0")"
for f in *.wat; do
	wat2wasm -o "${f%.wat}.wasm" "$f"
done
cd ..
GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o testdata/sdk.wasm ./testdata/sdkguest
