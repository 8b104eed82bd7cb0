package node_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/client"
	"tally/internal/testcluster"
	"tally/placement"
)

// TestLikesCountDistinctActors: 32 writers like one post through all
// three nodes, each of 600 actors four times, some pairs at the same
// moment; the count must be exactly 600 and every actor a member.
func TestLikesCountDistinctActors(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 4)
	const actors, repeats, writers = 600, 4, 32
	post := "likes:post:7"
	ctx := testcluster.Ctx(t, 3*time.Minute)
	var changed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		c := client.New(rotate(tc.HTTPAddrs(), w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Writer w takes every like i with i % writers == w; like i is
			// actor i % actors, so each actor's four likes come from
			// different writers, concurrently.
			for i := w; i < actors*repeats; i += writers {
				r, err := c.Like(ctx, post, fmt.Sprintf("user-%d", i%actors))
				if err != nil {
					errs <- err
					return
				}
				if r.Changed {
					changed.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("like failed: %v", err)
	}
	c := client.New(tc.HTTPAddrs())
	got, err := c.Get(testcluster.Ctx(t, time.Minute), post, client.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if got.Value != actors || changed.Load() != actors {
		t.Fatalf("post has %d likes and %d likes answered changed=true; want %d distinct actors for both", got.Value, changed.Load(), actors)
	}
	for _, a := range []string{"user-0", "user-599"} {
		if ok, err := c.IsMember(testcluster.Ctx(t, time.Minute), post, a, client.Linearizable); err != nil || !ok {
			t.Fatalf("%s is not a member: %v %v", a, ok, err)
		}
	}
	if ok, _ := c.IsMember(testcluster.Ctx(t, time.Minute), post, "user-600", ""); ok {
		t.Fatal("an actor that never liked is a member")
	}
}

// TestLikeUnlikeOneActor: an actor's likes and unlikes alternate; the
// counter follows membership exactly, and repeats change nothing.
func TestLikeUnlikeOneActor(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 4)
	c := client.New(tc.HTTPAddrs())
	ctx := testcluster.Ctx(t, time.Minute)
	post := "likes:post:8"
	steps := []struct {
		like          bool
		value         int64
		changed, memb bool
	}{
		{true, 1, true, true}, {true, 1, false, true}, {false, 0, true, false},
		{false, 0, false, false}, {true, 1, true, true}, {false, 0, true, false},
	}
	for i, s := range steps {
		var r client.ActorResult
		var err error
		if s.like {
			r, err = c.Like(ctx, post, "alice")
		} else {
			r, err = c.Unlike(ctx, post, "alice")
		}
		if err != nil || r.Value != s.value || r.Changed != s.changed {
			t.Fatalf("step %d (like=%v): %+v %v, want value %d changed %v", i, s.like, r, err, s.value, s.changed)
		}
		if m, err := c.IsMember(ctx, post, "alice", ""); err != nil || m != s.memb {
			t.Fatalf("step %d: member %v %v, want %v", i, m, err, s.memb)
		}
	}
	// Two likes from one actor at the same moment count once.
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		for k := 0; k < 4; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Like(ctx, post, fmt.Sprintf("bob-%d", round)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	if got, _ := c.Get(ctx, post, ""); got.Value != 20 {
		t.Fatalf("20 actors each liking 4 times at once: %d, want 20", got.Value)
	}
}

// TestStockNeverBelowZero: 64 clients decrement a stock of 300 with
// min 0: exactly 300 decrements succeed and the rest are refused with
// out_of_bounds; the stock never goes negative.
func TestStockNeverBelowZero(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 4)
	ctx := testcluster.Ctx(t, 2*time.Minute)
	c := client.New(tc.HTTPAddrs())
	stock := "stock:sku:1"
	if _, err := c.Incr(ctx, stock, 300); err != nil {
		t.Fatal(err)
	}
	var ok, refused, other atomic.Int64
	var wg sync.WaitGroup
	zero := int64(0)
	for w := 0; w < 64; w++ {
		cw := client.New(rotate(tc.HTTPAddrs(), w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				r, err := cw.Sub(ctx, stock, 1, client.WriteOptions{Min: &zero})
				var ae *client.APIError
				switch {
				case err == nil:
					ok.Add(1)
					if r.Value < 0 {
						t.Errorf("stock went to %d", r.Value)
					}
				case errors.As(err, &ae) && ae.Code == "out_of_bounds":
					refused.Add(1)
				default:
					other.Add(1)
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	got, err := c.Get(ctx, stock, client.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 300 || refused.Load() != 640-300 || got.Value != 0 {
		t.Fatalf("%d decrements succeeded, %d refused, %d failed; stock %d. Want 300, 340, 0, 0", ok.Load(), refused.Load(), other.Load(), got.Value)
	}
}

// TestRateLimitWindow: incr with max 20 and a 1 s TTL is a fixed-window
// limiter; under 32 clients no window admits more than 20, and a window
// the load covered admits exactly 20.
func TestRateLimitWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 4)
	ctx := testcluster.Ctx(t, 2*time.Minute)
	limit := int64(20)
	var mu sync.Mutex
	perWindow := map[time.Time]int64{}
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		cw := client.New(rotate(tc.HTTPAddrs(), w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				r, err := cw.Add(ctx, "rate:api-key-1", 1, client.WriteOptions{Max: &limit, TTL: time.Second})
				var ae *client.APIError
				if errors.As(err, &ae) && ae.Code == "out_of_bounds" {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if r.ExpiresAt == nil {
					t.Error("a TTL write answered no expires_at")
					return
				}
				mu.Lock()
				perWindow[*r.ExpiresAt]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	full := 0
	for end, n := range perWindow {
		if n > limit {
			t.Errorf("window ending %v admitted %d > %d", end, n, limit)
		}
		if n == limit {
			full++
		}
	}
	if full == 0 {
		t.Errorf("no window admitted exactly %d: %v", limit, perWindow)
	}
	t.Logf("%d windows: %v", len(perWindow), perWindow)
}

// TestExpiryIsTheSameOnEveryReplica: an expiring counter's expiry comes
// from the leader's entry time, so every replica reports the same expiry,
// also after a leader change, and every replica reads 0 once it passes.
func TestExpiryIsTheSameOnEveryReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 4)
	ctx := testcluster.Ctx(t, 2*time.Minute)
	c := client.New(tc.HTTPAddrs())
	name := "session:42"
	r, err := c.Add(ctx, name, 5, client.WriteOptions{TTL: 4 * time.Second})
	if err != nil || r.ExpiresAt == nil {
		t.Fatalf("ttl write: %+v %v", r, err)
	}
	// Move the shard's leadership; the expiry must not change.
	s := placement.Home(name, 4)
	li := tc.LeaderNode(s)
	if err := tc.Nodes[li].ShardForTest(s).TransferLeadership("", ""); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	testcluster.WaitFor(t, "a new leader", 30*time.Second, func() bool { i := tc.LeaderNode(s); return i >= 0 && i != li })
	r2, err := c.Add(ctx, name, 1, client.WriteOptions{TTL: time.Hour})
	if err != nil || r2.ExpiresAt == nil || !r2.ExpiresAt.Equal(*r.ExpiresAt) || r2.Value != 6 {
		t.Fatalf("write in the same window on the new leader: %+v %v; want value 6 and expiry %v kept", r2, err, r.ExpiresAt)
	}
	for _, n := range tc.Nodes {
		one := client.New([]string{n.HTTPAddr()})
		testcluster.WaitFor(t, "replica applies the write", 30*time.Second, func() bool {
			g, err := one.Get(ctx, name, client.Stale)
			return err == nil && g.Value == 6
		})
		g, _ := one.Get(ctx, name, client.Stale)
		if g.ExpiresAt == nil || !g.ExpiresAt.Equal(*r.ExpiresAt) {
			t.Fatalf("%s reports expiry %v, want %v", n.ID(), g.ExpiresAt, r.ExpiresAt)
		}
	}
	testcluster.WaitFor(t, "the counter to expire everywhere", 60*time.Second, func() bool {
		for _, n := range tc.Nodes {
			g, err := client.New([]string{n.HTTPAddr()}).Get(ctx, name, client.Stale)
			if err != nil || g.Value != 0 {
				return false
			}
		}
		return true
	})
	// A write after expiry starts a new window.
	r3, err := c.Add(ctx, name, 1, client.WriteOptions{TTL: time.Hour})
	if err != nil || r3.Value != 1 || r3.ExpiresAt == nil || !r3.ExpiresAt.After(*r.ExpiresAt) {
		t.Fatalf("write after expiry: %+v %v", r3, err)
	}
}
