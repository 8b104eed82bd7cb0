package route

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/fsm"
	"tally/placement"
)

// fakeNode answers GET /v1/cluster with whatever answer() returns and
// counts the requests.
type fakeNode struct {
	*httptest.Server
	mu      sync.Mutex
	answer  string
	fetches atomic.Int64
}

func newFakeNode(t *testing.T) *fakeNode {
	t.Helper()
	f := &fakeNode{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/cluster" || r.Header.Get("User-Agent") != UserAgent {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		f.fetches.Add(1)
		f.mu.Lock()
		a := f.answer
		f.mu.Unlock()
		if a == "" {
			http.Error(w, `{"error":{"code":"unavailable"}}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, a)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeNode) set(answer string) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *fakeNode) hostPort() string { return strings.TrimPrefix(f.URL, "http://") }

// clusterJSON is a /v1/cluster answer: members n0..n(k-1) at the given
// HTTP addresses, shard s led by leaders[s] ("" for none).
func clusterJSON(shards int, httpAddrs []string, leaders []string) string {
	var ms, ss []string
	for i, a := range httpAddrs {
		ms = append(ms, fmt.Sprintf(`{"id":"n%d","http":%q,"state":"alive"}`, i, a))
	}
	for s, l := range leaders {
		ss = append(ss, fmt.Sprintf(`{"id":%d,"leader":%q,"replicas":[],"applied_index":1}`, s, l))
	}
	return fmt.Sprintf(`{"node":"n0","key_placement":{"scheme":"slots","shards":%d},"members":[%s],"shards":[%s]}`,
		shards, strings.Join(ms, ","), strings.Join(ss, ","))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestKeyRouteIsTheNodes(t *testing.T) {
	for shards := 1; shards <= 9; shards++ {
		for n := 1; n <= shards; n++ {
			for i := range 200 {
				key := fmt.Sprint("key-", i)
				if got, want := KeyRoute(key, n, shards), fsm.KeyRoute(key, n, shards); got != want {
					t.Fatalf("KeyRoute(%q, %d, %d) = %d, the nodes route it to %d", key, n, shards, got, want)
				}
			}
		}
	}
}

func TestSplitOf(t *testing.T) {
	for _, c := range []struct {
		answer string
		want   int
	}{
		{`{"name":"x","value":1,"exact":true}`, 0},
		{`{"name":"x","value":1,"exact":false,"split":6}`, 6},
		{`{"name":"x","value":1,"exact":false,"split":12,"expires_at":"2030-01-01T00:00:00.000Z"}`, 12},
		{`{"name":"a\"split\":9","value":1,"exact":true}`, 0},
		{`{"name":"a\"split\":9","value":1,"exact":false,"split":3}`, 3},
		{`{"name":"x","split":}`, 0},
		{``, 0},
	} {
		if got := SplitOf([]byte(c.answer)); got != c.want {
			t.Errorf("SplitOf(%s) = %d, want %d", c.answer, got, c.want)
		}
	}
}

// TestRoutes: once loaded, every op goes to its shard's leader: ops on a
// counter to its home shard's, plain adds of a split counter to the
// leader of the sub-counter the key routes to, or the caller's sub.
func TestRoutes(t *testing.T) {
	const shards = 4
	a, b := newFakeNode(t), newFakeNode(t)
	addrs := []string{a.hostPort(), b.hostPort()}
	leaders := []string{"n0", "n1", "", "n1"}
	tb := New([]string{a.URL}, nil)
	// The node has no answer yet, so this use cannot race the map's
	// loading: its fetch fails.
	if got := tb.Home("x"); got != "" {
		t.Fatalf("Home before loading = %q, want none", got)
	}
	a.set(clusterJSON(shards, addrs, leaders))
	waitFor(t, "a use to load the map", func() bool { tb.Home("x"); _, ok := tb.Map(); return ok })
	tb.SetTiming(time.Hour, time.Hour) // no refresh from here on: the picks are what is tested
	waitFor(t, "the first refresh to end", func() bool { return !tb.refreshing.Load() })
	if err := tb.Refresh(context.Background()); err != nil { // so the next one is due in an hour
		t.Fatal(err)
	}
	if m, _ := tb.Map(); m != (placement.Map{Scheme: placement.Slots, Shards: shards}) {
		t.Fatalf("map = %+v", m)
	}
	want := func(s uint32) string {
		switch leaders[s] {
		case "n0":
			return a.URL
		case "n1":
			return b.URL
		}
		return ""
	}
	keys := placement.Map{Scheme: placement.Slots, Shards: shards}
	for i := range 100 {
		name := fmt.Sprint("c", i)
		home := keys.Home(name)
		if got := tb.Home(name); got != want(home) {
			t.Fatalf("Home(%s) = %q, want shard %d's leader %q", name, got, home, want(home))
		}
		if got := tb.Add(name, "k", 7); got != want(home) {
			t.Fatalf("Add(%s) of an unsplit counter = %q, want %q", name, got, want(home))
		}
	}
	const hot = "hot"
	tb.Learn(hot, 3)
	tb.Learn(hot, 2) // a factor never shrinks
	if k := tb.Split(hot); k != 3 {
		t.Fatalf("split = %d, want 3", k)
	}
	for sub := range uint32(6) {
		if got, w := tb.Add(hot, "", sub), want(keys.SubShard(hot, int(sub%3))); got != w {
			t.Errorf("unkeyed Add(%s, sub %d) = %q, want %q", hot, sub, got, w)
		}
	}
	for i := range 50 {
		key := fmt.Sprint("key-", i)
		if got, w := tb.Add(hot, key, 0), want(keys.SubShard(hot, fsm.KeyRoute(key, 3, shards))); got != w {
			t.Errorf("Add(%s, key %s) = %q, want %q", hot, key, got, w)
		}
	}
	if got := tb.Home(hot); got != want(keys.Home(hot)) {
		t.Errorf("Home(%s) = %q: ops other than plain adds go home", hot, got)
	}
	// Keys made for a sub route where that sub's unkeyed adds are
	// applied: the first sub-counter led by the node leading sub mod 3.
	n := 0
	gen := func() string { n++; return fmt.Sprint("gen-", n) }
	for sub := range uint32(6) {
		lead := want(keys.SubShard(hot, int(sub%3)))
		first := int(sub % 3)
		for i := range 3 {
			if want(keys.SubShard(hot, i)) == lead && lead != "" {
				first = i
				break
			}
		}
		key := tb.KeyFor(hot, sub, gen)
		if got := fsm.KeyRoute(key, 3, shards); got != first {
			t.Errorf("KeyFor(%s, sub %d) = %q, which routes to sub-counter %d, want %d", hot, sub, key, got, first)
		}
	}
	before := n
	if key := tb.KeyFor("c1", 5, gen); key != fmt.Sprint("gen-", before+1) || n != before+1 {
		t.Errorf("KeyFor on an unsplit counter drew %d keys", n-before)
	}
	if n := testing.AllocsPerRun(1000, func() { tb.Add(hot, "key-1", 1); tb.Home("x") }); n != 0 {
		t.Errorf("a pick allocates %v times", n)
	}
}

// TestMemberHosts: a member gossiping an unspecified host is reached on
// the asked node's host; a dead member leads nothing the table knows of.
func TestMemberHosts(t *testing.T) {
	a := newFakeNode(t)
	_, port, _ := net.SplitHostPort(a.hostPort())
	a.set(`{"key_placement":{"scheme":"fnv64a","shards":3},"members":[` +
		`{"id":"all","http":"0.0.0.0:` + port + `","state":"alive"},{"id":"v6","http":"[::]:7071","state":"alive"},` +
		`{"id":"gone","http":"10.1.1.1:7070","state":"dead"}],` +
		`"shards":[{"id":0,"leader":"all"},{"id":1,"leader":"v6"},{"id":2,"leader":"gone"},{"id":9,"leader":"all"}]}`)
	tb := New([]string{a.URL}, nil)
	if err := tb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m, _ := tb.Map(); m.Scheme != placement.FNV {
		t.Errorf("scheme %q", m.Scheme)
	}
	for s, w := range []string{a.URL, "http://127.0.0.1:7071", ""} {
		if got := tb.Leader(uint32(s)); got != w {
			t.Errorf("shard %d: leader %q, want %q", s, got, w)
		}
	}
}

// TestBadAnswersLeaveNoMap: answers a table cannot route by (no
// key_placement, an unknown scheme, an absurd shard count, not JSON) load
// nothing, and every pick says "no route".
func TestBadAnswersLeaveNoMap(t *testing.T) {
	a := newFakeNode(t)
	for _, ans := range []string{
		`{"node":"n1","members":[],"shards":[{"id":0,"leader":"n1"}]}`,
		`{"key_placement":{"scheme":"md5","shards":2},"members":[],"shards":[]}`,
		`{"key_placement":{"scheme":"slots","shards":0},"members":[],"shards":[]}`,
		`{"key_placement":{"scheme":"slots","shards":100000000},"members":[],"shards":[]}`,
		`<html>`,
		``, // a 503
	} {
		a.set(ans)
		tb := New([]string{a.URL}, nil)
		if err := tb.Refresh(context.Background()); err == nil {
			t.Errorf("answer %q loaded", ans)
		}
		if _, ok := tb.Map(); ok || tb.Home("x") != "" || tb.Add("x", "", 0) != "" || tb.Err() == nil {
			t.Errorf("answer %q: a map, a route or no error", ans)
		}
	}
}

// TestSeedsInTurn: a dead seed is skipped for the next one.
func TestSeedsInTurn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	a := newFakeNode(t)
	a.set(clusterJSON(1, []string{a.hostPort()}, []string{"n0"}))
	tb := New([]string{dead, a.URL}, nil)
	for range 2 { // whichever seed it asks first
		if err := tb.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if tb.Leader(0) != a.URL {
		t.Fatalf("leader %q", tb.Leader(0))
	}
}

// TestRefreshTiming: while in use the map is fetched about once per
// Interval, not per pick; a failure asks for a fetch at once, and many
// failures together cost one.
func TestRefreshTiming(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	addrs := []string{a.hostPort(), b.hostPort()}
	a.set(clusterJSON(1, addrs, []string{"n0"}))
	tb := New([]string{a.URL}, nil)
	const interval = 50 * time.Millisecond
	tb.SetTiming(interval, interval)
	start := time.Now()
	waitFor(t, "three fetches while in use", func() bool { tb.Home("x"); return a.fetches.Load() >= 3 })
	// Each fetch but the first waits an interval after the previous one.
	if d := time.Since(start); d < 2*interval {
		t.Errorf("3 fetches in %v: more often than every %v", d, interval)
	}

	// Idle: nothing is fetched.
	tb.SetTiming(time.Hour, time.Hour)
	waitFor(t, "a refresh in flight to end", func() bool { return !tb.refreshing.Load() })
	if err := tb.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := a.fetches.Load()
	for range 1000 {
		tb.Home("x")
	}
	if got := a.fetches.Load(); got != n {
		t.Fatalf("%d fetches for picks within the interval", got-n)
	}

	// The leader moves; a failure of the old route is followed at once.
	a.set(clusterJSON(1, addrs, []string{"n1"}))
	tb.SetTiming(time.Hour, 0)
	tb.Failed()
	waitFor(t, "the new leader", func() bool { return tb.Home("x") == b.URL })

	// Failures without pause are followed at most once per MinGap.
	const gap = 50 * time.Millisecond
	tb.SetTiming(time.Hour, gap)
	waitFor(t, "the refresh to end", func() bool { return !tb.refreshing.Load() })
	n = a.fetches.Load()
	start = time.Now()
	for time.Since(start) < 10*gap {
		tb.Failed()
		tb.Home("x")
	}
	got := a.fetches.Load() - n
	// One fetch per gap, plus one of slack (a test run once saw 12 in 501 ms
	// at a 50 ms gap; the fake counts requests, and net/http may send a
	// GET twice). Without the limit this loop fetches back to back,
	// hundreds of times.
	if limit := int64(time.Since(start)/gap) + 2; got < 1 || got > limit {
		t.Fatalf("%d fetches for failures over %v, want 1 to %d", got, time.Since(start), limit)
	}
}

// TestConcurrentUse is for the race detector: picks, learning and
// failures from many goroutines while the map is refreshed.
func TestConcurrentUse(t *testing.T) {
	a, b := newFakeNode(t), newFakeNode(t)
	addrs := []string{a.hostPort(), b.hostPort()}
	a.set(clusterJSON(4, addrs, []string{"n0", "n1", "n0", "n1"}))
	tb := New([]string{a.URL}, nil)
	tb.SetTiming(time.Millisecond, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				name := fmt.Sprint("c", i%50)
				if got := tb.Add(name, "", uint32(g)); got != "" && got != a.URL && got != b.URL {
					t.Errorf("route %q", got)
					return
				}
				tb.Home(name)
				tb.Learn(name, 1+i%4)
				if i%100 == 0 {
					tb.Failed()
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, "the refreshes to end", func() bool { return !tb.refreshing.Load() })
	if a.fetches.Load() == 0 {
		t.Fatal("never refreshed")
	}
}
