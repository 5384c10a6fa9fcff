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
		"2 instances: each of 12 sensors on one instance;",
		"3 instances: each of 12 sensors on one instance;",
		"all of them to c: true",
		"scaling down: every sensor is back where it was: true",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "moved 0 sensors") {
		t.Errorf("scaling up moved no sensor:\n%s", got)
	}
}
