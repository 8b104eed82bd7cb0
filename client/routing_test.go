package client

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/internal/testcluster"
	"tally/placement"
	"tally/route"
)

// forwarded is the writes the cluster's live nodes sent on to another
// node's shard leader (tally_forwarded_out_total, summed).
func forwarded(t *testing.T, tc *testcluster.Cluster) float64 {
	t.Helper()
	var sum float64
	for _, n := range tc.Nodes {
		if n == nil {
			continue
		}
		fams, err := n.Metrics().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "tally_forwarded_out_total" {
				for _, m := range f.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// leaderURLs lists each shard's leader as a base URL ("" for none), as the
// nodes themselves say.
func leaderURLs(tc *testcluster.Cluster, shards int) []string {
	out := make([]string, shards)
	for s := range out {
		if i := tc.LeaderNode(uint32(s)); i >= 0 {
			out[s] = "http://" + tc.Nodes[i].HTTPAddr()
		}
	}
	return out
}

// tableLeaders is what the client's routing table believes.
func tableLeaders(c *Client, shards int) []string {
	out := make([]string, shards)
	for s := range out {
		out[s] = c.routes.Leader(uint32(s))
	}
	return out
}

// namesOnEveryShard returns per names for each shard.
func namesOnEveryShard(prefix string, shards, per int) []string {
	var names []string
	count := make([]int, shards)
	for i := 0; len(names) < shards*per; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if s := placement.Home(name, shards); count[s] < per {
			count[s]++
			names = append(names, name)
		}
	}
	return names
}

// withoutForwarding runs burst once the routing table agrees with the
// shard leaders, and requires that no node forwarded a write meanwhile. A
// burst during which leadership moved (the balancer's doing) proves
// nothing and is run again; while the table disagrees, use keeps it in use
// so that it refreshes.
func withoutForwarding(t *testing.T, tc *testcluster.Cluster, c *Client, shards int, use, burst func()) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		before := leaderURLs(tc, shards)
		if slices.Contains(before, "") || !slices.Equal(tableLeaders(c, shards), before) {
			use()
		} else {
			f0 := forwarded(t, tc)
			burst()
			f1 := forwarded(t, tc)
			if slices.Equal(leaderURLs(tc, shards), before) {
				if f1 != f0 {
					t.Fatalf("%v writes were forwarded between nodes with the client's table in agreement with the leaders %v", f1-f0, before)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the table %v never settled on the leaders %v", tableLeaders(c, shards), leaderURLs(tc, shards))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRoutingSendsOpsToLeaders: a client given one node's address learns
// the shard map and sends every write to its shard's leader, so no node
// forwards one: increments and likes of counters on every shard, a split
// counter's increments, and after a leader moves (the table follows). A
// killed leader is routed around. Without routing, the same writes are
// forwarded, which shows the metric sees them.
func TestRoutingSendsOpsToLeaders(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const shards = 6
	tc := testcluster.Start(t, 3, shards)
	ctx := testcluster.Ctx(t, 4*time.Minute)
	c := New([]string{tc.Nodes[0].HTTPAddr()}, WithRetryDeadline(60*time.Second))
	names := namesOnEveryShard("r", shards, 2)
	var want sync.Map // name -> int64, the increments acknowledged
	incr := func(name string) {
		t.Helper()
		if _, err := c.Incr(ctx, name, 1); err != nil {
			t.Fatalf("incr %s: %v", name, err)
		}
		v, _ := want.LoadOrStore(name, new(int64))
		*v.(*int64)++
	}
	incrAll := func() {
		for _, name := range names {
			incr(name)
		}
	}
	withoutForwarding(t, tc, c, shards, incrAll, func() {
		for range 3 {
			incrAll()
		}
		for _, name := range names {
			if _, err := c.Like(ctx, name, "alice"); err != nil {
				t.Fatalf("like %s: %v", name, err)
			}
			if got, err := c.Get(ctx, name, Linearizable); err != nil || got.Value != *mustLoad(&want, name)+1 {
				t.Fatalf("get %s: %+v %v", name, got, err)
			}
		}
	})

	// A split counter.
	{
		const hot = "routed-hot"
		if k, err := c.Split(ctx, hot, 3); err != nil || k != 3 {
			t.Fatalf("split: %d %v", k, err)
		}
		// The first write each sub-counter's leader gets teaches it the
		// factor (the home shard answers it); from then on none forwards.
		incrHot := func() {
			for range 30 {
				incr(hot)
			}
		}
		incrHot()
		withoutForwarding(t, tc, c, shards, incrHot, incrHot)
		got, err := c.Get(ctx, hot, Linearizable)
		if err != nil || got.Value != *mustLoad(&want, hot) || got.Split != 3 {
			t.Fatalf("get %s: %+v %v, want %d over 3 sub-counters", hot, got, err, *mustLoad(&want, hot))
		}
	}

	// A leader moves.
	{
		s := placement.Home(names[0], shards)
		li := tc.LeaderNode(s)
		if li < 0 {
			t.Fatalf("shard %d has no leader", s)
		}
		old := "http://" + tc.Nodes[li].HTTPAddr()
		if err := tc.Nodes[li].HandOff(s); err != nil {
			t.Fatal(err)
		}
		testcluster.WaitFor(t, "a new leader", 30*time.Second, func() bool { i := tc.LeaderNode(s); return i >= 0 && i != li })
		// Writes go on through the move; the table follows the leaders
		// (the balancer may move some more), and then nothing is forwarded.
		incrAll()
		withoutForwarding(t, tc, c, shards, incrAll, incrAll)
		t.Logf("shard %d moved from %s; the table has %v", s, old, tableLeaders(c, shards))
	}

	// A leader is killed: a client that knows every node routes around it.
	{
		c := New(tc.HTTPAddrs(), WithRetryDeadline(60*time.Second))
		incrAll := func(what string) {
			t.Helper()
			for _, name := range names {
				if _, err := c.Incr(ctx, name, 1); err != nil {
					t.Fatalf("incr %s %s: %v", name, what, err)
				}
			}
		}
		s := placement.Home(names[0], shards)
		var li int
		testcluster.WaitFor(t, "the table to know the shard's leader", 30*time.Second, func() bool {
			incrAll("before the kill")
			li = tc.LeaderNode(s)
			return li >= 0 && c.routes.Leader(s) == "http://"+tc.Nodes[li].HTTPAddr()
		})
		tc.Nodes[li].Kill()
		tc.Nodes[li] = nil
		for range 5 {
			incrAll(fmt.Sprintf("with shard %d's leader killed", s))
		}
		dead := "http://" + tc.Cfgs[li].HTTPAddr
		testcluster.WaitFor(t, "the table to drop the dead leader", 60*time.Second, func() bool {
			incrAll("after the kill")
			l := c.routes.Leader(s)
			return l != "" && l != dead
		})
	}

	// Without routing, through one node.
	{
		var live string
		for _, n := range tc.Nodes {
			if n != nil {
				live = n.HTTPAddr()
			}
		}
		plain := New([]string{live}, WithoutRouting(), WithRetryDeadline(60*time.Second))
		if plain.routes != nil {
			t.Fatal("a routing table without routing")
		}
		f0 := forwarded(t, tc)
		for _, name := range names {
			if _, err := plain.Incr(ctx, name, 1); err != nil {
				t.Fatal(err)
			}
		}
		if f := forwarded(t, tc) - f0; f == 0 {
			t.Fatalf("no write forwarded through one node to counters on all %d shards", shards)
		}
	}
}

func mustLoad(m *sync.Map, name string) *int64 {
	v, _ := m.Load(name)
	if v == nil {
		return new(int64)
	}
	return v.(*int64)
}

// clusterAnswer is a /v1/cluster answer for shards shards, shard s led by
// the member at leaders[s] (a host:port; "" for none).
func clusterAnswer(leaders ...string) string {
	var ms, ss []string
	for s, l := range leaders {
		ms = append(ms, fmt.Sprintf(`{"id":"n%d","http":%q,"state":"alive"}`, s, l))
		leader := fmt.Sprintf("n%d", s)
		if l == "" {
			leader = ""
		}
		ss = append(ss, fmt.Sprintf(`{"id":%d,"leader":%q,"replicas":[]}`, s, leader))
	}
	return fmt.Sprintf(`{"node":"n0","key_placement":{"scheme":"slots","shards":%d},"members":[%s],"shards":[%s]}`,
		len(leaders), strings.Join(ms, ","), strings.Join(ss, ","))
}

// TestRoutedRequests: with the map loaded, each call goes where its op is
// applied: ops on one counter to its home shard's leader, a plain add of a
// split counter (whose factor an answer taught) to the leader of the
// sub-counter its key routes to; stale reads and multi-counter reads to
// the caller's address.
func TestRoutedRequests(t *testing.T) {
	var answerSplit sync.Map // name -> the split factor incr answers carry
	node := func(n int, w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/v1/counters/")
		name = strings.TrimSuffix(strings.TrimSuffix(name, "/incr"), "/actors/al")
		switch {
		case r.Method == http.MethodPost:
			if split, ok := answerSplit.Load(name); ok {
				reply(w, 200, fmt.Sprintf(`{"name":%q,"value":1,"exact":false,"split":%d}`, name, split))
				return
			}
			reply(w, 200, fmt.Sprintf(`{"name":%q,"value":1,"exact":true}`, name))
		case r.URL.Path == "/v1/counters":
			reply(w, 200, `{"counters":[]}`)
		default:
			reply(w, 200, `{"name":"x","value":1,"member":true}`)
		}
	}
	seed, lead0, lead1 := newFake(t, node), newFake(t, node), newFake(t, node)
	seed.setCluster(clusterAnswer(lead0.addr(), lead1.addr()))
	c := New([]string{seed.addr()})
	if err := c.routes.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	leaderOf := map[uint32]*fake{0: lead0, 1: lead1}
	count := func() [3]int { return [3]int{len(seed.requests()), len(lead0.requests()), len(lead1.requests())} }
	expect := func(what string, f *fake, call func() error) {
		t.Helper()
		before := count()
		if err := call(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		after := count()
		for i, g := range []*fake{seed, lead0, lead1} {
			want := before[i]
			if g == f {
				want++
			}
			if after[i] != want {
				t.Fatalf("%s: requests per node went from %v to %v; want one more on node %d only", what, before, after, i)
			}
		}
	}
	names := namesOnEveryShard("x", 2, 2)
	for _, name := range names {
		home := leaderOf[placement.Home(name, 2)]
		expect("incr "+name, home, func() error { _, err := c.Incr(ctx, name, 1); return err })
		expect("bounded add "+name, home, func() error { _, err := c.Add(ctx, name, 1, WriteOptions{Max: ptr(9)}); return err })
		expect("get "+name, home, func() error { _, err := c.Get(ctx, name, Linearizable); return err })
		expect("like "+name, home, func() error { _, err := c.Like(ctx, name, "al"); return err })
		expect("stale get "+name, seed, func() error { _, err := c.Get(ctx, name, Stale); return err })
	}
	expect("multi-get", seed, func() error { _, err := c.MultiGet(ctx, names, ""); return err })

	// The first answer teaches the client that hot is split 2 ways.
	const hot = "hot"
	answerSplit.Store(hot, 2)
	expect("first incr of split hot", leaderOf[placement.Home(hot, 2)], func() error { _, err := c.Incr(ctx, hot, 1); return err })
	for i := range 20 {
		key := fmt.Sprint("k", i)
		sub := route.KeyRoute(key, 2, 2)
		expect("keyed incr of split hot", leaderOf[placement.SubShard(hot, sub, 2)], func() error {
			_, err := c.IncrWithKey(ctx, hot, 1, key)
			return err
		})
	}
	expect("bounded add of split hot", leaderOf[placement.Home(hot, 2)], func() error {
		_, err := c.Add(ctx, hot, 1, WriteOptions{TTL: time.Minute})
		return err
	})
}

// TestRouteFailureFallsBack: an attempt whose leader does not answer is
// retried at once on the caller's address, and the table asks again for
// the map; a 503 from the leader does the same.
func TestRouteFailureFallsBack(t *testing.T) {
	var unavailable atomic.Bool
	seed := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		reply(w, 200, `{"name":"x","value":1,"exact":true}`)
	})
	leader := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if unavailable.Load() {
			reply(w, 503, `{"error":{"code":"unavailable","message":"shutting down"}}`)
			return
		}
		reply(w, 200, `{"name":"x","value":1,"exact":true}`)
	})
	dead := deadAddr(t)
	seed.setCluster(clusterAnswer(dead))
	c := New([]string{seed.addr()})
	c.routes.SetTiming(time.Hour, 0)
	if err := c.routes.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	fetches := seed.tableFetches()
	if _, err := c.Incr(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	if n := len(seed.requests()); n != 1 {
		t.Fatalf("the seed saw %d requests, want the retry after the dead leader", n)
	}
	waitUntil(t, "the failure to ask for the map again", func() bool { return seed.tableFetches() > fetches })

	// A new leader: the next failure of the dead one leads the table to it.
	seed.setCluster(clusterAnswer(leader.addr()))
	if _, err := c.Incr(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the table to follow the new leader", func() bool { return c.routes.Leader(0) == "http://"+leader.addr() })
	seedN, leaderN := len(seed.requests()), len(leader.requests())
	if _, err := c.Incr(ctx, "x", 1); err != nil || len(leader.requests()) != leaderN+1 || len(seed.requests()) != seedN {
		t.Fatalf("incr after the refresh: %v; want it on the leader only", err)
	}

	// The leader answers 503: the retry goes to the seed, not back to it.
	unavailable.Store(true)
	if _, err := c.Incr(ctx, "x", 1); err != nil {
		t.Fatal(err)
	}
	if l, s := len(leader.requests()), len(seed.requests()); l != leaderN+2 || s != seedN+1 {
		t.Fatalf("leader saw %d requests, seed %d; want %d and %d", l, s, leaderN+2, seedN+1)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
