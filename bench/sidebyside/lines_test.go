package sidebyside

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// linesRound is one round's cells of the rows the lines test uses.
func linesRound(round int, sys string, cascade, fanout, rssKiB float64, refused int) []Result {
	return []Result{
		{Round: round, System: sys, Workload: "cascade", MsgsPerS: cascade},
		{Round: round, System: sys, Workload: "fanout", MsgsPerS: fanout},
		{Round: round, System: sys, Workload: "connect", Clients: 100, Connected: 100 - refused, Refused: refused,
			ConnectMs: 500, RouterHWMKB: int64(rssKiB)},
	}
}

// lineRow returns the lines table's row that starts with label.
func lineRow(t *testing.T, md, label string) string {
	t.Helper()
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| "+label+" |") && strings.Count(l, "|") == 7 {
			return l
		}
	}
	t.Fatalf("no line row %q in:\n%s", label, md)
	return ""
}

// Each row with a line gets yomo's ratio to its comparator by the medians
// and paired by round, and a verdict: met when both are on the line's
// side, split when one is, not met when neither; memory is a line of at
// most 1/0.9, and one client of yomo that failed to connect fails its
// line.
func TestLinesTable(t *testing.T) {
	var rs []Result
	// cascade: yomo 0.95× the relay in every round, at rates that differ
	// from round to round: met, paired with nothing to resample, by the
	// medians with an interval as wide as the rounds differ. fan-out:
	// medians 100 against 100, paired 0.8, 0.87, 1.26 (median 0.87):
	// split. Peak RSS: 1.12× in every round: not met.
	yomoFan := []float64{80, 100, 120}
	relayFan := []float64{100, 115, 95}
	for i := range 3 {
		rs = append(rs, linesRound(i+1, sysYomo, 95*float64(i+1), yomoFan[i], 112, 0)...)
		rs = append(rs, linesRound(i+1, sysRaw, 100*float64(i+1), relayFan[i], 100, 0)...)
	}
	md := NewReport(rs).Markdown()
	for label, want := range map[string]string{
		"cascade through 2 routers, 1 KiB":   "| 0.950× [0.950 – 0.950] | 3 | met |",
		"fan-out ×4, 1 KiB, per consumer":    "| ≥ 0.9× relay | 1.000×",
		"100 clients: router peak RSS":       "| ≤ 1.11× relay | 1.120× [1.120 – 1.120] | 1.120× [1.120 – 1.120] | 3 | **not met** |",
		"clients that failed to connect":     "| none | 0 of 300 | | 3 | met |",
		"100 clients at once: all connected": "| 1.000× [1.000 – 1.000] | 1.000× [1.000 – 1.000] | 3 | met |",
	} {
		if row := lineRow(t, md, label); !strings.Contains(row, want) {
			t.Errorf("row %q = %q, want it to contain %q", label, row, want)
		}
	}
	if c := lineRow(t, md, "cascade through 2 routers, 1 KiB"); !strings.Contains(c, "| 0.950× [0.317 – 2.850] |") {
		t.Errorf("cascade row = %q: want the medians' interval [0.317 – 2.850] (95, 190, 285 against 100, 200, 300 resampled apart)", c)
	}
	fan := lineRow(t, md, "fan-out ×4, 1 KiB, per consumer")
	if !strings.Contains(fan, "| 0.870× [") || !strings.HasSuffix(fan, "| **split** |") {
		t.Errorf("fan-out row = %q, want paired 0.870× and split", fan)
	}
	// The paired interval holds the paired median and lies within the
	// rounds' ratios (0.8 – 1.26).
	m := regexp.MustCompile(`\| 0\.870× \[([0-9.]+) – ([0-9.]+)\]`).FindStringSubmatch(fan)
	if m == nil {
		t.Fatalf("fan-out row %q has no paired interval", fan)
	}
	lo, _ := strconv.ParseFloat(m[1], 64)
	hi, _ := strconv.ParseFloat(m[2], 64)
	if lo > 0.870 || hi < 0.870 || lo < 0.79 || hi > 1.27 || lo == hi {
		t.Errorf("paired interval [%v – %v]: want it around 0.870, within the rounds' 0.8 – 1.26", lo, hi)
	}
	if again := NewReport(rs).Markdown(); again != md {
		t.Errorf("the same results rendered twice differ: the intervals must not depend on the run")
	}

	// One refused client of yomo's fails the line of none.
	rs = append(rs, linesRound(4, sysYomo, 95, 100, 100, 1)...)
	rs = append(rs, linesRound(4, sysRaw, 100, 100, 100, 0)...)
	if row := lineRow(t, NewReport(rs).Markdown(), "clients that failed to connect"); !strings.Contains(row, "| 1 of 400 | | 4 | **not met** |") {
		t.Errorf("failed clients row = %q, want 1 of 400, not met", row)
	}

	// Without a comparator there is no table of lines.
	var alone []Result
	for i := range 3 {
		alone = append(alone, linesRound(i+1, sysYomo, 95, 100, 100, 0)...)
		alone = append(alone, linesRound(i+1, sysAgain, 95, 100, 100, 0)...)
	}
	if md := NewReport(alone).Markdown(); strings.Contains(md, "The lines of issue 16") {
		t.Errorf("a run of yomo against itself has a table of lines:\n%s", md)
	}
}

// Pooled runs keep their own rounds: the second run's round 1 follows the
// first run's last, so a yomo cell is never paired with the relay's of
// another run.
func TestPool(t *testing.T) {
	a := append(linesRound(1, sysYomo, 100, 100, 100, 0), linesRound(2, sysRaw, 200, 100, 100, 0)...)
	b := append(linesRound(1, sysRaw, 100, 100, 100, 0), linesRound(2, sysYomo, 50, 100, 100, 0)...)
	rs := Pool(a, b)
	var rounds []int
	for _, x := range rs {
		if x.Workload == "cascade" {
			rounds = append(rounds, x.Round)
		}
	}
	if got, want := rounds, []int{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("pooled rounds of the cascade = %v, want %v", got, want)
	}
	r := NewReport(rs)
	var m metric
	for _, x := range r.metrics() {
		if x.key == "cascade" {
			m = x
		}
	}
	if got := r.pairedRatio(m, sysYomo, sysRaw); got != "–" {
		t.Fatalf("pooled runs paired across runs: %q, want no pair", got)
	}
	if len(a) != 6 || a[0].Round != 1 || b[0].Round != 1 {
		t.Fatalf("Pool changed its arguments")
	}
}
