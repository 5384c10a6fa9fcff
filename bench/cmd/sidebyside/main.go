// Command sidebyside runs yomo, NATS (TCP and TLS 1.3) and a raw quic-go
// relay side by side, as separate processes on 127.0.0.1, and prints a
// Markdown table of medians.
//
//	cd bench && go run ./cmd/sidebyside -rounds 3 -out results.md -csv results.csv -svg results.svg
//	cd bench && go run ./cmd/sidebyside -quick
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/yomo-dev/yomo/bench/sidebyside"
)

func main() {
	if sidebyside.IsChild() {
		os.Exit(sidebyside.ChildMain())
	}
	var (
		cfg       sidebyside.Config
		out       = flag.String("out", "", "also write the Markdown table to this file")
		csvPath   = flag.String("csv", "", "write every cell of every round to this CSV file")
		svgPath   = flag.String("svg", "", "write a bar chart (relative to NATS TLS) to this SVG file")
		systems   = flag.String("systems", "", "comma-separated systems (default "+strings.Join(sidebyside.SystemNames(), ",")+"; yomo-again runs yomo once more, for the A/A comparison)")
		from      = flag.String("from", "", "render a saved run (a -csv file) instead of running, or several (comma-separated) pooled into one; notes come from -note")
		notes     = flag.String("note", "", "with -from: notes above the table, separated by '|'")
		workloads = flag.String("workloads", "", "comma-separated workloads (default all: "+strings.Join(sidebyside.WorkloadNames(), ",")+")")
	)
	flag.IntVar(&cfg.Rounds, "rounds", 0, "interleaved rounds (default 3; 1 with -quick)")
	flag.DurationVar(&cfg.Duration, "dur", 0, "traffic per cell (default 2.5s; 200ms with -quick)")
	flag.IntVar(&cfg.Clients, "clients", 0, "clients of the connection cell (default 1000; 50 with -quick)")
	flag.BoolVar(&cfg.Quick, "quick", false, "run every cell briefly: a smoke test, not a measurement")
	flag.Parse()
	if *systems != "" {
		cfg.Systems = strings.Split(*systems, ",")
	}
	if *workloads != "" {
		cfg.Workloads = strings.Split(*workloads, ",")
	}
	cfg.Log = os.Stderr

	if *from != "" {
		var runs [][]sidebyside.Result
		for _, path := range strings.Split(*from, ",") {
			data, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintln(os.Stderr, "sidebyside:", err)
				os.Exit(1)
			}
			results, err := sidebyside.ReadCSV(data)
			if err != nil {
				fmt.Fprintf(os.Stderr, "sidebyside: %s: %v\n", path, err)
				os.Exit(1)
			}
			runs = append(runs, results)
		}
		rep := sidebyside.NewReport(sidebyside.Pool(runs...))
		if *notes != "" {
			rep.Notes = strings.Split(*notes, "|")
		}
		if len(runs) > 1 {
			rep.Notes = append(rep.Notes, "Pooled from "+strings.ReplaceAll(*from, ",", ", ")+" (rounds renumbered in that order)")
		}
		output(rep, *out, *csvPath, *svgPath)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	machine, loadBefore := sidebyside.Machine(), sidebyside.LoadAverage()
	fmt.Fprintf(os.Stderr, "sidebyside: %s; load average %s\n", machine, loadBefore)
	results, err := sidebyside.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		if len(results) == 0 {
			os.Exit(1)
		}
	}
	rep := sidebyside.NewReport(results)
	rep.Notes = []string{
		"Machine: " + machine,
		fmt.Sprintf("Load average (1, 5, 15 min) before: %s, after: %s; %d cells in %v", loadBefore, sidebyside.LoadAverage(), len(results), time.Since(start).Round(time.Second)),
		"Command: sidebyside " + strings.Join(os.Args[1:], " "),
	}
	fmt.Fprintf(os.Stderr, "sidebyside: %d cells in %v\n", len(results), time.Since(start).Round(time.Second))
	output(rep, *out, *csvPath, *svgPath)
	if err != nil || rep.Failed() > 0 {
		os.Exit(1)
	}
}

// output prints the table and writes the files asked for.
func output(rep *sidebyside.Report, mdPath, csvPath, svgPath string) {
	md := rep.Markdown()
	fmt.Print(md)
	write := func(path string, data []byte) {
		if path == "" {
			return
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "sidebyside:", err)
			os.Exit(1)
		}
	}
	write(mdPath, []byte(md))
	write(csvPath, rep.CSV())
	write(svgPath, rep.SVG())
}
