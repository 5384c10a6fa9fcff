package sidebyside

import (
	"slices"
	"strings"
	"testing"
)

// The paired column divides yomo's value by the relay's of the same
// round, then takes the median: rounds whose cells failed, or where the
// relay has no cell, are left out.
func TestPairedRatio(t *testing.T) {
	var rs []Result
	for i, v := range []struct{ yomo, relay float64 }{{100, 200}, {60, 100}, {90, 100}, {50, 0}} {
		rs = append(rs,
			Result{Round: i + 1, System: sysYomo, Workload: "1KiB", MsgsPerS: v.yomo},
			Result{Round: i + 1, System: sysRaw, Workload: "1KiB", MsgsPerS: v.relay})
	}
	rs = append(rs, Result{Round: 5, System: sysYomo, Workload: "1KiB", MsgsPerS: 1000},
		Result{Round: 5, System: sysRaw, Workload: "1KiB", MsgsPerS: 1, Err: "failed"})
	r := NewReport(rs)
	var m metric
	for _, x := range r.metrics() {
		if x.label == "1 KiB" {
			m = x
		}
	}
	// Rounds 1–3: 0.5, 0.6, 0.9 (round 4: the relay's 0 has no ratio;
	// round 5: the relay's cell failed).
	if got, want := r.pairedRatio(m, sysYomo, sysRaw), "0.60× (0.50 – 0.90)"; got != want {
		t.Fatalf("pairedRatio = %q, want %q", got, want)
	}
	if md := r.Markdown(); !strings.Contains(md, "| 0.60× (0.50 – 0.90) |") {
		t.Fatalf("the table has no paired column:\n%s", md)
	}
}

// yomo run again next to itself gets its own paired column, the A/A
// comparison, after the relay's; a run compares the four systems unless
// told to run yomo again.
func TestAgainColumn(t *testing.T) {
	var rs []Result
	for i, v := range []struct{ yomo, relay, again float64 }{{100, 100, 125}, {90, 100, 100}, {80, 100, 100}} {
		rs = append(rs,
			Result{Round: i + 1, System: sysYomo, Workload: "cascade", MsgsPerS: v.yomo},
			Result{Round: i + 1, System: sysRaw, Workload: "cascade", MsgsPerS: v.relay},
			Result{Round: i + 1, System: sysAgain, Workload: "cascade", MsgsPerS: v.again})
	}
	md := NewReport(rs).Markdown()
	for _, want := range []string{
		"| raw relay | yomo again | yomo ÷ raw relay, paired by round | yomo ÷ yomo again, paired by round |",
		"| 0.90× (0.80 – 1.00) | 0.80× (0.80 – 0.90) |",
	} {
		if !strings.Contains(md, want) {
			t.Fatalf("the table has no %q:\n%s", want, md)
		}
	}
	if slices.Contains(SystemNames(), sysAgain) {
		t.Fatalf("SystemNames() = %v: yomo-again runs only when asked for", SystemNames())
	}
	if err := (&Config{Systems: []string{sysYomo, sysAgain}}).defaults(); err != nil {
		t.Fatalf("asking for %s: %v", sysAgain, err)
	}
}
