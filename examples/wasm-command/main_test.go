package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/yomo-dev/yomo/examples/internal/wasmexample"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// main ran once (one instance), before the first frame, and its exit(0)
// did not end the instance.
func TestRun(t *testing.T) {
	wasmexample.Check(t, "command", "command guest: main ran, observing 0x10\nloaded upper-command")
}
