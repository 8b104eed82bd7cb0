// Package route routes ops to their shard's leader: it learns a tally
// cluster's shard map from GET /v1/cluster (how names map to shards, and
// the HTTP address of each shard's leader) so that a client sends each op
// to the node that applies it, and no node has to forward it.
//
// Routing is an optimisation only: any node accepts any op and forwards
// it, so a stale or missing route costs a hop, never a wrong answer. A
// Table that knows no route for an op says so ("") and the caller sends
// it where it would have without one.
//
// It is a leaf like placement (no raft), for the Go client and the load
// generator alike.
package route

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"tally/placement"
)

// Defaults of a Table's refresh timing.
const (
	// DefaultInterval is how old the map may get while the table is in
	// use: leaders move (balancing, failover) and the map follows within
	// about this long.
	DefaultInterval = time.Second
	// DefaultMinGap rate-limits the refreshes failures ask for: many
	// clients failing at once against a dead leader cost one fetch.
	DefaultMinGap = 100 * time.Millisecond
	// fetchTimeout bounds one /v1/cluster request.
	fetchTimeout = 2 * time.Second
	// maxSplits bounds the split factors a table remembers; forgetting
	// them is safe (the nodes route a plain add wherever it lands).
	maxSplits = 1 << 16
	// maxShards bounds the shard count an answer may claim, so a broken
	// answer cannot make the table allocate without limit.
	maxShards = 1 << 16
)

// Table is a routing table: shard -> leader, the key placement, and the
// split factors learned from answers. It is safe for concurrent use; a
// pick takes no lock (unless split factors are known, then a read lock)
// and allocates nothing.
type Table struct {
	seeds []string // base URLs asked for the map, in turn
	hc    *http.Client

	interval atomic.Int64 // see SetTiming
	minGap   atomic.Int64

	st         atomic.Pointer[state]
	refreshing atomic.Bool
	due        atomic.Int64  // unix ns from which a pick starts a refresh
	started    atomic.Int64  // unix ns the last refresh started
	failures   atomic.Uint64 // failures reported (Failed), ever
	seen       atomic.Uint64 // failures when the last refresh started
	nextSeed   atomic.Uint32
	lastErr    atomic.Pointer[error]

	mu      sync.RWMutex
	splits  map[string]int // only factors > 1
	nsplits atomic.Int32
}

// state is one /v1/cluster answer, never changed once published.
type state struct {
	keys    placement.Map
	leaders []string // by shard: the leader's base URL, "" if none is known
}

// New returns a table that asks seeds (base URLs such as
// "http://127.0.0.1:7070") for the map over hc. It loads nothing until
// first used (or Refresh).
func New(seeds []string, hc *http.Client) *Table {
	if hc == nil {
		hc = http.DefaultClient
	}
	t := &Table{seeds: append([]string(nil), seeds...), hc: hc}
	t.SetTiming(DefaultInterval, DefaultMinGap)
	return t
}

// SetTiming sets how old the map may get while in use (interval) and how
// soon after a refresh a failure may ask for the next one (minGap). It
// applies from the next refresh on.
func (t *Table) SetTiming(interval, minGap time.Duration) {
	t.interval.Store(int64(interval))
	t.minGap.Store(int64(minGap))
}

// Home returns the base URL of the leader of the shard that holds name,
// for any op on it but a plain add (see Add); "" when it is not known.
func (t *Table) Home(name string) string {
	st := t.use()
	if st == nil {
		return ""
	}
	return st.leaders[st.keys.Home(name)]
}

// Add returns the base URL a plain add of name (no bounds, no TTL) should
// go to; "" when it is not known. For a counter not known to be split,
// that is its home shard's leader. For a counter split k ways, a keyed
// add goes to the leader of the sub-counter its key routes to (the one the
// nodes apply it on, so the key's record is there), and an unkeyed one to
// the leader of sub-counter sub mod k: a caller that keeps its sub keeps
// hitting one sub-counter, which the node it reaches leads, so the node
// writes it locally and its writes share that shard's raft entries.
func (t *Table) Add(name, key string, sub uint32) string {
	st := t.use()
	if st == nil {
		return ""
	}
	k := t.Split(name)
	if k <= 1 {
		return st.leaders[st.keys.Home(name)]
	}
	var i int
	if key != "" {
		i = KeyRoute(key, k, st.keys.Shards)
	} else {
		i = int(sub % uint32(k))
	}
	return st.leaders[st.keys.SubShard(name, i)]
}

