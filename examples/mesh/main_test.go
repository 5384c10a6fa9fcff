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
		`us-east routes tag 0x20 to "count" in ap-south`,
		`us-east routes tag 0x20 to "uppercase" in eu-west`,
		`source@us-east wrote "hello"`,
		"back at us-east: count@ap-south: 5 letters",
		"back at us-east: uppercase@eu-west: HELLO",
		"back at us-east: count@ap-south: 4 letters",
		"back at us-east: uppercase@eu-west: MESH",
		"us-east: 6 frames in, 2 links up", // 2 writes + 4 answers back over the links
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
