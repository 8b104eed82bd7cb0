package resp_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tally/internal/testcluster"
	"tally/placement"
	"tally/resp"
)

func respAddrs(tc *testcluster.Cluster) []string {
	var out []string
	for _, n := range tc.Nodes {
		out = append(out, n.RESPAddr())
	}
	return out
}

// Plain go-redis clients on every node of a real cluster count exactly
// under 64 concurrent clients, with every counter command.
func TestRealClusterPlainClients(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.StartRESP(t, 3, 4, resp.Forward, nil)
	addrs := respAddrs(tc)
	ctx := testcluster.Ctx(t, 2*time.Minute)
	const clients, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			c := redis.NewClient(&redis.Options{Addr: addrs[i%len(addrs)], Protocol: 2 + i%2, PoolSize: 1})
			defer c.Close()
			for j := range each {
				if err := c.Incr(ctx, "hot").Err(); err != nil {
					errs <- err
					return
				}
				if err := c.IncrBy(ctx, fmt.Sprintf("c%d", j%7), 2).Err(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: addrs[1], Protocol: 2})
	defer c.Close()
	if v, err := c.Get(ctx, "hot").Int64(); err != nil || v != clients*each {
		t.Fatalf("hot = %d %v, want %d", v, err, clients*each)
	}
	total := int64(0)
	vals, err := c.MGet(ctx, "c0", "c1", "c2", "c3", "c4", "c5", "c6").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		var n int64
		fmt.Sscan(v.(string), &n)
		total += n
	}
	if total != 2*clients*each {
		t.Fatalf("spread counters sum to %d, want %d", total, 2*clients*each)
	}
	if n, err := c.Exists(ctx, "hot", "c0", "never").Result(); err != nil || n != 2 {
		t.Fatalf("EXISTS = %d %v", n, err)
	}
	// A keyed retry returns the first result and counts once.
	first, err := c.Do(ctx, "TALLY.INCRBY", "views", "5", "IDEMPOTENCY", "req-7").Int64()
	if err != nil {
		t.Fatal(err)
	}
	again, err := redis.NewClient(&redis.Options{Addr: addrs[2], Protocol: 2}).Do(ctx, "TALLY.INCRBY", "views", "5", "IDEMPOTENCY", "req-7").Int64()
	if err != nil || again != first {
		t.Fatalf("retry on another node = %d %v, want %d", again, err, first)
	}
	if err := c.Do(ctx, "TALLY.INCRBY", "views", "6", "IDEMPOTENCY", "req-7").Err(); err == nil || !strings.HasPrefix(err.Error(), "KEYREUSED") {
		t.Fatalf("reused id: %v", err)
	}
	// Bounds: a stock of 3 allows exactly 3 decrements.
	if err := c.IncrBy(ctx, "stock", 3).Err(); err != nil {
		t.Fatal(err)
	}
	ok := 0
	for range 5 {
		err := c.Do(ctx, "TALLY.INCRBY", "stock", "-1", "MIN", "0").Err()
		switch {
		case err == nil:
			ok++
		case !strings.HasPrefix(err.Error(), "OUTOFBOUNDS 0 "):
			t.Fatalf("decrement below 0: %v", err)
		}
	}
	if ok != 3 {
		t.Fatalf("%d decrements of a stock of 3 succeeded", ok)
	}
}

// go-redis's ClusterClient learns the slot map, sends each key to its
// leader, follows -MOVED when a leader moves, and counts exactly.
func TestRealClusterClientFollowsMoved(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.StartRESP(t, 3, 4, resp.Moved, nil)
	ctx := testcluster.Ctx(t, 2*time.Minute)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: respAddrs(tc)[:1], Protocol: 2})
	defer cc.Close()
	keys := map[uint32]string{}
	for i := 0; len(keys) < 4; i++ {
		k := fmt.Sprintf("k%d", i)
		s := placement.Home(k, 4)
		if _, ok := keys[s]; !ok {
			keys[s] = k
		}
	}
	want := map[string]int64{}
	incr := func(rounds int) {
		for range rounds {
			for _, k := range keys {
				if err := cc.Incr(ctx, k).Err(); err != nil {
					t.Fatalf("INCR %s: %v", k, err)
				}
				want[k]++
			}
		}
	}
	incr(10)
	// Move shard 0's leader away: the client's map is now stale, and the
	// old leader answers -MOVED.
	from := tc.LeaderNode(0)
	if err := tc.Nodes[from].HandOff(0); err != nil {
		t.Fatal(err)
	}
	testcluster.WaitFor(t, "a new leader of shard 0", time.Minute, func() bool {
		l := tc.LeaderNode(0)
		return l >= 0 && l != from
	})
	incr(10)
	for k, v := range want {
		if got, err := cc.Get(ctx, k).Int64(); err != nil || got != v {
			t.Errorf("%s = %d %v, want %d", k, got, err, v)
		}
	}
	// A plain client on the old leader is told where shard 0 went.
	plain := redis.NewClient(&redis.Options{Addr: tc.Nodes[from].RESPAddr(), Protocol: 2})
	defer plain.Close()
	testcluster.WaitFor(t, "the old leader to redirect", time.Minute, func() bool {
		err := plain.Incr(ctx, keys[0]).Err()
		if err == nil {
			want[keys[0]]++ // the leader moved back: served here
			return false
		}
		return strings.HasPrefix(err.Error(), "MOVED ")
	})
}
