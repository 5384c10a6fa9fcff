package sidebyside

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"html"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Report holds the results of a run and derives medians from them.
type Report struct {
	// Notes are printed, one per line, above the table (machine, load).
	Notes   []string
	results []Result
	systems []string // present, in table order
	clients int
}

// NewReport groups results by system and workload.
func NewReport(rs []Result) *Report {
	r := &Report{results: rs}
	for _, s := range systemOrder {
		if slices.ContainsFunc(rs, func(x Result) bool { return x.System == s }) {
			r.systems = append(r.systems, s)
		}
	}
	for _, x := range rs {
		r.clients = max(r.clients, x.Clients)
	}
	return r
}

// Failed counts the cells that failed.
func (r *Report) Failed() int {
	n := 0
	for _, x := range r.results {
		if x.Err != "" {
			n++
		}
	}
	return n
}

// A metric is one row of the table.
type metric struct {
	key      string // names the row for the lines (lines.go)
	workload string
	label    string
	unit     string
	lower    bool // lower is better
	value    func(Result) float64
}

func (r *Report) metrics() []metric {
	return []metric{
		{"16B", "16B", "16 B", "msgs/s", false, func(x Result) float64 { return x.MsgsPerS }},
		{"1KiB", "1KiB", "1 KiB", "msgs/s", false, func(x Result) float64 { return x.MsgsPerS }},
		{"1KiB-cpu", "1KiB", "1 KiB, CPU of the 3 processes", "µs/msg", true, func(x Result) float64 { return x.CPUusMsg }},
		{"64KiB", "64KiB", "64 KiB", "MB/s", false, func(x Result) float64 { return x.MBPerS }},
		{"rtt-p50", "rtt", "round trip 16 B, p50", "µs", true, func(x Result) float64 { return x.P50us }},
		{"rtt-p99", "rtt", "round trip 16 B, p99", "µs", true, func(x Result) float64 { return x.P99us }},
		{"cascade", "cascade", "cascade through 2 routers, 1 KiB", "msgs/s", false, func(x Result) float64 { return x.MsgsPerS }},
		{"fanout", "fanout", "fan-out ×4, 1 KiB, per consumer", "msgs/s", false, func(x Result) float64 { return x.MsgsPerS }},
		{"connect-ms", "connect", fmt.Sprintf("%d clients at once: all connected", r.clients), "ms", true, func(x Result) float64 { return x.ConnectMs }},
		{"connect-cpu", "connect", fmt.Sprintf("%d clients: CPU of the router and the clients", r.clients), "ms", true, func(x Result) float64 { return x.ConnectCPUms }},
		{"connect-rss", "connect", fmt.Sprintf("%d clients: router peak RSS", r.clients), "MiB", true, func(x Result) float64 { return float64(x.RouterHWMKB) / 1024 }},
		{"connect-failed", "connect", fmt.Sprintf("%d clients: failed to connect", r.clients), "clients", true, func(x Result) float64 { return float64(x.Refused) }},
	}
}

// cells returns the successful results of one system and workload.
func (r *Report) cells(sys, wl string) (ok []Result, failed int) {
	for _, x := range r.results {
		if x.System != sys || x.Workload != wl {
			continue
		}
		if x.Err != "" {
			failed++
			continue
		}
		ok = append(ok, x)
	}
	return ok, failed
}

// median of m over the successful rounds; NaN when there are none.
func (r *Report) median(sys string, m metric) (float64, int, int) {
	ok, failed := r.cells(sys, m.workload)
	return median(valuesOf(ok, m)), len(ok), failed
}

// lossNote describes the median loss of a system in a workload ("" when
// none): the share of expected deliveries missing, or of clients that
// failed to connect.
func (r *Report) lossNote(sys, wl string) string {
	ok, _ := r.cells(sys, wl)
	var fr []float64
	for _, x := range ok {
		switch {
		case x.Workload == "connect" && x.Clients > 0:
			fr = append(fr, float64(x.Refused)/float64(x.Clients))
		case x.Expected > 0:
			fr = append(fr, float64(x.Lost())/float64(x.Expected))
		}
	}
	worst := 0.0
	for _, f := range fr {
		worst = max(worst, f)
	}
	if worst == 0 {
		return ""
	}
	what := "lost"
	if wl == "connect" {
		what = "failed"
	}
	return fmt.Sprintf("%s: median %.2g%%, worst round %.2g%%", what, 100*median(fr), 100*worst)
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2]
	}
	return (vs[n/2-1] + vs[n/2]) / 2
}