// KeyFor returns a new idempotency key for an add on name, from gen, that
// lands where an unkeyed add with sub would, when the table knows name is
// split: the unkeyed add goes to the leader of sub-counter sub mod k, and
// that node applies it to the first sub-counter it leads (node.localSub),
// so the key is drawn to route to that one. A key only has to be unique;
// drawn at random, it would send each write to a random sub-counter, and
// a node's writes would spread over k raft groups instead of sharing one
// group's entries. It draws at most 64 keys (about k, on average).
func (t *Table) KeyFor(name string, sub uint32, gen func() string) string {
	key := gen()
	st := t.st.Load()
	k := t.Split(name)
	if st == nil || k <= 1 {
		return key
	}
	want := int(sub % uint32(k))
	if node := st.leaders[st.keys.SubShard(name, want)]; node != "" {
		for i := range want {
			if st.leaders[st.keys.SubShard(name, i)] == node {
				want = i
				break
			}
		}
	}
	for range 64 {
		if KeyRoute(key, k, st.keys.Shards) == want {
			return key
		}
		key = gen()
	}
	return key
}

// KeyRoute is the sub-counter a keyed add goes to on a counter split n
// ways in a cluster of shards shards: the key's slot (FNV-1a of the key
// modulo the shard count) if that sub-counter exists, else sub-counter 0.
// It is the rule the nodes apply (fsm.KeyRoute), repeated here so that a
// client need not link the state machine.
func KeyRoute(key string, n, shards int) int {
	if n <= 1 || shards <= 1 {
		return 0
	}
	if s := int(placement.Hash(key) % uint64(shards)); s < n {
		return s
	}
	return 0
}

// Leader returns the base URL of shard s's leader, "" when unknown. It
// does not count as use.
func (t *Table) Leader(s uint32) string {
	st := t.st.Load()
	if st == nil || int(s) >= len(st.leaders) {
		return ""
	}
	return st.leaders[s]
}

// Map returns the key placement, and false until a map was loaded.
func (t *Table) Map() (placement.Map, bool) {
	st := t.st.Load()
	if st == nil {
		return placement.Map{}, false
	}
	return st.keys, true
}

// Split returns the split factor learned for name (1 if none).
func (t *Table) Split(name string) int {
	if t.nsplits.Load() == 0 {
		return 1
	}
	t.mu.RLock()
	k := t.splits[name]
	t.mu.RUnlock()
	return max(k, 1)
}

