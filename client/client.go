// Package client is the Go client for a tally counter cluster.
//
// Every call may go to any node: the cluster forwards it to the right shard
// leader. The client saves it that hop: it learns the shard map from
// GET /v1/cluster (package route) and sends each op on one counter straight
// to the leader of the shard that holds it, falling back to the next
// address while it knows no leader (WithoutRouting turns this off). A call
// that meets a 503 or a connection error is retried on the next address
// until the retry deadline; writes keep their Idempotency-Key across those
// retries, so a retry can never count twice.
package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"tally/auth"
	"tally/route"
)

// DefaultAddr is used when New is given no address: the first node of a
// local cluster, and tallyd's default.
const DefaultAddr = "127.0.0.1:7070"

// Client talks to a tally cluster. It is safe for concurrent use.
type Client struct {
	bases []string // "http://host:port", no trailing slash
	next  atomic.Uint64
	hc    *http.Client

	noRouting bool
	routes    *route.Table // nil without routing
	sub       uint32       // the sub-counter of a split counter this client's keys route to (see keyFor)

	retryDeadline time.Duration
	minBackoff    time.Duration
	maxBackoff    time.Duration

	token string      // sent as a bearer token when set
	tls   *tls.Config // for https addresses; nil: the system's roots
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the default HTTP client (keep-alive pool, 5 s per
// attempt). Its Timeout, if any, bounds each attempt, not the whole call.
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.hc = h } }

// WithRetryDeadline sets how long one call keeps retrying 503s and
// connection errors (default 10 s); d <= 0 means a single attempt. The
// context can end a call sooner.
func WithRetryDeadline(d time.Duration) Option { return func(c *Client) { c.retryDeadline = d } }

// WithToken sends token with every request (Authorization: Bearer), for a
// cluster that runs with --auth-token-file.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithTLS sets how https addresses are verified, e.g. a tls.Config whose
// RootCAs hold the cluster's CA (tlsconf.ClientConfig), and makes
// addresses without a scheme https. It applies to the default HTTP
// client, not to one given WithHTTPClient.
func WithTLS(cfg *tls.Config) Option { return func(c *Client) { c.tls = cfg } }

// WithoutRouting makes every call go to the next of the client's addresses,
// as the cluster forwards it to the shard leader anyway, instead of
// straight to that leader: for a client meant to talk to one node, or to
// measure the forwarding path.
func WithoutRouting() Option { return func(c *Client) { c.noRouting = true } }

// New returns a client for the nodes at addrs ("host:port" or
// "http://host:port"). Calls go to their shard's leader when the client
// knows it (it asks these addresses for the shard map, in the background,
// once in use), else rotate over the addresses, so load spreads and a dead
// node costs one failed attempt, not a failed call.
func New(addrs []string, opts ...Option) *Client {
	c := &Client{
		retryDeadline: 10 * time.Second,
		minBackoff:    20 * time.Millisecond,
		maxBackoff:    500 * time.Millisecond,
		sub:           mrand.Uint32(),
	}
	for _, a := range addrs {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		c.bases = append(c.bases, a)
	}
	if len(c.bases) == 0 {
		c.bases = []string{DefaultAddr}
	}
	for _, o := range opts {
		o(c)
	}
	// An address without a scheme is https when the client was given TLS
	// settings: a token must not cross the wire in the clear by default.
	scheme := "http://"
	if c.tls != nil {
		scheme = "https://"
	}
	for i, a := range c.bases {
		if !strings.Contains(a, "://") {
			c.bases[i] = scheme + a
		}
	}
	if c.hc == nil {
		c.hc = defaultHTTPClient(c.tls)
	}
	if c.token != "" {
		hc := *c.hc
		hc.Transport = auth.Bearer(hc.Transport, c.token)
		// tally never redirects; a redirect must not carry the token elsewhere.
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		c.hc = &hc
	}
	if !c.noRouting {
		c.routes = route.New(c.bases, c.hc)
	}
	return c
}

func defaultHTTPClient(tlsCfg *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if tlsCfg != nil {
		// Each transport adds its ALPN protocols to its config: never share one.
		t.TLSClientConfig = tlsCfg.Clone()
	}
	// Many goroutines hammer the same few nodes; the default of 2 idle
	// connections per host would make most requests dial anew.
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t, Timeout: 5 * time.Second}
}

