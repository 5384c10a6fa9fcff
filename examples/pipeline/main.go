// Command pipeline chains three small stream functions by tags, each
// doing one thing, and sends the final verdicts back to the source:
//
//	source --reading--> parse --parsed--> enrich --enriched--> alert --verdict--> source
//	                      \------------------invalid--------------------------> source
//
// Everything runs in one process over QUIC on localhost; in production
// each function would be its own program, anywhere the zipper is reachable.
//
//	go run ./examples/pipeline
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/yomo-dev/yomo"
)

// The tags are the pipeline's wiring: each function observes one and
// writes the next.
const (
	tagReading  yomo.Tag = 0x40 // "room celsius", written by the source
	tagParsed   yomo.Tag = 0x41 // reading as JSON, written by parse
	tagEnriched yomo.Tag = 0x42 // reading with its room's facts, written by enrich
	tagVerdict  yomo.Tag = 0x43 // a line for people, written by alert
	tagInvalid  yomo.Tag = 0x4f // why a reading was rejected, written by parse
)

// reading is what flows between the functions.
type reading struct {
	Room    string  `json:"room"`
	Celsius float64 `json:"celsius"`
	Floor   string  `json:"floor,omitempty"` // set by enrich
	Limit   float64 `json:"limit,omitempty"` // set by enrich
}

// parse turns "kitchen 21.5" into a reading, or explains why it cannot.
func parse(c yomo.Context) {
	room, temp, ok := strings.Cut(strings.TrimSpace(string(c.Data())), " ")
	if !ok {
		c.Write(tagInvalid, fmt.Appendf(nil, "invalid %q: want \"room celsius\"", c.Data()))
		return
	}
	celsius, err := strconv.ParseFloat(temp, 64)
	if err != nil {
		c.Write(tagInvalid, fmt.Appendf(nil, "invalid %q: %q is not a temperature", c.Data(), temp))
		return
	}
	b, _ := json.Marshal(reading{Room: room, Celsius: celsius})
	c.Write(tagParsed, b)
}

// rooms is what enrich knows about the building.
var rooms = map[string]struct {
	floor string
	limit float64
}{
	"kitchen":     {"ground floor", 30},
	"server-room": {"basement", 27},
	"freezer":     {"ground floor", -15},
}

// enrich adds the room's floor and temperature limit to a reading.
func enrich(c yomo.Context) {
	var r reading
	if err := json.Unmarshal(c.Data(), &r); err != nil {
		return // parse only writes valid JSON
	}
	r.Floor, r.Limit = "unknown floor", 35 // a safe default for rooms we do not know
	if info, ok := rooms[r.Room]; ok {
		r.Floor, r.Limit = info.floor, info.limit
	}
	b, _ := json.Marshal(r)
	c.Write(tagEnriched, b)
}

// alert decides whether a reading needs a person's attention.
func alert(c yomo.Context) {
	var r reading
	if err := json.Unmarshal(c.Data(), &r); err != nil {
		return
	}
	verdict := fmt.Sprintf("ok     %s (%s): %.1f°C, limit %.1f°C", r.Room, r.Floor, r.Celsius, r.Limit)
	if r.Celsius > r.Limit {
		verdict = fmt.Sprintf("ALERT  %s (%s): %.1f°C is above the %.1f°C limit", r.Room, r.Floor, r.Celsius, r.Limit)
	}
	c.Write(tagVerdict, []byte(verdict))
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	zipper, err := yomo.NewZipper("pipeline", quiet)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- zipper.Serve(ctx, pc) }() // returns once the zipper is closed
	defer func() {
		zipper.Close()
		if err := <-served; !errors.Is(err, yomo.ErrClosed) {
			fmt.Fprintln(out, "zipper stopped:", err)
		}
	}()
	addr := pc.LocalAddr().String()
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: zipper.RootCAs()})

	// The three functions: each observes one tag and writes the next.
	stages := []struct {
		name    string
		observe yomo.Tag
		handle  yomo.Handler
	}{
		{"parse", tagReading, parse},
		{"enrich", tagParsed, enrich},
		{"alert", tagEnriched, alert},
	}
	for _, s := range stages {
		f := yomo.NewStreamFunction(s.name, addr, trust, quiet)
		f.SetObserveDataTags(s.observe)
		if err := f.SetHandler(s.handle); err != nil {
			return err
		}
		if err := f.Connect(ctx); err != nil {
			return fmt.Errorf("function %s: %w", s.name, err)
		}
		defer f.Close()
	}

	// The source wants back the verdicts and the rejections of its readings.
	lines := []string{
		"kitchen 21.5",
		"server-room 31.2",
		"garage warm",
		"freezer -18.5",
		"attic 36.0",
	}
	results := make(chan string, len(lines))
	source := yomo.NewSource("thermometers", addr, trust, quiet)
	source.SetObserveDataTags(tagVerdict, tagInvalid)
	source.SetReceiveHandler(func(_ yomo.Tag, data []byte) {
		results <- string(data) // data is only valid during the call: copy it
	})
	if err := source.Connect(ctx); err != nil {
		return err
	}
	defer source.Close()

	for _, l := range lines {
		if err := source.Write(tagReading, []byte(l)); err != nil {
			return err
		}
		fmt.Fprintf(out, "source wrote %q\n", l)
	}
	// One answer comes back per reading: a verdict, or why it is invalid.
	for range lines {
		select {
		case r := <-results:
			fmt.Fprintf(out, "  back: %s\n", r)
		case <-ctx.Done():
			return fmt.Errorf("waiting for verdicts: %w", ctx.Err())
		}
	}

	st := zipper.Stats()
	for _, s := range stages {
		fs, _ := st.Function(s.name)
		var took uint64
		for _, t := range fs.Tags {
			took += t.Queued
		}
		fmt.Fprintf(out, "%-6s took %d, wrote %d, dropped %d\n", s.name, took, fs.FramesIn, fs.Dropped)
	}
	return nil
}
