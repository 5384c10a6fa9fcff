package sidebyside

// Report: stub replaced below.
type Report struct{ results []Result }

func NewReport(rs []Result) *Report { return &Report{results: rs} }
func (r *Report) Markdown() string  { return "" }
func (r *Report) CSV() []byte       { return nil }
func (r *Report) SVG() []byte       { return nil }
func (r *Report) Failed() int {
	n := 0
	for _, x := range r.results {
		if x.Err != "" {
			n++
		}
	}
	return n
}
