package node_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/client"
	"tally/internal/testcluster"
	"tally/placement"
)

// TestClusterExactUnderLoadAndLeaderLoss: 64 writers send increments
// through all three nodes to one hot counter and 500 cold ones; midway the
// leader of the hot counter's shard dies. Every increment must be counted
// exactly once: none lost, none doubled by the clients' retries.
func TestClusterExactUnderLoadAndLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 8)
	const (
		writers = 64
		total   = 20000
		cold    = 500
		hot     = "hot"
	)
	hotShard := placement.Home(hot, 8)
	var sent atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	killAt := int64(total / 2)
	killed := make(chan int, 1)

	start := time.Now()
	runCtx := testcluster.Ctx(t, 5*time.Minute) // the whole load, however the cluster behaves
	// Each writer has its own client so requests spread over the nodes.
	var wg sync.WaitGroup
	expect := make([]map[string]int64, writers)
	for w := 0; w < writers; w++ {
		expect[w] = map[string]int64{}
		c := client.New(rotate(tc.HTTPAddrs(), w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := sent.Add(1)
				if i > total {
					return
				}
				if i == killAt {
					// Kill the hot shard's leader while the load goes on.
					li := tc.LeaderNode(hotShard)
					if li >= 0 {
						t.Logf("%v: killing %s, the leader of shard %d", time.Since(start), tc.Cfgs[li].ID, hotShard)
						tc.Nodes[li].Kill()
						t.Logf("%v: killed", time.Since(start))
						killed <- li
					}
				}
				name := hot
				if i%2 == 0 {
					name = fmt.Sprintf("cold-%d", (i/2)%cold)
				}
				ctx, cancel := context.WithTimeout(runCtx, 90*time.Second)
				_, err := c.Incr(ctx, name, 1)
				cancel()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				expect[w][name]++
			}
		}(w)
	}
	wg.Wait()
	t.Logf("%v: load done", time.Since(start))
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d increments failed (first: %v); every one should succeed through retries", f, firstErr.Load())
	}
	li := -1
	select {
	case li = <-killed:
	default:
		t.Fatal("the leader was never killed")
	}
	tc.Nodes[li] = nil

	want := map[string]int64{}
	for _, m := range expect {
		for k, v := range m {
			want[k] += v
		}
	}
	names := make([]string, 0, len(want))
	for k := range want {
		names = append(names, k)
	}
	c := client.New(tc.HTTPAddrs(), client.WithRetryDeadline(60*time.Second))
	got, err := c.MultiGet(testcluster.Ctx(t, 90*time.Second), names, client.Linearizable)
	if err != nil {
		t.Fatalf("final read: %v", err)
	}
	var sum int64
	for _, cv := range got {
		if cv.Value != want[cv.Name] {
			t.Errorf("%s = %d, want %d", cv.Name, cv.Value, want[cv.Name])
		}
		sum += cv.Value
	}
	if sum != total {
		t.Errorf("sum of all counters = %d, want %d", sum, total)
	}
	t.Logf("hot=%d, sum=%d over %d counters; killed node %s (leader of shard %d)", want[hot], sum, len(want), tc.Cfgs[li].ID, hotShard)
}

// rotate returns addrs starting at position k, so each client prefers a
// different node.
func rotate(addrs []string, k int) []string {
	out := make([]string, 0, len(addrs))
	for i := range addrs {
		out = append(out, addrs[(i+k)%len(addrs)])
	}
	return out
}
