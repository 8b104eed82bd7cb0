package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tally/auth"
	"tally/route"
)

// HTTP drives a tally cluster (or anything answering its API) over HTTP:
// single increments as POST /v1/counters/{name}/incr, batches as
// POST /v1/batch, reads as GET /v1/counters. Client i talks to
// addrs[i % len(addrs)] over its own keep-alive connection, or, routing to
// leaders, sends each single-counter request to its shard's leader.
type HTTP struct {
	addrs       []string // base URLs
	consistency string   // for reads under load: "linearizable" or "stale"
	tr          *http.Transport
	hc          *http.Client
	routes      *route.Table // nil unless routing to leaders
	keys        string       // prefix of the increments' Idempotency-Keys; "" = none
}

// HTTPOption configures an HTTP target.
type HTTPOption func(*HTTP)

// RouteToLeaders makes every client send each increment and single-counter
// read straight to the leader of the shard that holds the counter (a split
// counter's increments to the leader of one of its sub-counters' shards,
// the same one for a client throughout), learnt from the cluster's
// /v1/cluster (package route), so that no node forwards it. Batches and
// multi-counter reads, which span shards, still go to the client's
// address, as does any request while its leader is not known.
func RouteToLeaders() HTTPOption {
	return func(h *HTTP) { h.routes = route.New(h.addrs, h.hc) }
}

// WithKeys makes every single increment carry an Idempotency-Key of its
// own (a UUID-sized string, unique in the run), as clients that retry
// safely send them.
func WithKeys() HTTPOption {
	return func(h *HTTP) { h.keys = fmt.Sprintf("%08x", rand.Uint32()) }
}

// Secure makes every client verify https addresses with cfg (nil: the
// system's roots) and, when token is set, send it as a bearer token.
// Give it before RouteToLeaders, whose map requests need both too.
func Secure(cfg *tls.Config, token string) HTTPOption {
	return func(h *HTTP) {
		if cfg != nil {
			h.tr.TLSClientConfig = cfg.Clone() // a transport changes its config: never share one
		}
		if token != "" {
			h.hc.Transport = auth.Bearer(h.tr, token)
		}
	}
}

// NewHTTP prepares clients for addrs (host:port or URLs). consistency is
// passed on every read ("" is the server's default, linearizable).
func NewHTTP(addrs []string, clients int, consistency string, opts ...HTTPOption) *HTTP {
	h := &HTTP{consistency: consistency}
	for _, a := range addrs {
		h.addrs = append(h.addrs, BaseURL(a))
	}
	h.tr = &http.Transport{MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute}
	h.hc = &http.Client{Transport: h.tr, Timeout: 30 * time.Second}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Routes is the routing table of a target made with RouteToLeaders, else nil.
func (h *HTTP) Routes() *route.Table { return h.routes }

// BaseURL turns host:port or a URL into a base URL without a trailing slash.
func BaseURL(addr string) string {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/")
}

// Client is client i's target.
func (h *HTTP) Client(i int) Target {
	return &httpTarget{h: h, base: h.addrs[i%len(h.addrs)], sub: uint32(i), client: i}
}

// Close drops the idle connections.
func (h *HTTP) Close() { h.tr.CloseIdleConnections() }

type httpTarget struct {
	h      *HTTP
	base   string
	client int
	seq    uint64 // increments sent, for their keys
	sub    uint32 // the sub-counter of a split counter this client writes
	buf    bytes.Buffer
}

// home is where an op on counter goes: its shard's leader when routing
// knows it, else the client's address.
func (t *httpTarget) home(counter string) string {
	if t.h.routes != nil {
		if b := t.h.routes.Home(counter); b != "" {
			return b
		}
	}
	return t.base
}

func (t *httpTarget) Incr(ctx context.Context, counter string, delta int64) error {
	var body io.Reader
	if delta != 1 {
		body = strings.NewReader(`{"delta":` + strconv.FormatInt(delta, 10) + `}`)
	}
	key := ""
	if t.h.keys != "" {
		gen := func() string {
			t.seq++
			return fmt.Sprintf("%s-%04x-4000-8000-%012x", t.h.keys, t.client&0xffff, t.seq)
		}
		if t.h.routes != nil {
			// As the Go client does: a key that keeps this client on its
			// own sub-counter of a split counter.
			key = t.h.routes.KeyFor(counter, t.sub, gen)
		} else {
			key = gen()
		}
	}
	base, routes := t.base, t.h.routes
	if routes != nil {
		// A keyed add on a split counter goes where its key routes.
		if b := routes.Add(counter, key, t.sub); b != "" {
			base = b
		}
	}
	ans, err := t.doKeyed(ctx, http.MethodPost, base+"/v1/counters/"+url.PathEscape(counter)+"/incr", body, routes != nil, key)
	if err == nil && routes != nil {
		// The answer says when the counter is split, and the next
		// increments go to a sub-counter's leader.
		routes.Learn(counter, route.SplitOf(ans))
	}
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
		body, err := t.do(ctx, http.MethodGet, t.home(counters[0])+"/v1/counters/"+url.PathEscape(counters[0])+"?"+q.Encode(), nil, true)
		if err != nil {
			return nil, err
		}
		var v struct {
			Value int64 `json:"value"`
			Split int   `json:"split"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, &Error{Code: "bad read answer"}
		}
		if t.h.routes != nil {
			t.h.routes.Learn(counters[0], v.Split)
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
	return t.doKeyed(ctx, method, u, body, keep, "")
}

// doKeyed is do with an Idempotency-Key ("" = none).
func (t *httpTarget) doKeyed(ctx context.Context, method, u string, body io.Reader, keep bool, key string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, &Error{Code: "bad request"}
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.h.hc.Do(req)
	if err != nil {
		t.routeFailed()
		// The request may have reached the server and applied.
		return nil, &Error{Code: "transport: " + transportReason(err), Maybe: method == http.MethodPost}
	}
	data, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		t.routeFailed()
		return nil, &Error{Code: "transport: reading the answer", Maybe: method == http.MethodPost}
	}
	if resp.StatusCode >= 500 {
		t.routeFailed()
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

// routeFailed tells the routing table that a request got no answer or a
// 5xx, which may mean a leader moved: it looks again soon.
func (t *httpTarget) routeFailed() {
	if t.h.routes != nil {
		t.h.routes.Failed()
	}
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
