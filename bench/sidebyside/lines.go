package sidebyside

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// A line is one of issue 16's goals for a row: yomo's value divided by
// the comparator's, at least (or, for times and memory, at most) limit.
// Where quic-go puts NATS TLS's figure out of reach, the comparator is the
// raw quic-go relay and the line 0.9× its figure (1/0.9 for costs).
type line struct {
	key     string // the metric's
	against string // the comparator's system
	limit   float64
	atMost  bool
	text    string // the line, as the table shows it
}

var lines = []line{
	{"16B", sysNATS, 1.5, false, "≥ 1.5× NATS TCP"},
	{"1KiB", sysRaw, 0.9, false, "≥ 0.9× relay"},
	{"64KiB", sysRaw, 0.9, false, "≥ 0.9× relay"},
	{"rtt-p50", sysRaw, 1 / 0.9, true, "≤ 1.11× relay"},
	{"cascade", sysRaw, 0.9, false, "≥ 0.9× relay"},
	{"fanout", sysRaw, 0.9, false, "≥ 0.9× relay"},
	{"connect-ms", sysRaw, 1 / 0.9, true, "≤ 1.11× relay"},
	{"connect-rss", sysRaw, 1 / 0.9, true, "≤ 1.11× relay"},
}

func (l line) meets(ratio float64) bool {
	if math.IsNaN(ratio) {
		return false
	}
	if l.atMost {
		return ratio <= l.limit
	}
	return ratio >= l.limit
}

// bootstrapRounds is how many resamples a confidence interval is drawn
// from; bootstrapSeed makes a report of the same results the same.
const (
	bootstrapRounds = 4000
	bootstrapSeed   = 16
)

// interval is a 95 % percentile bootstrap interval: draw resamples the
// rounds and returns the statistic of that resample.
func interval(rng *rand.Rand, draw func(*rand.Rand) float64) (lo, hi float64) {
	vs := make([]float64, bootstrapRounds)
	for i := range vs {
		vs[i] = draw(rng)
	}
	slices.Sort(vs)
	return vs[int(0.025*bootstrapRounds)], vs[int(0.975*bootstrapRounds)-1]
}

// resample returns len(xs) values drawn from xs with replacement, in buf.
func resample(rng *rand.Rand, xs, buf []float64) []float64 {
	buf = buf[:0]
	for range xs {
		buf = append(buf, xs[rng.IntN(len(xs))])
	}
	return buf
}

// linesTable shows each row that has a line against it: yomo ÷ the
// comparator by the medians and paired by round, each with its 95 %
// bootstrap interval over the rounds, and whether the line is met.
// Empty unless the run has yomo and the comparator of some line.
func (r *Report) linesTable() string {
	byKey := make(map[string]metric)
	for _, m := range r.metrics() {
		byKey[m.key] = m
	}
	rng := rand.New(rand.NewPCG(bootstrapSeed, bootstrapSeed))
	var b strings.Builder
	for _, l := range lines {
		m := byKey[l.key]
		if !r.has(sysYomo) || !r.has(l.against) || !r.hasWorkload(m.workload) {
			continue
		}
		ys, cs := r.values(sysYomo, m), r.values(l.against, m)
		ps := r.pairedRatios(m, sysYomo, l.against)
		if len(ys) == 0 || len(cs) == 0 || len(ps) == 0 {
			continue
		}
		byMedians := median(ys) / median(cs)
		paired := median(ps)
		var yb, cb, pb []float64
		mlo, mhi := interval(rng, func(rng *rand.Rand) float64 {
			yb, cb = resample(rng, ys, yb), resample(rng, cs, cb)
			return median(yb) / median(cb)
		})
		plo, phi := interval(rng, func(rng *rand.Rand) float64 {
			pb = resample(rng, ps, pb)
			return median(pb)
		})
		verdict := "met"
		switch {
		case !l.meets(byMedians) && !l.meets(paired):
			verdict = "**not met**"
		case !l.meets(byMedians) || !l.meets(paired):
			verdict = "**split**"
		}
		if b.Len() == 0 {
			b.WriteString("The lines of issue 16: yomo ÷ the comparator by the medians and paired by round, each with its 95 % bootstrap interval over the rounds (resampled with replacement); met when both are on the line's side.\n\n")
			b.WriteString("| row | line | by the medians | paired by round | rounds | |\n|---|---|---:|---:|---:|---|\n")
		}
		fmt.Fprintf(&b, "| %s | %s | %.3f× [%.3f – %.3f] | %.3f× [%.3f – %.3f] | %d | %s |\n",
			m.label, l.text, byMedians, mlo, mhi, paired, plo, phi, len(ps), verdict)
	}
	if r.has(sysYomo) && r.hasWorkload("connect") {
		ok, _ := r.cells(sysYomo, "connect")
		failed, clients := 0, 0
		for _, x := range ok {
			failed += x.Refused
			clients += x.Clients
		}
		if b.Len() > 0 && clients > 0 {
			verdict := "met"
			if failed > 0 {
				verdict = "**not met**"
			}
			fmt.Fprintf(&b, "| clients that failed to connect | none | %d of %d | | %d | %s |\n", failed, clients, len(ok), verdict)
		}
	}
	return b.String()
}

// Pool makes one run of several: each run's rounds are numbered after
// the previous runs', so that pairing by round stays within a run.
func Pool(runs ...[]Result) []Result {
	var out []Result
	offset := 0
	for _, rs := range runs {
		last := 0
		for _, x := range rs {
			x.Round += offset
			last = max(last, x.Round)
			out = append(out, x)
		}
		offset = max(offset, last)
	}
	return out
}
