package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		`source wrote   "hello"`,
		`source got back "HELLO"`,
		`source got back "YOMO"`,
		`source got back "STREAM"`,
		`source got back "PROCESSING"`,
		`zipper: 8 frames in, function "uppercase" handled 4, dropped 0`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
