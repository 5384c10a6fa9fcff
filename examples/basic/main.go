// Command basic runs a zipper, a stream function and a source in one
// process over real QUIC on localhost, and prints what flowed.
//
//	go run ./examples/basic
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/yomo-dev/yomo"
)

// Tags: the source writes words, the function answers with them upper-cased.
const (
	tagWord  yomo.Tag = 0x10
	tagUpper yomo.Tag = 0x11
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "basic:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	// 1. A zipper on a free localhost port. Given no certificate it makes a
	//    self-signed one; clients in this process trust it via RootCAs.
	zipper, err := yomo.NewZipper("basic-zipper", quiet)
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
	fmt.Fprintf(out, "zipper listening on %s\n", addr)
	trust := yomo.WithTLSConfig(&tls.Config{RootCAs: zipper.RootCAs()})

	// 2. A stream function: upper-cases every word and writes it back.
	sfn := yomo.NewStreamFunction("uppercase", addr, trust, quiet)
	sfn.SetObserveDataTags(tagWord)
	err = sfn.SetHandler(func(c yomo.Context) {
		if err := c.Write(tagUpper, []byte(strings.ToUpper(string(c.Data())))); err != nil {
			fmt.Fprintln(os.Stderr, "uppercase: write:", err)
		}
	})
	if err != nil {
		return err
	}
	if err := sfn.Connect(ctx); err != nil {
		return err
	}
	defer sfn.Close()

	// 3. A source: writes words and receives the results (backflow).
	words := []string{"hello", "yomo", "stream", "processing"}
	results := make(chan string, len(words))
	source := yomo.NewSource("words", addr, trust, quiet)
	source.SetObserveDataTags(tagUpper)
	source.SetReceiveHandler(func(tag yomo.Tag, data []byte) {
		results <- string(data) // data is only valid during the call: copy it
	})
	if err := source.Connect(ctx); err != nil {
		return err
	}
	defer source.Close()

	for _, w := range words {
		if err := source.Write(tagWord, []byte(w)); err != nil {
			return err
		}
		fmt.Fprintf(out, "source wrote   %q\n", w)
	}
	for range words {
		select {
		case r := <-results:
			fmt.Fprintf(out, "source got back %q\n", r)
		case <-ctx.Done():
			return fmt.Errorf("waiting for results: %w", ctx.Err())
		}
	}
	st := zipper.Stats()
	fs, _ := st.Function("uppercase")
	fmt.Fprintf(out, "zipper: %d frames in, function %q handled %d, dropped %d\n",
		st.FramesIn, fs.Name, fs.FramesOut, st.Dropped)
	return nil
}
