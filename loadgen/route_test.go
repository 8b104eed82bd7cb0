package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"tally/placement"
)

// routeNode is a fake node of a two-shard cluster that records which
// requests reached it; the seed also answers /v1/cluster.
type routeNode struct {
	*httptest.Server
	mu   sync.Mutex
	seen map[string]int // "incr NAME", "read NAME", "batch", "cluster" -> requests
}

func newRouteNode(t *testing.T, cluster func() string, split map[string]int) *routeNode {
	n := &routeNode{seen: map[string]int{}}
	n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		name := strings.TrimSuffix(strings.TrimPrefix(p, "/v1/counters/"), "/incr")
		var what, answer string
		switch {
		case p == "/v1/cluster" && cluster != nil:
			what, answer = "cluster", cluster()
		case r.Method == http.MethodPost && p == "/v1/batch":
			what, answer = "batch", `{"results":[{"name":"a","value":1,"exact":true}]}`
		case r.Method == http.MethodPost:
			what = "incr " + name
			if k := split[name]; k > 1 {
				answer = fmt.Sprintf(`{"name":%q,"value":1,"exact":false,"split":%d}`, name, k)
			} else {
				answer = fmt.Sprintf(`{"name":%q,"value":1,"exact":true}`, name)
			}
		case p == "/v1/counters":
			what, answer = "multi-read", `{"counters":[{"name":"a","value":1},{"name":"b","value":1}]}`
		default:
			what, answer = "read "+name, fmt.Sprintf(`{"name":%q,"value":1,"split":1,"shards":[0]}`, name)
		}
		n.mu.Lock()
		n.seen[what]++
		n.mu.Unlock()
		w.Write([]byte(answer))
	}))
	t.Cleanup(n.Close)
	return n
}

func (n *routeNode) count(what string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.seen[what]
}

// TestRouteToLeaders: with RouteToLeaders, every client sends increments
// and single reads to the leader of the counter's shard; a split
// counter's increments (the factor learnt from their answers) go to one
// sub-counter's leader per client; batches and multi-counter reads to the
// client's own address. Without it, everything goes to that address.
func TestRouteToLeaders(t *testing.T) {
	var a, b *routeNode
	cluster := func() string {
		return fmt.Sprintf(`{"node":"a","key_placement":{"scheme":"slots","shards":2},`+
			`"members":[{"id":"a","http":%q,"state":"alive"},{"id":"b","http":%q,"state":"alive"}],`+
			`"shards":[{"id":0,"leader":"a"},{"id":1,"leader":"b"}]}`,
			strings.TrimPrefix(a.URL, "http://"), strings.TrimPrefix(b.URL, "http://"))
	}
	const hot = "hot"
	split := map[string]int{hot: 2}
	a, b = newRouteNode(t, cluster, split), newRouteNode(t, nil, split)
	leader := map[uint32]*routeNode{0: a, 1: b}
	keys := placement.Map{Scheme: placement.Slots, Shards: 2}

	h := NewHTTP([]string{a.URL}, 2, "", RouteToLeaders())
	defer h.Close()
	if err := h.Routes().Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c0, c1 := h.Client(0), h.Client(1)
	names := []string{"n-0", "n-1", "n-2", "n-3", "n-4", "n-5"}
	for _, name := range names {
		if err := c0.Incr(ctx, name, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c1.Read(ctx, []string{name}); err != nil {
			t.Fatal(err)
		}
		home := leader[keys.Home(name)]
		if home.count("incr "+name) != 1 || home.count("read "+name) != 1 {
			t.Errorf("%s (shard %d): the incr and the read did not go to its leader", name, keys.Home(name))
		}
	}
	// The first increment of hot (client 0's) goes home and answers split
	// 2, which every client of the target learns; then each client keeps
	// to its sub-counter's leader.
	for range 5 {
		for _, c := range []Target{c0, c1} {
			if err := c.Incr(ctx, hot, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	sub0, sub1 := leader[keys.SubShard(hot, 0)], leader[keys.SubShard(hot, 1)]
	if sub0 == sub1 {
		t.Fatal("the test needs hot's sub-counters on different shards")
	}
	if got0, got1 := sub0.count("incr "+hot), sub1.count("incr "+hot); got0 != 5 || got1 != 5 {
		t.Errorf("hot increments: %d on sub-counter 0's leader, %d on sub-counter 1's; want 5 and 5", got0, got1)
	}
	errs := make([]error, 1)
	if err := c1.IncrBatch(ctx, []Op{{"a", 1}}, errs); err != nil {
		t.Fatal(err)
	}
	if _, err := c1.Read(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if a.count("batch") != 1 || a.count("multi-read") != 1 {
		t.Errorf("the batch and the multi-counter read did not go to the client's address")
	}

	// Without routing, everything goes to the given address.
	plain := NewHTTP([]string{b.URL}, 1, "")
	defer plain.Close()
	for _, name := range names {
		if err := plain.Client(0).Incr(ctx, name, 1); err != nil {
			t.Fatal(err)
		}
		if b.count("incr "+name) != 1+btoi(leader[keys.Home(name)] == b) {
			t.Errorf("%s: went elsewhere than the one address", name)
		}
	}
	if plain.Routes() != nil || b.count("cluster") != 0 {
		t.Error("a target without routing asked for the map")
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
