package wasm_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/yomo-dev/yomo/wasm"
)

// httpServer serves on 127.0.0.1 for the test: /echo answers with the
// request's method, header X-In and body; /big with n bytes; /slow waits
// until the request is canceled.
func httpServer(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Add("X-Out", "a")
		w.Header().Add("X-Out", "b")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, r.Method+" "+strings.Join(r.Header.Values("X-In"), "+")+" "+string(b))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, 2000))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(mux)
	s.Listener = l
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// send runs the http guest with request (tag 1, or 3 for response
// addresses out of range) and returns the status and the response.
func send(t *testing.T, f *wasm.Function, tag uint32, request string) (uint32, map[string]any) {
	t.Helper()
	w := handle(f, tag, request).got()
	if len(w) == 0 || w[0].tag != 1 {
		t.Fatalf("writes %v", w)
	}
	status := binary.LittleEndian.Uint32([]byte(w[0].data))
	if status != 0 {
		if len(w) != 1 {
			t.Fatalf("status %d and writes %v", status, w)
		}
		return status, nil
	}
	if len(w) != 2 || w[1].tag != 2 {
		t.Fatalf("status 0 and writes %v", w)
	}
	var resp map[string]any
	if err := json.Unmarshal([]byte(w[1].data), &resp); err != nil {
		t.Fatalf("response %q: %v", w[1].data, err)
	}
	return 0, resp
}

func TestHTTPSend(t *testing.T) {
	s := httpServer(t)
	forEngine(t, func(t *testing.T, interp bool) {
		f, e := load(t, "http", wasm.Config{Interpreter: interp, HTTPClient: s.Client()})
		// YoMo's request: one value per header name, the body in base64
		// (as Go encodes []byte); a list of values is accepted too.
		for _, header := range []string{`{"X-In": "1"}`, `{"X-In": ["1"]}`} {
			status, resp := send(t, f, 1, `{"Method":"POST","URL":"`+s.URL+`/echo","Header":`+header+`,"Timeout":5000,"Body":"aGVsbG8="}`)
			if status != 0 {
				t.Fatalf("status %d, errors %v", status, e.take())
			}
			if resp["StatusCode"] != 418.0 || resp["Status"] != "418 I'm a teapot" {
				t.Errorf("response status %v %v", resp["StatusCode"], resp["Status"])
			}
			if h, _ := resp["Header"].(map[string]any); h["X-Out"] != "a, b" {
				t.Errorf("response header %v, want X-Out: a, b", resp["Header"])
			}
			if resp["Body"] != "UE9TVCAxIGhlbGxv" { // "POST 1 hello"
				t.Errorf("response body %v", resp["Body"])
			}
		}
		if l := e.take(); len(l) != 0 {
			t.Errorf("unexpected errors: %v", l)
		}
	})
}

func TestHTTPSendFailures(t *testing.T) {
	s := httpServer(t)
	for _, tc := range []struct {
		name    string
		cfg     wasm.Config
		tag     uint32
		request string
		status  uint32
		check   func(error) bool
	}{
		{"no client", wasm.Config{}, 1, `{"Method":"GET","URL":"` + s.URL + `/echo"}`, 8,
			func(err error) bool { return errors.Is(err, wasm.ErrNoNetwork) }},
		{"not JSON", wasm.Config{HTTPClient: s.Client()}, 1, `GET /`, 2, nil},
		{"bad method", wasm.Config{HTTPClient: s.Client()}, 1, `{"Method":"G T","URL":"` + s.URL + `"}`, 3, nil},
		{"over the limit", wasm.Config{HTTPClient: s.Client(), HTTPResponseLimit: 1999}, 1, `{"Method":"GET","URL":"` + s.URL + `/big"}`, 5,
			func(err error) bool { return strings.Contains(err.Error(), "over the limit of 1999 bytes") }},
		{"request timeout", wasm.Config{HTTPClient: s.Client()}, 1, `{"Method":"GET","URL":"` + s.URL + `/slow","Timeout":50}`, 4,
			func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"response addresses", wasm.Config{HTTPClient: s.Client()}, 3, `{"Method":"GET","URL":"` + s.URL + `/echo"}`, 7, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, e := load(t, "http", tc.cfg)
			status, _ := send(t, f, tc.tag, tc.request)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			err := e.one(t)
			var he *wasm.HTTPError
			if !errors.As(err, &he) || he.Status != tc.status || (tc.check != nil && !tc.check(err)) {
				t.Errorf("reported %v, want an *HTTPError with status %d", err, tc.status)
			}
			if strings.Contains(err.Error(), "/slow") || strings.Contains(err.Error(), "/big") {
				t.Errorf("%q shows the URL's path", err)
			}
			// The body limit holds for the size, not the call: /big fits
			// the default.
			if tc.status == 5 {
				f2, _ := load(t, "http", wasm.Config{HTTPClient: s.Client()})
				if st, resp := send(t, f2, 1, tc.request); st != 0 || len(resp["Body"].(string)) != 2668 {
					t.Errorf("under the limit: status %d", st)
				}
			}
		})
	}
}

// The call's deadline bounds a request whose own Timeout is longer: the
// request is canceled and the call fails with ErrTimeout.
func TestHTTPSendCallDeadline(t *testing.T) {
	s := httpServer(t)
	f, e := load(t, "http", wasm.Config{HTTPClient: s.Client(), Timeout: 100 * time.Millisecond})
	start := time.Now()
	c := handle(f, 1, `{"Method":"GET","URL":"`+s.URL+`/slow","Timeout":60000}`)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the call took %v", d)
	}
	expectWrites(t, c)
	var he *wasm.HTTPError
	var ce *wasm.CallError
	l := e.take()
	if len(l) != 2 || !errors.As(l[0], &he) || he.Status != 4 || !errors.As(l[1], &ce) || !errors.Is(ce, wasm.ErrTimeout) {
		t.Errorf("reported %v, want the failed request then the call's timeout", l)
	}
}
