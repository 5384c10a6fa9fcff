// Command embed is an ordinary net/http service with a zipper inside it:
// one process, one signal handler, one graceful shutdown.
//
// POST /shout hands the request body to a stream function through the
// zipper and answers with what the function wrote back (backflow). The
// function runs in the same process over the in-memory transport; other
// processes can connect sources and functions to the same zipper over
// QUIC. GET /debug/yomo/stats serves the zipper's counters as JSON.
//
//	go run ./examples/embed
//	curl -d 'hello yomo' localhost:8080/shout
//	curl localhost:8080/debug/yomo/stats
//
// Ctrl-C stops the HTTP server gracefully, then the zipper.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/yomo-dev/yomo"
)

const (
	tagRequest yomo.Tag = 0x30 // written by the HTTP handlers' source
	tagReply   yomo.Tag = 0x31 // written by the "shout" function, back to the source
)

const (
	requestTimeout  = 5 * time.Second  // how long a handler waits for its reply
	shutdownTimeout = 10 * time.Second // for the HTTP server and the zipper together
	maxBody         = 64 << 10
)

func main() {
	httpAddr := flag.String("http", "localhost:8080", "HTTP listen address")
	zipperAddr := flag.String("zipper", "localhost:9000", "zipper's UDP listen address (QUIC)")
	flag.Parse()

	// The one signal handler: its context ends on Ctrl-C or SIGTERM.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp", *zipperAddr)
	if err != nil {
		ln.Close()
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
	if err := run(ctx, ln, pc, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

// shout is the stream function: it answers a request with its text
// upper-cased. What it writes while handling the request is the reply to
// src.Request: no request id of our own.
func shout(c yomo.Context) {
	c.Write(tagReply, []byte(strings.ToUpper(string(c.Data()))+"!"))
}

// run serves HTTP on ln and the zipper on pc until ctx ends, then shuts
// both down gracefully. It owns ln and pc.
func run(ctx context.Context, ln net.Listener, pc net.PacketConn, out io.Writer) error {
	out = &lockedWriter{w: out} // HTTP handlers print concurrently
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelWarn}))

	zipper, err := yomo.NewZipper("embedded", yomo.WithLogger(log))
	if err != nil {
		ln.Close()
		pc.Close()
		return err
	}
	defer zipper.Close() // on early returns; a no-op after Shutdown

	// Serve is not given ctx: cancelling Serve's context closes its
	// connections at once, and we want Shutdown to drain them instead.
	zipperDone := make(chan error, 1)
	go func() { zipperDone <- zipper.Serve(context.Background(), pc) }() // ends at Shutdown or Close
	fmt.Fprintf(out, "zipper %q serving QUIC on %s\n", zipper.Name(), pc.LocalAddr())

	// The function, in this process: no socket, no TLS.
	local := yomo.WithInMemory(zipper)
	fn := yomo.NewStreamFunction("shout", "in-memory", local, yomo.WithLogger(log))
	fn.SetObserveDataTags(tagRequest)
	if err := fn.SetHandler(shout); err != nil {
		ln.Close()
		return err
	}
	if err := fn.Connect(ctx); err != nil {
		ln.Close()
		return err
	}
	defer fn.Close()

	// One source for all HTTP handlers: each request is a src.Request,
	// and many may be in flight at once.
	var answered atomic.Uint64
	src := yomo.NewSource("http", "in-memory", local, yomo.WithLogger(log))
	if err := src.Connect(ctx); err != nil {
		ln.Close()
		return err
	}
	defer src.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /shout", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		wait, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		text, err := src.Request(wait, tagRequest, body)
		switch {
		case errors.Is(err, yomo.ErrNoResponders):
			http.Error(w, "no shout function is running", http.StatusServiceUnavailable)
		case errors.Is(err, context.DeadlineExceeded):
			http.Error(w, "no reply from the shout function", http.StatusGatewayTimeout)
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadGateway)
		default:
			answered.Add(1)
			fmt.Fprintf(out, "POST /shout %q -> %q\n", body, text)
			fmt.Fprintf(w, "%s\n", text)
		}
	})
	mux.HandleFunc("GET /debug/yomo/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(zipper.Stats()); err != nil {
			log.Warn("stats endpoint", "err", err)
		}
	})

	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(ln) }() // ends at srv.Shutdown
	fmt.Fprintf(out, "http serving on http://%s\n", ln.Addr())

	var failure error
	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "shutting down")
	case err := <-httpDone:
		failure = fmt.Errorf("http: %w", err)
	case err := <-zipperDone:
		failure = fmt.Errorf("zipper: %w", err)
		zipperDone <- err // for the wait below
	}

	// Graceful shutdown, in dependency order, within one deadline:
	//  1. HTTP: stop accepting and let in-flight requests get their replies
	//     (the zipper and the function are still up);
	//  2. the in-process clients, now idle;
	//  3. the zipper: GOAWAY to remote clients, drain, close.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		failure = errors.Join(failure, fmt.Errorf("http shutdown: %w", err))
	}
	src.Close()
	fn.Close()
	if err := zipper.Shutdown(sctx); err != nil {
		failure = errors.Join(failure, fmt.Errorf("zipper shutdown: %w", err))
	}
	if err := <-zipperDone; failure == nil && !errors.Is(err, yomo.ErrClosed) {
		failure = fmt.Errorf("zipper: %w", err)
	}
	st := zipper.Stats()
	fmt.Fprintf(out, "stopped: %d requests answered; zipper saw %d frames, dropped %d\n",
		answered.Load(), st.FramesIn, st.Dropped)
	return failure
}

// lockedWriter serialises writes from concurrent handlers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