// Result is the answer to a write.
type Result struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	// Exact is false for a split counter: Value is then a lower bound.
	Exact bool `json:"exact"`
	// Split is the counter's split factor when it is split (0 when not),
	// as far as the answering node knew.
	Split int `json:"split,omitempty"`
	// ExpiresAt is set for an expiring counter (see WriteOptions.TTL).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// WriteOptions are the optional parts of an increment.
type WriteOptions struct {
	// Key is the idempotency key; empty means a fresh random one.
	Key string
	// Min and Max bound the counter: the write applies only if the
	// result stays within them, else it fails with a 409 out_of_bounds
	// APIError whose Value is the current value.
	Min, Max *int64
	// TTL makes a counter the write creates (or finds expired) expire
	// that long after: with Max, a fixed-window rate limit.
	TTL time.Duration
}

// ActorResult is the answer to Like and Unlike.
type ActorResult struct {
	Name    string `json:"name"`
	Value   int64  `json:"value"`
	Changed bool   `json:"changed"`
}

// Counter is the answer to a read.
type Counter struct {
	Name      string     `json:"name"`
	Value     int64      `json:"value"`
	Split     int        `json:"split,omitempty"`  // sub-counters summed (1: not split); not in MultiGet answers
	Shards    []int      `json:"shards,omitempty"` // the shard of each sub-counter
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Consistency selects how a read is served.
type Consistency string

const (
	// Linearizable reads go through the shard leader (the server default).
	Linearizable Consistency = "linearizable"
	// Stale reads answer from the local replica without a network round.
	Stale Consistency = "stale"
)

// ClusterInfo is one node's view of the cluster.
type ClusterInfo struct {
	Node string `json:"node"`
	// KeyPlacement is how names map to shards (placement.Map); nil from
	// a node too old to say.
	KeyPlacement *KeyPlacement `json:"key_placement,omitempty"`
	Members      []Member      `json:"members"`
	Shards       []Shard       `json:"shards"`
}

// KeyPlacement is a cluster's key placement: its scheme ("slots" or
// "fnv64a") and shard count.
type KeyPlacement struct {
	Scheme string `json:"scheme"`
	Shards int    `json:"shards"`
}

// Member is a node: State is its place in the cluster (active, leaving,
// left, removed), Health what gossip says of it (alive, suspect, dead,
// left).
type Member struct {
	ID     string `json:"id"`
	HTTP   string `json:"http"`
	State  string `json:"state"`
	Health string `json:"health"`
}

// Shard is one Raft group. Leader is empty while it has none.
type Shard struct {
	ID           int      `json:"id"`
	Leader       string   `json:"leader"`
	Replicas     []string `json:"replicas"`
	Learners     []string `json:"learners"`
	AppliedIndex uint64   `json:"applied_index"`
}

// Incr adds delta to the counter name under a fresh random idempotency key,
// kept across retries.
func (c *Client) Incr(ctx context.Context, name string, delta int64) (Result, error) {
	return c.write(ctx, name, "incr", delta, c.keyFor(name))
}

// Decr subtracts delta from the counter name under a fresh idempotency key.
func (c *Client) Decr(ctx context.Context, name string, delta int64) (Result, error) {
	return c.write(ctx, name, "decr", delta, c.keyFor(name))
}

// IncrWithKey is Incr with a caller-chosen idempotency key (1..256
// printable ASCII bytes). Repeating a call with the same key and delta,
// even from another process, returns the first result and counts once.
func (c *Client) IncrWithKey(ctx context.Context, name string, delta int64, key string) (Result, error) {
	return c.write(ctx, name, "incr", delta, key)
}

// DecrWithKey is Decr with a caller-chosen idempotency key.
func (c *Client) DecrWithKey(ctx context.Context, name string, delta int64, key string) (Result, error) {
	return c.write(ctx, name, "decr", delta, key)
}

func (c *Client) write(ctx context.Context, name, op string, delta int64, key string) (Result, error) {
	if err := checkKey(key); err != nil { // an empty caller-chosen key is a mistake, not "make one"
		return Result{}, err
	}
	return c.add(ctx, name, op, delta, WriteOptions{Key: key})
}

// Add adds delta (which may be negative) to the counter name with the
// given options.
func (c *Client) Add(ctx context.Context, name string, delta int64, opts WriteOptions) (Result, error) {
	return c.add(ctx, name, "incr", delta, opts)
}

// Sub subtracts delta from the counter name with the given options.
func (c *Client) Sub(ctx context.Context, name string, delta int64, opts WriteOptions) (Result, error) {
	return c.add(ctx, name, "decr", delta, opts)
}

func (c *Client) add(ctx context.Context, name, op string, delta int64, opts WriteOptions) (Result, error) {
	var r Result
	if opts.Key == "" {
		opts.Key = c.keyFor(name)
	}
	if err := checkName(name); err != nil {
		return r, err
	}
	if err := checkKey(opts.Key); err != nil {
		return r, err
	}
	body := struct {
		Delta int64  `json:"delta"`
		Min   *int64 `json:"min,omitempty"`
		Max   *int64 `json:"max,omitempty"`
		TTLms int64  `json:"ttl_ms,omitempty"`
	}{delta, opts.Min, opts.Max, opts.TTL.Milliseconds()}
	err := c.do(ctx, call{
		method: http.MethodPost,
		path:   "/v1/counters/" + url.PathEscape(name) + "/" + op,
		body:   body,
		key:    opts.Key,
		write:  true,
		name:   name,
		// Bounds and expiry need the whole value, on the home shard.
		plain: opts.Min == nil && opts.Max == nil && opts.TTL == 0,
	}, &r)
	if err == nil && c.routes != nil {
		c.routes.Learn(name, r.Split)
	}
	return r, err
}

// Like adds actor to the counter's set of actors and counts it once: a
// repeated like answers Changed=false and counts nothing.
func (c *Client) Like(ctx context.Context, name, actor string) (ActorResult, error) {
	return c.actor(ctx, http.MethodPut, name, actor)
}

// Unlike removes actor and uncounts it, only if it was there.
func (c *Client) Unlike(ctx context.Context, name, actor string) (ActorResult, error) {
	return c.actor(ctx, http.MethodDelete, name, actor)
}

func (c *Client) actor(ctx context.Context, method, name, actor string) (ActorResult, error) {
	var r ActorResult
	if err := checkName(name); err != nil {
		return r, err
	}
	if err := checkName(actor); err != nil {
		return r, err
	}
	err := c.do(ctx, call{
		method: method,
		path:   "/v1/counters/" + url.PathEscape(name) + "/actors/" + url.PathEscape(actor),
		key:    newKey(),
		write:  true,
		name:   name,
	}, &r)
	return r, err
}

// IsMember reports whether actor has liked the counter.
func (c *Client) IsMember(ctx context.Context, name, actor string, cons Consistency) (bool, error) {
	var r struct {
		Member bool `json:"member"`
	}
	if err := checkName(name); err != nil {
		return false, err
	}
	if err := checkName(actor); err != nil {
		return false, err
	}
	q := url.Values{}
	if cons != "" {
		q.Set("consistency", string(cons))
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/counters/" + url.PathEscape(name) + "/actors/" + url.PathEscape(actor),
		query: q, name: routedRead(name, cons)}, &r)
	return r.Member, err
}

