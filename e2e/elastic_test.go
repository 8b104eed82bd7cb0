package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"tally/client"
)

// evenly reports whether every shard of the cluster c sees has three
// voters, none of them on an id outside on, no learner, and each of on
// holds its share ±1.
func evenly(ctx context.Context, c *client.Client, on []string) (bool, string) {
	info, err := c.Cluster(ctx)
	if err != nil {
		return false, err.Error()
	}
	counts := map[string]int{}
	for _, s := range info.Shards {
		if len(s.Replicas) != 3 || len(s.Learners) != 0 {
			return false, fmt.Sprintf("shard %d: voters %v learners %v", s.ID, s.Replicas, s.Learners)
		}
		for _, r := range s.Replicas {
			if !slices.Contains(on, r) {
				return false, fmt.Sprintf("shard %d is on %s", s.ID, r)
			}
			counts[r]++
		}
	}
	share := float64(3*len(info.Shards)) / float64(len(on))
	for _, id := range on {
		if c := float64(counts[id]); c < share-1 || c > share+1 {
			return false, fmt.Sprintf("%s holds %d (share %.1f)", id, counts[id], share)
		}
	}
	return true, ""
}

func waitEvenly(t *testing.T, c *client.Client, on ...string) {
	t.Helper()
	start := time.Now()
	why := ""
	for time.Since(start) < 3*time.Minute {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, w := evenly(ctx, c, on)
		cancel()
		if ok {
			t.Logf("replicas even over %v after %v", on, time.Since(start).Round(time.Millisecond))
			return
		}
		why = w
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("replicas not even over %v after 3m: %s", on, why)
}

// TestNodesComeAndGoUnderLoad runs scripts/cluster.sh's membership
// commands under a keyed write load: a node is added, one decommissioned
// and stopped, one killed and removed, and a replacement added. Replicas
// end even over the three nodes left, and every acknowledged increment is
// counted exactly once.
func TestNodesComeAndGoUnderLoad(t *testing.T) {
	e := newEnv(t, 5, 8)
	e.mustScript("up", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	names := []string{"views:a", "views:b", "views:c", "views:d", "views:e", "views:f"}
	led := &ledger{acked: map[string]int64{}, unknown: map[string]int64{}}
	stop := make(chan struct{})
	// n1 stays throughout; n4 and n5 serve once they are up.
	all := e.addrs
	e.addrs = []string{all[0], all[3], all[4]}
	writers := e.load(ctx, 16, names, led, stop)
	waitAcks(t, led, 300, 2*time.Minute)

	c := client.New([]string{all[0]}, client.WithRetryDeadline(30*time.Second))
	t.Log(lastLine(e.mustScript("add")))
	waitEvenly(t, c, "n1", "n2", "n3", "n4")
	waitAcks(t, led, 300, 2*time.Minute)

	t.Log(lastLine(e.mustScript("decommission", "n2")))
	waitEvenly(t, c, "n1", "n3", "n4")
	waitAcks(t, led, 300, 2*time.Minute)

	e.mustScript("kill", "n3")
	t.Log(lastLine(e.mustScript("remove", "n3")))
	t.Log(lastLine(e.mustScript("add")))
	waitEvenly(t, c, "n1", "n4", "n5")
	waitAcks(t, led, 300, 2*time.Minute)

	close(stop)
	writers.Wait()
	led.mu.Lock()
	defer led.mu.Unlock()
	if led.failures > 0 {
		t.Errorf("%d increments failed outright", led.failures)
	}
	var total int64
	for _, name := range names {
		cv, err := c.Get(ctx, name, client.Linearizable)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		acked, unknown := led.acked[name], led.unknown[name]
		if cv.Value < acked || cv.Value > acked+unknown {
			t.Errorf("%s = %d; acknowledged %d, unknown %d: an increment was lost or counted twice", name, cv.Value, acked, unknown)
		}
		total += acked
	}
	t.Logf("%d increments acknowledged, all counted once, through add, decommission, remove and replace", total)
}
