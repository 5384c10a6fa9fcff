package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/yomo-dev/yomo/examples/internal/wasmexample"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) { wasmexample.Check(t, "rust") }