// Learn records that name is split k ways, as an answer said. A factor
// only grows, so a lower one than known is ignored.
func (t *Table) Learn(name string, k int) {
	if k <= 1 || t.Split(name) >= k {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.splits == nil || len(t.splits) >= maxSplits {
		t.splits = map[string]int{}
	}
	if k > t.splits[name] {
		t.splits[name] = k
	}
	t.nsplits.Store(int32(len(t.splits)))
}

// Failed reports that an op sent by this table's route failed in a way
// that may mean the route is stale: no answer (connection refused or
// lost), or a 5xx. It asks for a refresh at once, rate-limited (see SetTiming).
func (t *Table) Failed() {
	t.failures.Add(1)
	t.maybeRefresh(time.Now().UnixNano())
}

// Err is why the last refresh failed, nil after one succeeded.
func (t *Table) Err() error {
	if p := t.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// use returns the current state (nil if none) and starts a background
// refresh when one is due.
func (t *Table) use() *state {
	t.maybeRefresh(time.Now().UnixNano())
	return t.st.Load()
}

// maybeRefresh starts a refresh when one is due: the map is older than the
// interval, or a failure was reported since the last refresh started (it
// may have been answered with the route that failed) and minGap has passed
// since that start.
func (t *Table) maybeRefresh(now int64) {
	due := t.due.Load()
	if t.failures.Load() != t.seen.Load() {
		due = min(due, t.started.Load()+t.minGap.Load())
	}
	if now < due || !t.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer t.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		defer cancel()
		t.Refresh(ctx)
	}()
}

// Refresh loads the map now, from the first seed that answers, and
// returns why none did. The table keeps its map when none does.
func (t *Table) Refresh(ctx context.Context) error {
	start := time.Now().UnixNano()
	t.started.Store(start)
	t.seen.Store(t.failures.Load())
	st, err := t.fetchAny(ctx)
	if err == nil {
		t.st.Store(st)
		t.lastErr.Store(nil)
	} else {
		t.lastErr.Store(&err)
	}
	t.due.Store(time.Now().UnixNano() + t.interval.Load())
	return err
}

func (t *Table) fetchAny(ctx context.Context) (*state, error) {
	if len(t.seeds) == 0 {
		return nil, errors.New("route: no address to ask for the shard map")
	}
	first := t.nextSeed.Add(1) - 1
	var errs []error
	for i := range t.seeds {
		seed := t.seeds[(int(first)+i)%len(t.seeds)]
		st, err := t.fetch(ctx, seed)
		if err == nil {
			return st, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// clusterAnswer is the part of GET /v1/cluster a table uses.
type clusterAnswer struct {
	KeyPlacement *struct {
		Scheme string `json:"scheme"`
		Shards int    `json:"shards"`
	} `json:"key_placement"`
	Members []struct {
		ID     string `json:"id"`
		HTTP   string `json:"http"`
		State  string `json:"state"`
		Health string `json:"health"` // gossip's word; older nodes put it in State
	} `json:"members"`
	Shards []struct {
		ID     uint32 `json:"id"`
		Leader string `json:"leader"`
	} `json:"shards"`
}

func (t *Table) fetch(ctx context.Context, seed string) (*state, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, seed+"/v1/cluster", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("%s/v1/cluster: %w", seed, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/v1/cluster: %s", seed, resp.Status)
	}
	return parse(seed, data)
}

// UserAgent is what a table's /v1/cluster requests say they are.
const UserAgent = "tally-route"

// parse builds a state from an answer of the node at seed. A member that
// gossips an unspecified host (it listens on every interface) is reached
// on the seed's host.
func parse(seed string, data []byte) (*state, error) {
	var ans clusterAnswer
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, fmt.Errorf("%s/v1/cluster: %w", seed, err)
	}
	kp := ans.KeyPlacement
	if kp == nil {
		return nil, fmt.Errorf("%s/v1/cluster has no key_placement (a node older than client routing)", seed)
	}
	scheme, err := placement.ParseScheme(kp.Scheme)
	if err != nil {
		return nil, fmt.Errorf("%s/v1/cluster: %w", seed, err)
	}
	if kp.Shards < 1 || kp.Shards > maxShards {
		return nil, fmt.Errorf("%s/v1/cluster: shard count %d", seed, kp.Shards)
	}
	u, err := url.Parse(seed)
	if err != nil {
		return nil, err
	}
	httpOf := map[string]string{}
	for _, m := range ans.Members {
		health := m.Health
		if health == "" {
			health = m.State
		}
		if m.HTTP == "" || health == "dead" || health == "left" || m.State == "removed" {
			continue
		}
		host, port, err := net.SplitHostPort(m.HTTP)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = u.Hostname()
		}
		httpOf[m.ID] = u.Scheme + "://" + net.JoinHostPort(host, port)
	}
	st := &state{keys: placement.Map{Scheme: scheme, Shards: kp.Shards}, leaders: make([]string, kp.Shards)}
	for _, s := range ans.Shards {
		if int(s.ID) < kp.Shards && s.Leader != "" {
			st.leaders[s.ID] = httpOf[s.Leader]
		}
	}
	return st, nil
}

// SplitOf returns the split factor an incr or decr answer carries (its
// "split" field), 0 when it has none, without decoding the whole answer:
// a load generator reads every answer. The name is the only string field
// and JSON escapes the quotes in it, so the field's key cannot be
// mistaken for part of it.
func SplitOf(answer []byte) int {
	i := bytes.LastIndex(answer, splitField)
	if i < 0 {
		return 0
	}
	k := 0
	for _, c := range answer[i+len(splitField):] {
		if c < '0' || c > '9' || k > placement.MaxSplit {
			break
		}
		k = 10*k + int(c-'0')
	}
	return k
}

var splitField = []byte(`"split":`)
