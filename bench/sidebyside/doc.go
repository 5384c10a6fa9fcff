// Package sidebyside runs yomo, NATS (TCP and TLS 1.3) and a raw quic-go
// relay side by side, each as separate processes on 127.0.0.1: a router
// process (zipper, nats-server or relay), a producer process and a
// consumer process, all re-executions of the running binary. Run drives
// interleaved rounds of every workload on every system and returns one
// Result per cell; NewReport turns them into medians, a Markdown table, a
// CSV and an SVG chart.
//
// The binary that calls Run must hand its child processes to ChildMain
// before doing anything else, in main or in TestMain:
//
//	func main() {
//		if sidebyside.IsChild() {
//			os.Exit(sidebyside.ChildMain())
//		}
//		results, err := sidebyside.Run(ctx, sidebyside.Config{Rounds: 3})
//		...
//		fmt.Print(sidebyside.NewReport(results).Markdown())
//	}
//
// Each cell starts its processes, waits for their "ready" line, warms up,
// measures, and stops them (stdin closed, then killed after 5 s); a child
// also dies with the orchestrator (Pdeathsig on Linux) and after a bounded
// life. See bench/README.md for what each workload measures.
package sidebyside
