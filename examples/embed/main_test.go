package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/yomo-dev/yomo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun starts the service on loopback ports, sends requests through the
// zipper and the function and back, scrapes the stats endpoint, and stops
// it the way a signal would: by cancelling run's context.
func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln, pc, &out) }()

	// The listener exists already: requests wait in its backlog until run
	// serves them, so no readiness signal is needed.
	base := "http://" + ln.Addr().String()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}

	// Another process's function joins the embedded zipper over QUIC. (It
	// skips certificate verification only because the test cannot know
	// the zipper's self-signed certificate; never do that in production.)
	audit := yomo.NewStreamFunction("audit", pc.LocalAddr().String(),
		yomo.WithInsecureSkipVerify(), yomo.WithLogger(slog.New(slog.DiscardHandler)))
	audit.SetObserveDataTags(tagRequest)
	audit.SetHandler(func(yomo.Context) {})
	defer audit.Close()

	// Concurrent requests: each must get its own reply back.
	words := []string{"hello", "embedded", "zipper", "backflow"}
	var wg sync.WaitGroup
	for _, w := range words {
		wg.Go(func() {
			resp, err := client.Post(base+"/shout", "text/plain", strings.NewReader(w))
			if err != nil {
				t.Errorf("POST %q: %v", w, err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			want := strings.ToUpper(w) + "!\n"
			if resp.StatusCode != http.StatusOK || string(body) != want {
				t.Errorf("POST %q: %d %q, want 200 %q", w, resp.StatusCode, body, want)
			}
		})
	}
	wg.Wait()
	if err := audit.Connect(ctx); err != nil {
		t.Fatalf("remote function: %v", err)
	}
	resp, err := client.Post(base+"/shout", "text/plain", strings.NewReader("one more"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Scrape the debug endpoint.
	resp, err = client.Get(base + "/debug/yomo/stats")
	if err != nil {
		t.Fatal(err)
	}
	var st yomo.Stats
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	n := uint64(len(words) + 1)
	if st.Name != "embedded" || st.Connections.Functions != 2 || st.Connections.Sources != 1 {
		t.Errorf("stats: name %q, %d functions, %d sources; want embedded, 2, 1",
			st.Name, st.Connections.Functions, st.Connections.Sources)
	}
	if f, _ := st.Function("shout"); f.FramesIn != n {
		t.Errorf("shout wrote %d frames, want %d", f.FramesIn, n)
	}
	if f, _ := st.Function("audit"); len(f.Tags) != 1 || f.Tags[0].Queued != 1 {
		t.Errorf("audit: %+v, want 1 frame queued for it (the request after it joined)", f.Tags)
	}

	// What SIGTERM does in main.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("run did not return after cancel\n%s", out.String())
	}

	got := out.String()
	for _, want := range []string{
		`zipper "embedded" serving QUIC on 127.0.0.1:`,
		"http serving on http://127.0.0.1:",
		`POST /shout "hello" -> "HELLO!"`,
		`POST /shout "backflow" -> "BACKFLOW!"`,
		"shutting down",
		fmt.Sprintf("stopped: %d requests answered;", n),
		"dropped 0",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while run writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
