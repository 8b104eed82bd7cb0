package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTP drives a tally cluster (or anything answering its API) over HTTP:
// single increments as POST /v1/counters/{name}/incr, batches as
// POST /v1/batch, reads as GET /v1/counters. Client i talks to
// addrs[i % len(addrs)] over its own keep-alive connection.
type HTTP struct {
	addrs       []string // base URLs
	consistency string   // for reads under load: "linearizable" or "stale"
	tr          *http.Transport
	hc          *http.Client
}

// NewHTTP prepares clients for addrs (host:port or URLs). consistency is
// passed on every read ("" is the server's default, linearizable).
func NewHTTP(addrs []string, clients int, consistency string) *HTTP {
	h := &HTTP{consistency: consistency}
	for _, a := range addrs {
		h.addrs = append(h.addrs, BaseURL(a))
	}
	h.tr = &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute}
	h.hc = &http.Client{Transport: h.tr, Timeout: 30 * time.Second}
	return h
}

// BaseURL turns host:port or a URL into a base URL without a trailing slash.
func BaseURL(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/")
}

// Client is client i's target.
func (h *HTTP) Client(i int) Target {
	return &httpTarget{h: h, base: h.addrs[i%len(h.addrs)]}
}

// Close drops the idle connections.
func (h *HTTP) Close() { h.tr.CloseIdleConnections() }

type httpTarget struct {
	h    *HTTP
	base string
	buf  bytes.Buffer
}

func (t *httpTarget) Incr(ctx context.Context, counter string, delta int64) error {
	var body io.Reader
	if delta != 1 {
		body = strings.NewReader(`{"delta":` + strconv.FormatInt(delta, 10) + `}`)
	}
	_, err := t.do(ctx, http.MethodPost, t.base+"/v1/counters/"+url.PathEscape(counter)+"/incr", body, false)
	return err
}

type batchOp struct {
	Name  string `json:"name"`
	Delta int64  `json:"delta"`
}

type batchAnswer struct {
	Results []struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	} `json:"results"`
}

func (t *httpTarget) IncrBatch(ctx context.Context, ops []Op, errs []error) error {
	req := struct {
		Ops []batchOp `json:"ops"`
	}{Ops: make([]batchOp, len(ops))}
	for i, op := range ops {
		req.Ops[i] = batchOp{Name: op.Counter, Delta: op.Delta}
	}
	t.buf.Reset()
	if err := json.NewEncoder(&t.buf).Encode(req); err != nil {
		return err
	}
	body, err := t.do(ctx, http.MethodPost, t.base+"/v1/batch", bytes.NewReader(t.buf.Bytes()), true)
	if err != nil {
		return err
	}
	var ans batchAnswer
	if err := json.Unmarshal(body, &ans); err != nil || len(ans.Results) != len(ops) {
		// The server answered 200 but not with one result per op: the
		// writes may have applied, and none can be credited.
		return &Error{Code: "bad batch answer", Maybe: true}
	}
	for i, r := range ans.Results {
		if r.Error != nil {
			errs[i] = &Error{Code: "op " + r.Error.Code, Maybe: r.Error.Code == "outcome_unknown"}
		}
	}
	return nil
}

func (t *httpTarget) Read(ctx context.Context, counters []string) ([]int64, error) {
	q := url.Values{}
	if t.h.consistency != "" {
		q.Set("consistency", t.h.consistency)
	}
	if len(counters) == 1 {
		body, err := t.do(ctx, http.MethodGet, t.base+"/v1/counters/"+url.PathEscape(counters[0])+"?"+q.Encode(), nil, true)
		if err != nil {
			return nil, err
		}
		var v struct {
			Value int64 `json:"value"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, &Error{Code: "bad read answer"}
		}
		return []int64{v.Value}, nil
	}
	for _, c := range counters {
		q.Add("name", c)
	}
	body, err := t.do(ctx, http.MethodGet, t.base+"/v1/counters?"+q.Encode(), nil, true)
	if err != nil {
		return nil, err
	}
	var v struct {
		Counters []struct {
			Name  string `json:"name"`
			Value int64  `json:"value"`
		} `json:"counters"`
	}
	if err := json.Unmarshal(body, &v); err != nil || len(v.Counters) != len(counters) {
		return nil, &Error{Code: "bad read answer"}
	}
	out := make([]int64, len(counters))
	for i, c := range v.Counters {
		if c.Name != counters[i] {
			return nil, &Error{Code: "bad read answer"}
		}
		out[i] = c.Value
	}
	return out, nil
}

// do sends one request and returns the body of a 200 (when keep is set),
// or an *Error naming the status and the API's error code.
func (t *httpTarget) do(ctx context.Context, method, u string, body io.Reader, keep bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, &Error{Code: "bad request"}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.h.hc.Do(req)
	if err != nil {
		// The request may have reached the server and applied.
		return nil, &Error{Code: "transport: " + transportReason(err), Maybe: method == http.MethodPost}
	}
	data, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		return nil, &Error{Code: "transport: reading the answer", Maybe: method == http.MethodPost}
	}
	if resp.StatusCode == http.StatusOK {
		if keep {
			return data, nil
		}
		return nil, nil
	}
	code := fmt.Sprintf("http %d", resp.StatusCode)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil && e.Error.Code != "" {
		code += " " + e.Error.Code
	}
	return nil, &Error{Code: code, Maybe: e.Error.Code == "outcome_unknown"}
}

// transportReason shortens a transport error to its last part ("connection
// refused", "EOF", ...), so the error table groups them instead of listing
// one line per connection.
func transportReason(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}
