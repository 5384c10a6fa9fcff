// Command mesh runs three zippers named like regions in one process,
// linked over QUIC on localhost. Functions live in two regions; a source
// in the third writes, and every frame reaches the function that wants
// it, wherever it runs; the answers flow back to the source.
//
//	go run ./examples/mesh
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
	"sort"
	"strings"
	"time"

	"github.com/yomo-dev/yomo"
	"github.com/yomo-dev/yomo/mesh"
)

const (
	tagText   yomo.Tag = 0x20 // source -> functions
	tagAnswer yomo.Tag = 0x21 // functions -> back to the source
)

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mesh:", err)
		os.Exit(1)
	}
}

func run(out io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	quiet := yomo.WithLogger(slog.New(slog.DiscardHandler))

	// One certificate for the whole demo: every zipper presents it and
	// trusts it (its PEM could be a file read by other processes). In
	// production each region has its own, from one CA.
	cert, certPEM, err := yomo.DevCertificate("127.0.0.1")
	if err != nil {
		return err
	}
	zipperTLS := yomo.WithTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}})
	trust := yomo.WithRootCAPEM(certPEM)

	regions := []string{"us-east", "eu-west", "ap-south"}
	sockets := map[string]net.PacketConn{}
	for _, r := range regions {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		sockets[r] = pc
	}
	addr := func(r string) string { return sockets[r].LocalAddr().String() }

	// A full mesh: each zipper dials the ones after it.
	zippers := map[string]*yomo.Zipper{}
	for i, r := range regions {
		var peers []mesh.Peer
		for _, other := range regions[i+1:] {
			peers = append(peers, mesh.Peer{Name: other, Addr: addr(other)})
		}
		z, err := yomo.NewZipper(r, zipperTLS, trust, yomo.WithMesh(peers...), quiet)
		if err != nil {
			return err
		}
		zippers[r] = z
		served := make(chan error, 1)
		go func() { served <- z.Serve(ctx, sockets[r]) }() // returns once the zipper is closed
		defer func() {
			z.Close()
			if err := <-served; !errors.Is(err, yomo.ErrClosed) {
				fmt.Fprintln(out, r, "stopped:", err)
			}
		}()
	}

	// Functions in two regions; each says where it ran.
	var functions []*yomo.StreamFunction
	defer func() {
		for _, f := range functions {
			f.Close()
		}
	}()
	serve := func(region, name string, answer func(string) string) error {
		f := yomo.NewStreamFunction(name, addr(region), trust, quiet)
		f.SetObserveDataTags(tagText)
		err := f.SetHandler(func(c yomo.Context) {
			msg := fmt.Sprintf("%s@%s: %s", name, region, answer(string(c.Data())))
			if err := c.Write(tagAnswer, []byte(msg)); err != nil {
				fmt.Fprintln(os.Stderr, name, "write:", err)
			}
		})
		if err != nil {
			return err
		}
		if err := f.Connect(ctx); err != nil {
			return err
		}
		functions = append(functions, f)
		return nil
	}
	if err := serve("eu-west", "uppercase", strings.ToUpper); err != nil {
		return err
	}
	if err := serve("ap-south", "count", func(s string) string { return fmt.Sprintf("%d letters", len(s)) }); err != nil {
		return err
	}

	// Wait until us-east has routes to both functions.
	for {
		st := zippers["us-east"].Stats()
		if len(st.Routes) == 2 {
			for _, r := range st.Routes {
				// Path[0] is where the function runs; Via, the next hop,
				// is whichever link measured fastest.
				fmt.Fprintf(out, "us-east routes tag 0x%x to %q in %s\n", r.Tag, r.Function, r.Path[0])
			}
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("mesh did not converge: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}

	// A source in the third region.
	answers := make(chan string, 16)
	src := yomo.NewSource("sensor", addr("us-east"), trust, quiet)
	src.SetObserveDataTags(tagAnswer)
	src.SetReceiveHandler(func(_ yomo.Tag, data []byte) { answers <- string(data) })
	if err := src.Connect(ctx); err != nil {
		return err
	}
	defer src.Close()

	for _, word := range []string{"hello", "mesh"} {
		if err := src.Write(tagText, []byte(word)); err != nil {
			return err
		}
		fmt.Fprintf(out, "source@us-east wrote %q\n", word)
		var got []string
		for len(got) < 2 {
			select {
			case a := <-answers:
				got = append(got, a)
			case <-ctx.Done():
				return fmt.Errorf("waiting for answers: %w", ctx.Err())
			}
		}
		sort.Strings(got)
		for _, a := range got {
			fmt.Fprintf(out, "  back at us-east: %s\n", a)
		}
	}
	for _, r := range regions {
		st := zippers[r].Stats()
		fmt.Fprintf(out, "%s: %d frames in, %d links up\n", r, st.FramesIn, len(st.Links))
	}
	return nil
}
