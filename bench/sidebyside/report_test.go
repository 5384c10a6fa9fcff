package sidebyside

import (
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