func format(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case unit == "clients":
		return fmt.Sprintf("%.0f", v)
	case unit == "msgs/s" && v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case unit == "msgs/s" && v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (r *Report) has(sys string) bool { return slices.Contains(r.systems, sys) }

// Markdown renders the medians table, the losses and the failures.
func (r *Report) Markdown() string {
	var b strings.Builder
	rounds := 0
	for _, x := range r.results {
		rounds = max(rounds, x.Round)
	}
	fmt.Fprintf(&b, "Medians of %d interleaved round(s); each cell its own processes on 127.0.0.1.\n\n", rounds)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
	ratio := r.has(sysYomo) && r.has(sysNATSTLS)
	var pairedWith []string // yomo is divided by these, round by round
	for _, s := range []string{sysRaw, sysAgain} {
		if r.has(sysYomo) && r.has(s) {
			pairedWith = append(pairedWith, s)
		}
	}
	b.WriteString("| workload | unit |")
	for _, s := range r.systems {
		fmt.Fprintf(&b, " %s |", systems[s].name)
	}
	if ratio {
		b.WriteString(" yomo ÷ NATS TLS |") // of the values: for µs, ms and MiB above 1 means yomo costs more
	}
	for _, s := range pairedWith {
		fmt.Fprintf(&b, " yomo ÷ %s, paired by round |", systems[s].name)
	}
	b.WriteString("\n|---|---|")
	for range r.systems {
		b.WriteString("---:|")
	}
	if ratio {
		b.WriteString("---:|")
	}
	for range pairedWith {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, m := range r.metrics() {
		if !r.hasWorkload(m.workload) {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", m.label, m.unit)
		for _, s := range r.systems {
			v, n, failed := r.median(s, m)
			cell := format(v, m.unit)
			if note := r.lossNote(s, m.workload); note != "" && m.unit != "clients" && m.unit != "MiB" {
				cell += " (" + note + ")"
			}
			if failed > 0 {
				cell += fmt.Sprintf(" (%d of %d rounds failed)", failed, n+failed)
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		if ratio {
			y, _, _ := r.median(sysYomo, m)
			n, _, _ := r.median(sysNATSTLS, m)
			fmt.Fprintf(&b, " %s |", ratioString(y, n))
		}
		for _, to := range pairedWith {
			cell := "–" // a ratio of failure counts says nothing
			if m.unit != "clients" {
				cell = r.pairedRatio(m, sysYomo, to)
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	if l := r.linesTable(); l != "" {
		b.WriteString("\n" + l)
	}
	b.WriteString("\n" + r.rangeTable())
	b.WriteString("\n" + r.lossTable())
	if f := r.failures(); f != "" {
		b.WriteString("\nFailed cells:\n\n" + f)
	}
	return b.String()
}

// pairedRatio is the median, over the rounds where both cells succeeded,
// of a's value divided by b's in the same round, with the lowest and the
// highest: cells of one round ran minutes apart at most, so a pair
// shares the machine's load of the moment, which medians taken apart do
// not.
func (r *Report) pairedRatio(m metric, a, b string) string {
	rs := r.pairedRatios(m, a, b)
	if len(rs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f× (%.2f – %.2f)", median(rs), slices.Min(rs), slices.Max(rs))
}

// pairedRatios are a's values of m divided by b's of the same round, in
// the order of the rounds, over the rounds where both succeeded.
func (r *Report) pairedRatios(m metric, a, b string) []float64 {
	byRound := func(sys string) map[int]float64 {
		ok, _ := r.cells(sys, m.workload)
		vs := make(map[int]float64, len(ok))
		for _, x := range ok {
			vs[x.Round] = m.value(x)
		}
		return vs
	}
	av, bv := byRound(a), byRound(b)
	var rs []float64
	for _, round := range slices.Sorted(maps.Keys(av)) {
		x := av[round]
		if y, ok := bv[round]; ok && y != 0 && !math.IsNaN(x) && !math.IsNaN(y) {
			rs = append(rs, x/y)
		}
	}
	return rs
}

// values are sys's values of m over its successful rounds.
func (r *Report) values(sys string, m metric) []float64 {
	ok, _ := r.cells(sys, m.workload)
	return valuesOf(ok, m)
}

func valuesOf(cells []Result, m metric) []float64 {
	vs := make([]float64, 0, len(cells))
	for _, x := range cells {
		vs = append(vs, m.value(x))
	}
	return vs
}

func ratioString(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func (r *Report) hasWorkload(wl string) bool {
	return slices.ContainsFunc(r.results, func(x Result) bool { return x.Workload == wl })
}

// rangeTable shows the lowest and highest value of each row over the
// rounds: how much the medians can be trusted on this machine.
func (r *Report) rangeTable() string {
	var b strings.Builder
	b.WriteString("Range over the rounds (lowest – highest):\n\n| workload | unit |")
	for _, s := range r.systems {
		fmt.Fprintf(&b, " %s |", systems[s].name)
	}
	b.WriteString("\n|---|---|")
	for range r.systems {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, m := range r.metrics() {
		if !r.hasWorkload(m.workload) {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", m.label, m.unit)
		for _, s := range r.systems {
			ok, _ := r.cells(s, m.workload)
			if len(ok) == 0 {
				b.WriteString(" – |")
				continue
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, x := range ok {
				v := m.value(x)
				lo, hi = min(lo, v), max(hi, v)
			}
			fmt.Fprintf(&b, " %s – %s |", format(lo, m.unit), format(hi, m.unit))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// lossTable: for each workload and system, deliveries missing of those
// expected (sent × consumers; round trip: requests without a reply;
// connections: clients that failed to connect), summed over rounds.
func (r *Report) lossTable() string {
	var b strings.Builder
	b.WriteString("Losses, summed over all rounds: messages expected (sent × consumers) minus delivered; for the round trip, requests without a reply within 1 s; for the connections, clients that failed to connect. In brackets, errors the clients got asynchronously (NATS: slow consumer, connection closed by the server; yomo: dropped frames, write failures).\n\n")
	b.WriteString("| workload |")
	for _, s := range r.systems {
		fmt.Fprintf(&b, " %s |", systems[s].name)
	}
	b.WriteString("\n|---|")
	for range r.systems {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, w := range workloads {
		if !r.hasWorkload(w.name) {
			continue
		}
		fmt.Fprintf(&b, "| %s |", w.name)
		for _, s := range r.systems {
			ok, _ := r.cells(s, w.name)
			var lost, exp int64
			errs := 0
			for _, x := range ok {
				if w.connect {
					lost += int64(x.Refused)
					exp += int64(x.Clients)
					continue
				}
				lost += x.Lost()
				exp += x.Expected
				errs += x.AsyncErrs
			}
			cell := fmt.Sprintf("%d of %d", lost, exp)
			if errs > 0 {
				cell += fmt.Sprintf(" (%d)", errs)
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *Report) failures() string {
	var b strings.Builder
	for _, x := range r.results {
		if x.Err != "" {
			fmt.Fprintf(&b, "- round %d, %s, %s: %s\n", x.Round, x.Workload, x.System, x.Err)
		}
	}
	return b.String()
}

// CSV has one line per cell and round.
func (r *Report) CSV() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{"round", "system", "workload", "sent", "received", "expected", "lost", "min_received",
		"msgs_per_s", "mb_per_s", "cpu_us_per_msg", "p50_us", "p99_us", "async_errors",
		"clients", "connected", "refused", "connect_ms", "router_peak_rss_kib", "router_rss_kib", "router_stats", "first_error", "error",
		"connect_cpu_ms", "connect_router_cpu_ms"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, x := range r.results {
		_ = w.Write([]string{i(int64(x.Round)), x.System, x.Workload, i(x.Sent), i(x.Received), i(x.Expected), i(x.Lost()), i(x.MinRecv),
			f(x.MsgsPerS), f(x.MBPerS), f(x.CPUusMsg), f(x.P50us), f(x.P99us), i(int64(x.AsyncErrs)),
			i(int64(x.Clients)), i(int64(x.Connected)), i(int64(x.Refused)), f(x.ConnectMs), i(x.RouterHWMKB), i(x.RouterRSSKB), x.RouterStats, x.FirstErr, x.Err,
			f(x.ConnectCPUms), f(x.ConnectRouterCPUms)})
	}
	w.Flush()
	return buf.Bytes()
}

// SVG draws, for every row of the table, one bar per system: its median
// relative to NATS TLS's, oriented so that longer is better (for costs and
// latencies, NATS TLS's value divided by the system's).
func (r *Report) SVG() []byte {
	ref := sysNATSTLS
	if !r.has(ref) && len(r.systems) > 0 {
		ref = r.systems[0]
	}
	colors := map[string]string{sysYomo: "#d9480f", sysNATS: "#1c7ed6", sysNATSTLS: "#364fc7", sysRaw: "#868e96", sysAgain: "#f08c00"}
	type row struct {
		label string
		vals  []float64 // per system, NaN when missing
		raw   []string
	}
	var rows []row
	maxV := 1.0
	for _, m := range r.metrics() {
		if !r.hasWorkload(m.workload) || m.unit == "clients" {
			continue
		}
		rv, _, _ := r.median(ref, m)
		rw := row{label: m.label + " (" + m.unit + ")"}
		for _, s := range r.systems {
			v, _, _ := r.median(s, m)
			rel := v / rv
			if m.lower {
				rel = rv / v
			}
			if math.IsInf(rel, 0) || rel < 0 {
				rel = math.NaN()
			}
			if !math.IsNaN(rel) {
				maxV = max(maxV, rel)
			}
			rw.vals = append(rw.vals, rel)
			raw := format(v, m.unit)
			if note := r.lossNote(s, m.workload); note != "" && m.unit != "MiB" {
				raw += "; " + note
			}
			rw.raw = append(rw.raw, raw)
		}
		rows = append(rows, rw)
	}
	const (
		left, barH, gap, plotW, top = 330, 14, 14, 520, 60
	)
	scale := float64(plotW) / maxV
	groupH := len(r.systems)*barH + gap
	height := top + len(rows)*groupH + 56
	width := left + plotW + 300
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="15" font-weight="bold">Side by side, separate processes on 127.0.0.1: relative to %s (longer is better)</text>`+"\n", html.EscapeString(systems[ref].name))
	fmt.Fprintf(&b, `<text x="10" y="%d" fill="#444">Rates: system ÷ %[2]s. Costs and latencies (µs, ms, MiB): %[2]s ÷ system. Medians; raw values in brackets.</text>`+"\n", height-14, html.EscapeString(systems[ref].name))
	x := 10
	for _, s := range r.systems {
		fmt.Fprintf(&b, `<rect x="%d" y="32" width="12" height="12" fill="%s"/><text x="%d" y="43">%s</text>`+"\n", x, colors[s], x+16, html.EscapeString(systems[s].name))
		x += 120
	}
	one := left + int(scale)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#444" stroke-dasharray="4 3"/>`+"\n", one, top-6, one, height-48)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">1× = %s</text>`+"\n", one, height-34, html.EscapeString(systems[ref].name))
	for i, rw := range rows {
		y := top + i*groupH
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+len(r.systems)*barH/2+4, html.EscapeString(rw.label))
		for j, s := range r.systems {
			by := y + j*barH
			v := rw.vals[j]
			if math.IsNaN(v) {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">n/a</text>`+"\n", left+4, by+barH-3)
				continue
			}
			w := int(v * scale)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, by, max(w, 1), barH-2, colors[s])
			fmt.Fprintf(&b, `<text x="%d" y="%d">%.2f× (%s)</text>`+"\n", left+w+4, by+barH-3, v, html.EscapeString(rw.raw[j]))
		}
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// ReadCSV reads results written by Report.CSV, to render a saved run again.
func ReadCSV(data []byte) ([]Result, error) {
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("empty CSV")
	}
	col := make(map[string]int)
	for i, h := range recs[0] {
		col[h] = i
	}
	var rs []Result
	for n, rec := range recs[1:] {
		var perr error
		get := func(k string) string {
			i, ok := col[k]
			if !ok || i >= len(rec) {
				perr = fmt.Errorf("line %d: no column %q", n+2, k)
				return ""
			}
			return rec[i]
		}
		i := func(k string) int64 {
			v, err := strconv.ParseInt(get(k), 10, 64)
			if err != nil && perr == nil {
				perr = fmt.Errorf("line %d, %s: %w", n+2, k, err)
			}
			return v
		}
		f := func(k string) float64 {
			v, err := strconv.ParseFloat(get(k), 64)
			if err != nil && perr == nil {
				perr = fmt.Errorf("line %d, %s: %w", n+2, k, err)
			}
			return v
		}
		r := Result{
			Round: int(i("round")), System: get("system"), Workload: get("workload"),
			Sent: i("sent"), Received: i("received"), Expected: i("expected"), MinRecv: i("min_received"),
			MsgsPerS: f("msgs_per_s"), MBPerS: f("mb_per_s"), CPUusMsg: f("cpu_us_per_msg"),
			P50us: f("p50_us"), P99us: f("p99_us"), AsyncErrs: int(i("async_errors")),
			Clients: int(i("clients")), Connected: int(i("connected")), Refused: int(i("refused")),
			ConnectMs: f("connect_ms"), RouterHWMKB: i("router_peak_rss_kib"), RouterRSSKB: i("router_rss_kib"),
			FirstErr: get("first_error"), Err: get("error"),
		}
		if _, ok := col["router_stats"]; ok {
			r.RouterStats = get("router_stats")
		}
		if _, ok := col["connect_cpu_ms"]; ok { // files written before this column have neither
			r.ConnectCPUms, r.ConnectRouterCPUms = f("connect_cpu_ms"), f("connect_router_cpu_ms")
		}
		if perr != nil {
			return nil, perr
		}
		rs = append(rs, r)
	}
	return rs, nil
}
