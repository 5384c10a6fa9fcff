package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/yomotest"
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
		`source wrote "kitchen 21.5"`,
		"back: ok     kitchen (ground floor): 21.5°C, limit 30.0°C",
		"back: ALERT  server-room (basement): 31.2°C is above the 27.0°C limit",
		`back: invalid "garage warm": "warm" is not a temperature`,
		"back: ok     freezer (ground floor): -18.5°C, limit -15.0°C",
		"back: ALERT  attic (unknown floor): 36.0°C is above the 35.0°C limit",
		"parse  took 5, wrote 5, dropped 0",
		"enrich took 4, wrote 4, dropped 0",
		"alert  took 4, wrote 4, dropped 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "back: "); n != 5 {
		t.Errorf("%d answers came back, want one per reading (5):\n%s", n, got)
	}
}

// The functions are plain yomo.Handlers: test one without a zipper, with
// the ready Context of package yomotest.
func TestParseRejectsGarbage(t *testing.T) {
	c := yomotest.NewContext(yomo.Message{Tag: tagReading, Data: []byte("no-temperature")})
	parse(c)
	got := c.Written()
	if len(got) != 1 || got[0].Tag != tagInvalid {
		t.Fatalf("parse wrote %+v, want one frame on tagInvalid", got)
	}
}