// Get reads one counter. An empty cons means the server default
// (linearizable). A counter never written reads as 0.
func (c *Client) Get(ctx context.Context, name string, cons Consistency) (Counter, error) {
	var r Counter
	if err := checkName(name); err != nil {
		return r, err
	}
	q := url.Values{}
	if cons != "" {
		q.Set("consistency", string(cons))
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/counters/" + url.PathEscape(name), query: q, name: routedRead(name, cons)}, &r)
	if err == nil && c.routes != nil {
		c.routes.Learn(name, r.Split)
	}
	return r, err
}

// routedRead is the name a read is routed by: a stale read is answered by
// whichever replica it reaches, so it goes where the caller's addresses
// say (possibly to read one node's replica on purpose).
func routedRead(name string, cons Consistency) string {
	if cons == Stale {
		return ""
	}
	return name
}

// MultiGet reads up to 1,000 counters in one request, in the order given.
func (c *Client) MultiGet(ctx context.Context, names []string, cons Consistency) ([]Counter, error) {
	if len(names) == 0 {
		return nil, nil
	}
	q := url.Values{"name": names}
	if cons != "" {
		q.Set("consistency", string(cons))
	}
	var r struct {
		Counters []Counter `json:"counters"`
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/counters", query: q}, &r)
	return r.Counters, err
}

// Split raises the counter's split factor to n (1..the shard count): its
// writes then spread over n sub-counters on n shards, and reads sum them.
// It returns the factor the counter has after the call. A factor only
// grows: asking for less than the current one is a 409 split_shrink
// APIError. Raising it is idempotent, so this call is retried freely.
func (c *Client) Split(ctx context.Context, name string, n int) (int, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	var r struct {
		Split int `json:"split"`
	}
	err := c.do(ctx, call{
		method: http.MethodPost,
		path:   "/v1/counters/" + url.PathEscape(name) + "/split",
		body:   map[string]int{"n": n},
		name:   name,
	}, &r)
	if err == nil && c.routes != nil {
		c.routes.Learn(name, r.Split)
	}
	return r.Split, err
}

// Cluster returns the answering node's view of members and shard leaders.
func (c *Client) Cluster(ctx context.Context) (ClusterInfo, error) {
	var r ClusterInfo
	err := c.do(ctx, call{method: http.MethodGet, path: "/v1/cluster"}, &r)
	return r, err
}

// NodeChange is a node's state after a decommission or removal.
type NodeChange struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// Decommission starts moving every replica off node id (state leaving,
// then left once it holds nothing). Asking again is harmless.
func (c *Client) Decommission(ctx context.Context, id string) (NodeChange, error) {
	var r NodeChange
	err := c.do(ctx, call{method: http.MethodPost, path: "/v1/cluster/nodes/" + url.PathEscape(id) + "/decommission"}, &r)
	return r, err
}

// RemoveNode drops the dead node id from every shard; its replicas are
// placed anew on live nodes. Asking again is harmless.
func (c *Client) RemoveNode(ctx context.Context, id string) (NodeChange, error) {
	var r NodeChange
	err := c.do(ctx, call{method: http.MethodDelete, path: "/v1/cluster/nodes/" + url.PathEscape(id)}, &r)
	return r, err
}

// Ready returns nil when every address answers /readyz with 200. It is a
// probe: each address is asked once, without retries, and the first
// failure is returned; callers that wait for readiness poll it.
func (c *Client) Ready(ctx context.Context) error {
	for _, base := range c.bases {
		if _, err := c.attempt(ctx, base, call{method: http.MethodGet, path: "/readyz"}, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

// keyFor returns a fresh key for an add on name: one that routes to this
// client's own sub-counter when the counter is known to be split, so that
// its writes share raft entries there (route.Table.KeyFor), else newKey's.
func (c *Client) keyFor(name string) string {
	if c.routes == nil {
		return newKey()
	}
	return c.routes.KeyFor(name, c.sub, newKey)
}

// newKey returns 16 random bytes in hex: unique enough that two calls
// never share a key by chance.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return hex.EncodeToString(b[:])
}

// checkName rejects the names that would change the request's route
// (empty, or containing '/'); the server checks the rest of the rules.
func checkName(name string) error {
	if name == "" || strings.Contains(name, "/") {
		return &APIError{Status: http.StatusBadRequest, Code: "bad_name",
			Message: "counter name must be 1-256 bytes of printable UTF-8 without '/'"}
	}
	return nil
}

// checkKey enforces the key rules locally because an invalid header value
// would otherwise fail inside net/http, not as a clean 400.
func checkKey(key string) error {
	ok := len(key) >= 1 && len(key) <= 256
	for i := 0; ok && i < len(key); i++ {
		ok = key[i] > 0x20 && key[i] <= 0x7e
	}
	if !ok {
		return &APIError{Status: http.StatusBadRequest, Code: "bad_key",
			Message: "idempotency key must be 1-256 printable ASCII bytes"}
	}
	return nil
}
