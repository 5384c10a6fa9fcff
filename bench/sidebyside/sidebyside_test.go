package sidebyside

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain: the child processes of a run are this test binary, re-executed.
// In the orchestrator, every goroutine must be gone at the end (goleak).
func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain())
	}
	goleak.VerifyTestMain(m)
}

// TestQuick runs every workload on every system briefly, as separate
// processes, and checks that each delivered something: a smoke test of the
// harness, not a measurement.
func TestQuick(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	results, err := Run(ctx, Config{Quick: true, Log: &log})
	t.Log("\n" + log.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := len(defaultSystems) * len(workloads); len(results) != want { // yomo-again runs only when asked for
		t.Fatalf("%d cells, want %d", len(results), want)
	}
	for _, r := range results {
		name := r.System + "/" + r.Workload
		switch {
		case r.Err != "":
			t.Errorf("%s: %s", name, r.Err)
		case r.Workload == "connect" && r.Connected == 0:
			t.Errorf("%s: no client connected (%s)", name, r.FirstErr)
		case r.Workload == "connect" && r.RouterHWMKB <= 0:
			t.Errorf("%s: no router peak RSS", name)
		case r.Workload == "rtt" && (r.Received == 0 || r.P50us <= 0):
			t.Errorf("%s: no round trip completed", name)
		case r.Workload != "connect" && r.Workload != "rtt" && (r.MinRecv <= 0 || r.MsgsPerS <= 0):
			t.Errorf("%s: a consumer received nothing (sent %d, received %d)", name, r.Sent, r.Received)
		}
	}
	rep := NewReport(results)
	md := rep.Markdown()
	for _, s := range defaultSystems {
		if !strings.Contains(md, systems[s].name) {
			t.Errorf("table lacks %s:\n%s", systems[s].name, md)
		}
	}
	if !strings.Contains(string(rep.SVG()), "</svg>") {
		t.Error("no SVG")
	}
	csv := rep.CSV()
	if n := strings.Count(string(csv), "\n"); n != len(results)+1 {
		t.Errorf("CSV has %d lines, want %d", n, len(results)+1)
	}
	back, err := ReadCSV(csv)
	if err != nil {
		t.Fatal(err)
	}
	if again := NewReport(back).CSV(); string(again) != string(csv) {
		t.Errorf("CSV does not survive ReadCSV:\n%s\nbecame\n%s", csv, again)
	}
}

// TestChildExitsWithStdin checks that a child whose orchestrator goes away
// (stdin closed) exits by itself.
func TestChildExitsWithStdin(t *testing.T) {
	dir := t.TempDir()
	if err := writeCerts(dir); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, info, err := startProc(ctx, exe, "router", "-role", "router", "-system", sysYomo, "-certs", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info, "127.0.0.1:") {
		t.Errorf("router listens on %q, want 127.0.0.1", info)
	}
	_ = p.stdin.Close()
	select {
	case <-p.done:
		if !p.state.Success() {
			t.Errorf("child exited with %v: %s", p.state, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		p.kill()
		t.Fatal("child did not exit after its stdin closed")
	}
}
