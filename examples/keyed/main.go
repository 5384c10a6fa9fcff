// Command keyed runs a stateful function: a sliding average per sensor,
// kept in memory by whichever instance a sensor's key maps to. It scales
// the function from 2 to 3 instances and back while readings flow, and
// shows that every sensor stays with one instance at a time (so each
// average sees all of its sensor's readings, in order) and that only the
// keys of the joining or leaving instance move.
//
//	go run ./examples/keyed
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/yomo-dev/yomo"
)

const (
	tagReading yomo.Tag = 0x40 // sensor -> window
	tagAverage yomo.Tag = 0x41 // window -> back to the sensor gateway
	window              = 4    // readings per average
	sensors             = 12
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "keyed:", err)
		os.Exit(1)
	}
}

// instance is one instance of the "window" function: its state is its own.
type instance struct {
	id   string
	mu   sync.Mutex
	last map[string][]float64 // per sensor: the last readings
	seen map[string]bool      // sensors this instance handled in the current phase
	fn   *yomo.StreamFunction
}

func (in *instance) handle(c yomo.Context) {
	key := c.(yomo.MessageContext).Key()
	v := math.Float64frombits(binary.BigEndian.Uint64(c.Data()))
	in.mu.Lock()
	w := append(in.last[key], v)
	if len(w) > window {
		w = w[1:]
	}
	in.last[key] = w
	in.seen[key] = true
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	in.mu.Unlock()
	out := make([]byte, 8)
	binary.BigEndian.PutUint64(out, math.Float64bits(sum/float64(len(w))))
	_ = c.(yomo.MessageContext).WriteMessage(yomo.Message{Tag: tagAverage, Data: out})
}

func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))
	z, err := yomo.NewZipper("edge", quiet)
	if err != nil {
		return err
	}
	defer z.Close()

	start := func(id string) (*instance, error) {
		in := &instance{id: id, last: map[string][]float64{}, seen: map[string]bool{}}
		in.fn = yomo.NewStreamFunction("window", "", yomo.WithInMemory(z), quiet)
		in.fn.SetObserveDataTags(tagReading)
		if err := in.fn.SetHandler(in.handle); err != nil {
			return nil, err
		}
		return in, in.fn.Connect(ctx)
	}
	var mu sync.Mutex
	averages := 0
	gw := yomo.NewSource("gateway", "", yomo.WithInMemory(z), quiet)
	gw.SetObserveDataTags(tagAverage)
	gw.SetReceiveHandler(func(yomo.Tag, []byte) { mu.Lock(); averages++; mu.Unlock() })
	if err := gw.Connect(ctx); err != nil {
		return err
	}
	defer gw.Close()

	// phase writes a round of readings and reports which instance each
	// sensor went to.
	reading := 0
	phase := func(name string, ins []*instance) (map[string]string, error) {
		for _, in := range ins {
			in.mu.Lock()
			clear(in.seen)
			in.mu.Unlock()
		}
		mu.Lock()
		averages = 0
		mu.Unlock()
		b := make([]byte, 8)
		for range window {
			for s := range sensors {
				reading++
				binary.BigEndian.PutUint64(b, math.Float64bits(20+float64(reading%7)))
				if err := gw.WriteMessage(yomo.Message{Tag: tagReading, Data: b, Key: fmt.Sprintf("sensor-%02d", s)}); err != nil {
					return nil, err
				}
			}
		}
		for {
			mu.Lock()
			n := averages
			mu.Unlock()
			if n == window*sensors {
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%s: %d of %d averages came back: %w", name, n, window*sensors, ctx.Err())
			case <-time.After(5 * time.Millisecond):
			}
		}
		owner := map[string]string{}
		for _, in := range ins {
			in.mu.Lock()
			for k := range in.seen {
				if prev, dup := owner[k]; dup {
					in.mu.Unlock()
					return nil, fmt.Errorf("%s: %s went to %s and %s", name, k, prev, in.id)
				}
				owner[k] = in.id
			}
			in.mu.Unlock()
		}
		count := map[string]int{}
		for _, id := range owner {
			count[id]++
		}
		ids := make([]string, 0, len(count))
		for id := range count {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		fmt.Fprintf(out, "%s: each of %d sensors on one instance;", name, sensors)
		for _, id := range ids {
			fmt.Fprintf(out, " %s has %d", id, count[id])
		}
		fmt.Fprintln(out)
		return owner, nil
	}
	waitInstances := func(n int) error {
		for {
			if f, _ := z.Stats().Function("window"); f.Instances == n {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	a, err := start("a")
	if err != nil {
		return err
	}
	defer a.fn.Close()
	b, err := start("b")
	if err != nil {
		return err
	}
	defer b.fn.Close()
	if err := waitInstances(2); err != nil {
		return err
	}
	two, err := phase("2 instances", []*instance{a, b})
	if err != nil {
		return err
	}

	c, err := start("c")
	if err != nil {
		return err
	}
	if err := waitInstances(3); err != nil {
		return err
	}
	three, err := phase("3 instances", []*instance{a, b, c})
	if err != nil {
		return err
	}
	moved, toC := 0, 0
	for k, id := range three {
		if id != two[k] {
			moved++
			if id == "c" {
				toC++
			}
		}
	}
	fmt.Fprintf(out, "scaling up moved %d sensors, all of them to c: %v\n", moved, moved == toC)

	c.fn.Close()
	if err := waitInstances(2); err != nil {
		return err
	}
	back, err := phase("back to 2", []*instance{a, b})
	if err != nil {
		return err
	}
	same := true
	for k, id := range back {
		same = same && id == two[k]
	}
	fmt.Fprintf(out, "scaling down: every sensor is back where it was: %v\n", same)
	return nil
}
