package wasm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"
)

// Statuses of yomo_http_send, YoMo's for 1 to 7.
const (
	httpOK          = 0
	httpBadRequest  = 1 // the request is outside the module's memory
	httpBadJSON     = 2 // the request is not the JSON of an HTTPRequest
	httpBadURL      = 3 // the method or URL cannot make a request
	httpFailed      = 4 // no response: network error, timeout, refused redirect
	httpBadBody     = 5 // the response body could not be read, or is over the limit
	httpBadResponse = 7 // the response could not be handed over: yomo_alloc gave no room
	httpNoNetwork   = 8 // Config.HTTPClient is nil: the guest has no network
)

// httpRequest is the JSON a guest passes to yomo_http_send (YoMo's
// serverless.HTTPRequest).
type httpRequest struct {
	Method  string
	URL     string
	Header  httpHeader
	Timeout int64 // milliseconds; 0: DefaultHTTPTimeout
	Body    []byte
}

// httpHeader is a request's header: YoMo's guests give one value per
// name ({"Accept": "text/plain"}); a list of values is accepted too.
type httpHeader http.Header

func (h *httpHeader) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*h = make(httpHeader, len(raw))
	for k, v := range raw {
		var one string
		if err := json.Unmarshal(v, &one); err == nil {
			http.Header(*h).Add(k, one)
			continue
		}
		var many []string
		if err := json.Unmarshal(v, &many); err != nil {
			return fmt.Errorf("header %q: want a string or a list of strings", k)
		}
		for _, s := range many {
			http.Header(*h).Add(k, s)
		}
	}
	return nil
}

// httpResponse is the JSON the host hands back (YoMo's
// serverless.HTTPResponse). A header with several values has them joined
// with ", ", as HTTP allows.
type httpResponse struct {
	Status     string
	StatusCode int
	Header     map[string]string
	Body       []byte
}

// HTTPError reports a yomo_http_send that got no response: no
// Config.HTTPClient, a request the host could not make, a network error
// or timeout, or a body over Config.HTTPResponseLimit. The guest sees a
// non-zero status (Status) and goes on; the error is reported through
// Config.OnError. A response with any HTTP status code, 404 or 500
// included, is a success for the call.
type HTTPError struct {
	Status uint32 // what the guest got
	Method string
	Host   string // the URL's host: the rest of a URL may hold secrets
	Err    error
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("wasm: guest HTTP request %s %s failed (status %d): %v", e.Method, e.Host, e.Status, e.Err)
}

// Unwrap returns Err.
func (e *HTTPError) Unwrap() error { return e.Err }

// ErrNoNetwork is what an *HTTPError wraps when the guest called
// yomo_http_send and Config.HTTPClient is nil.
var ErrNoNetwork = errors.New("wasm: the guest has no network (Config.HTTPClient is nil)")

// hostHTTPSend is yomo_http_send(req_ptr, req_len, resp_ptr_addr,
// resp_len_addr) -> status.
func hostHTTPSend(ctx context.Context, in *instance, m api.Module, stack []uint64) {
	reqPtr, reqLen := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	ptrAddr, lenAddr := api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	status, err := in.httpSend(ctx, m, reqPtr, reqLen, ptrAddr, lenAddr)
	if err != nil {
		in.f.set.onError(err)
	}
	// The call's deadline passed (or Close interrupted it) while the
	// request ran: end the call now, as the runtime would at the guest's
	// next step, rather than let the guest go on past its deadline.
	switch ctx.Err() {
	case nil:
	case context.DeadlineExceeded:
		panic(sys.NewExitError(sys.ExitCodeDeadlineExceeded))
	default:
		panic(sys.NewExitError(sys.ExitCodeContextCanceled))
	}
	stack[0] = api.EncodeU32(status)
}

func (in *instance) httpSend(ctx context.Context, m api.Module, reqPtr, reqLen, ptrAddr, lenAddr uint32) (uint32, error) {
	fail := func(status uint32, req *httpRequest, err error) (uint32, error) {
		he := &HTTPError{Status: status, Err: err}
		if req != nil {
			he.Method = req.Method
			if i := strings.Index(req.URL, "://"); i >= 0 {
				he.Host, _, _ = strings.Cut(req.URL[i+3:], "/")
			}
		}
		return status, he
	}
	b, ok := m.Memory().Read(reqPtr, reqLen)
	if !ok {
		return fail(httpBadRequest, nil, fmt.Errorf("request [%d, %d+%d) is outside the module's memory", reqPtr, reqPtr, reqLen))
	}
	var req httpRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return fail(httpBadJSON, nil, fmt.Errorf("request: %w", err))
	}
	client := in.f.set.httpClient
	if client == nil {
		return fail(httpNoNetwork, &req, ErrNoNetwork)
	}
	timeout := DefaultHTTPTimeout
	if req.Timeout > 0 {
		timeout = time.Duration(req.Timeout) * time.Millisecond
	}
	// The call's own deadline (ctx's) bounds it too.
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(rctx, req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return fail(httpBadURL, &req, err)
	}
	for k, v := range req.Header {
		hreq.Header[k] = v
	}
	resp, err := client.Do(hreq)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err) // without the URL
		}
		return fail(httpFailed, &req, err)
	}
	defer func() { _ = resp.Body.Close() }()
	limit := in.f.set.httpLimit
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fail(httpBadBody, &req, err)
	}
	if int64(len(body)) > limit {
		return fail(httpBadBody, &req, fmt.Errorf("response body over the limit of %d bytes (Config.HTTPResponseLimit)", limit))
	}
	out := httpResponse{Status: resp.Status, StatusCode: resp.StatusCode, Header: make(map[string]string, len(resp.Header)), Body: body}
	for k, v := range resp.Header {
		out.Header[k] = strings.Join(v, ", ")
	}
	js, err := json.Marshal(out)
	if err != nil {
		return fail(httpBadResponse, &req, err)
	}
	return in.handOver(ctx, m, js, ptrAddr, lenAddr, &req, fail)
}

// handOver asks the guest for room with yomo_alloc, copies b there and
// stores its address and length (little-endian u32) at ptrAddr and
// lenAddr.
func (in *instance) handOver(ctx context.Context, m api.Module, b []byte, ptrAddr, lenAddr uint32,
	req *httpRequest, fail func(uint32, *httpRequest, error) (uint32, error),
) (uint32, error) {
	stack := []uint64{api.EncodeU32(uint32(len(b)))}
	if err := in.alloc.CallWithStack(ctx, stack); err != nil {
		// The guest trapped, exited or ran out of time inside yomo_alloc:
		// the call fails as a whole, like any failure of the guest.
		panic(err)
	}
	ptr := api.DecodeU32(stack[0])
	mem := m.Memory()
	if !mem.Write(ptr, b) {
		return fail(httpBadResponse, req, fmt.Errorf("yomo_alloc(%d) returned %d: outside the module's memory", len(b), ptr))
	}
	if !mem.WriteUint32Le(ptrAddr, ptr) || !mem.WriteUint32Le(lenAddr, uint32(len(b))) {
		return fail(httpBadResponse, req, fmt.Errorf("response addresses %d and %d: outside the module's memory", ptrAddr, lenAddr))
	}
	return httpOK, nil
}
