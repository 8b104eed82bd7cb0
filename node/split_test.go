package node_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"tally/client"
	"tally/fsm"
	"tally/internal/testcluster"
	"tally/node"
	"tally/placement"
)

// TestSplitUnderLoadRaiseAndFailover: 64 writers (keyed increments with
// client retries) hit one hot counter through all three nodes while the
// counter is split 3 ways, a sub-counter shard's leader is killed, and the
// counter is split 6 ways on the two nodes left. Every increment must be
// counted exactly once.
func TestSplitUnderLoadRaiseAndFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 8)
	const (
		writers = 64
		total   = 12000
		hot     = "hot"
	)
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	events := make(chan string, 8)
	fail := func(err error) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	admin := client.New(tc.HTTPAddrs(), client.WithRetryDeadline(60*time.Second))
	split := func(k int) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		got, err := admin.Split(ctx, hot, k)
		if err != nil || got != k {
			fail(fmt.Errorf("split to %d: %d, %v", k, got, err))
		}
		events <- fmt.Sprintf("split %d", got)
	}
	var killed atomic.Int32
	killed.Store(-1)
	kill := func() {
		// The leader of sub-counter 1's shard: it holds writes by now.
		li := tc.LeaderNode(placement.SubShard(hot, 1, 8))
		if li >= 0 {
			tc.Nodes[li].Kill()
			killed.Store(int32(li))
		}
		events <- fmt.Sprintf("killed node %d", li)
	}

	start := time.Now()
	runCtx := testcluster.Ctx(t, 5*time.Minute)
	var wg, ctl sync.WaitGroup
	var acked atomic.Int64
	for w := range writers {
		c := client.New(rotate(tc.HTTPAddrs(), w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := sent.Add(1)
				if i > total {
					return
				}
				switch i {
				case total / 4:
					ctl.Add(1)
					go func() { defer ctl.Done(); split(3) }()
				case total / 2:
					kill()
				case 3 * total / 4:
					ctl.Add(1)
					go func() { defer ctl.Done(); split(6) }()
				}
				ctx, cancel := context.WithTimeout(runCtx, 90*time.Second)
				_, err := c.Incr(ctx, hot, 1)
				cancel()
				if err != nil {
					fail(err)
					continue
				}
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	ctl.Wait()
	close(events)
	for e := range events {
		t.Logf("event: %s", e)
	}
	t.Logf("%v: load done", time.Since(start))
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d operations failed (first: %v)", f, firstErr.Load())
	}
	if li := killed.Load(); li >= 0 {
		tc.Nodes[li] = nil
	} else {
		t.Fatal("no leader was killed")
	}
	got, err := client.New(tc.HTTPAddrs(), client.WithRetryDeadline(60*time.Second)).Get(testcluster.Ctx(t, 90*time.Second), hot, client.Linearizable)
	if err != nil {
		t.Fatalf("final read: %v", err)
	}
	if got.Value != acked.Load() || acked.Load() != total {
		t.Fatalf("hot = %d; %d increments acknowledged of %d", got.Value, acked.Load(), total)
	}
	if got.Split != 6 || len(got.Shards) != 6 {
		t.Fatalf("split %d over shards %v, want 6", got.Split, got.Shards)
	}
	// The writes really spread: more than one sub-counter holds some.
	var live *node.Node
	for _, n := range tc.Nodes {
		if n != nil {
			live = n
		}
	}
	nonzero := 0
	for i := range 6 {
		vals, err := live.ReadForTest(testcluster.Ctx(t, 30*time.Second), placement.SubShard(hot, i, 8), []string{placement.SubName(hot, i)}, true)
		if err != nil {
			t.Fatalf("reading sub-counter %d: %v", i, err)
		}
		if vals[0].Value > 0 {
			nonzero++
		}
	}
	if nonzero < 2 {
		t.Fatalf("only %d sub-counters hold increments", nonzero)
	}
	t.Logf("hot = %d over %d non-zero sub-counters", got.Value, nonzero)
}

// TestKeyedRetriesAcrossSplitCountOnce: keys applied before a split (all on
// the home shard) and after it are retried through every node, including
// one whose split factor is out of date; nothing counts twice.
func TestKeyedRetriesAcrossSplitCountOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 8)
	ctx := testcluster.Ctx(t, 3*time.Minute)
	clients := make([]*client.Client, 3)
	for i := range clients {
		// Each through its own node, as it routes (and learns) them.
		clients[i] = client.New([]string{tc.Nodes[i].HTTPAddr()}, client.WithRetryDeadline(60*time.Second), client.WithoutRouting())
	}
	const name = "retried"
	first := map[string]int64{} // key -> value its first answer had
	write := func(c *client.Client, key string) int64 {
		t.Helper()
		r, err := c.IncrWithKey(ctx, name, 3, key)
		if err != nil {
			t.Fatalf("incr %s: %v", key, err)
		}
		return r.Value
	}
	slots := map[int]int{}
	for i := range 200 {
		key := fmt.Sprint("before-", i)
		first[key] = write(clients[i%3], key)
		slots[fsm.KeySlot(key, 8)]++
	}
	if got, err := clients[0].Split(ctx, name, 8); err != nil || got != 8 {
		t.Fatalf("split: %d, %v", got, err)
	}
	for i := range 100 {
		key := fmt.Sprint("after-", i)
		first[key] = write(clients[i%3], key)
	}
	want := int64(3 * len(first))
	check := func(what string) {
		t.Helper()
		for _, c := range clients {
			got, err := c.Get(ctx, name, client.Linearizable)
			if err != nil || got.Value != want {
				t.Fatalf("%s: %s = %d (%v), want %d", what, name, got.Value, err, want)
			}
		}
	}
	check("after the split")

	// Every key again, through another node than the first time: keys from
	// before the split whose slot is not 0 now route to other shards, where
	// their records were imported.
	for i, c := range clients {
		for key, v := range first {
			if got := write(c, key); got != v {
				t.Fatalf("retry of %s through node %d answered %d, first testcluster.Answer %d", key, i, got, v)
			}
		}
	}
	check("after retrying every key through every node")

	// A node with an out-of-date factor: keyed retries reach the home
	// shard, are refused as moved, and are routed again; an unkeyed write
	// still counts once and teaches it the factor.
	stale := tc.Nodes[2]
	stale.ForgetSplitsForTest()
	for key := range first {
		write(clients[2], key)
	}
	check("after retries through a node that forgot the split")
	stale.ForgetSplitsForTest()
	if _, err := clients[2].Incr(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	want++
	check("after an unkeyed write through a node that forgot the split")
	if k := stale.HotReport().Known[name].N; k != 8 {
		t.Fatalf("the stale node learned factor %d from the write, want 8", k)
	}
	t.Logf("keys per slot before the split: %v", slots)
}

// counterModel is porcupine's model of a counter under unit increments and
// reads.
var counterModel = porcupine.Model{
	Init: func() interface{} { return int64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		v := state.(int64)
		if input.(bool) { // a read
			return output.(int64) == v, v
		}
		return true, v + 1
	},
	DescribeOperation: func(input, output interface{}) string {
		if input.(bool) {
			return fmt.Sprintf("read() -> %d", output.(int64))
		}
		return "incr()"
	},
}

// TestSplitCounterReadsLinearizable: clients increment a counter split 4
// ways (by 1, through every node) and read it linearizably; porcupine
// must find the history linearizable. An increment whose outcome is
// unknown is recorded as never returning, so it may or may not count.
func TestSplitCounterReadsLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 8)
	ctx := testcluster.Ctx(t, 3*time.Minute)
	const name = "lin"
	if got, err := client.New(tc.HTTPAddrs()).Split(ctx, name, 4); err != nil || got != 4 {
		t.Fatalf("split: %d, %v", got, err)
	}
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	for cl := range 8 {
		c := client.New(rotate(tc.HTTPAddrs(), cl), client.WithRetryDeadline(30*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				read := (i+cl)%3 == 0
				op := porcupine.Operation{ClientId: cl, Input: read, Call: now()}
				var err error
				if read {
					var got client.Counter
					got, err = c.Get(ctx, name, client.Linearizable)
					op.Output = got.Value
				} else {
					_, err = c.Incr(ctx, name, 1)
				}
				op.Return = now()
				switch {
				case err == nil:
				case !read && client.IsOutcomeUnknown(err):
					op.Return = math.MaxInt64 // may have happened at any time after the call
				default:
					continue // failed: nothing happened
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(history) < 300 {
		t.Fatalf("only %d of 400 operations completed", len(history))
	}
	res := porcupine.CheckOperationsTimeout(counterModel, history, time.Minute)
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations: %v", len(history), res)
	}
}

// TestAutoSplitHotNotCold: a counter written well above the threshold for
// longer than the sustain time is split to min(shards, 2 × nodes); cold
// counters written all along are not.
func TestAutoSplitHotNotCold(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.StartWith(t, 3, 8, func(c *node.Config) {
		c.NoAutoSplit = false
		c.SplitThreshold = 40
		c.SplitSustain = 2 * time.Second
	})
	ctx := testcluster.Ctx(t, 3*time.Minute)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		c := client.New(rotate(tc.HTTPAddrs(), w), client.WithRetryDeadline(30*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Incr(ctx, "viral", 1)
			}
		}()
	}
	// Cold counters: 10 writes a second in all, one a second each.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := client.New(tc.HTTPAddrs(), client.WithRetryDeadline(30*time.Second))
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c.Incr(ctx, fmt.Sprint("cold-", i%10), 1)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	c := client.New(tc.HTTPAddrs())
	testcluster.WaitFor(t, "viral split automatically", 2*time.Minute, func() bool {
		got, err := c.Get(ctx, "viral", client.Stale)
		return err == nil && got.Split == 6
	})
	for i := range 10 {
		name := fmt.Sprint("cold-", i)
		got, err := c.Get(ctx, name, client.Linearizable)
		if err != nil || got.Split != 1 {
			t.Fatalf("%s: split %d (%v), want 1", name, got.Split, err)
		}
	}
	// The splitting node says so in /v1/hot.
	found := false
	for _, n := range tc.Nodes {
		for _, ev := range n.HotReport().Splits {
			if ev.Name == "viral" && ev.Reason == "auto" && ev.Err == "" && ev.Got == 6 {
				found = true
			}
		}
	}
	if !found {
		t.Fatal("no node logged the automatic split")
	}
}

// TestSplitAPI: the split endpoint's answers and refusals, and how other
// calls treat a split counter.
func TestSplitAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 8)
	base := "http://" + tc.Nodes[1].HTTPAddr()
	for _, c := range []struct {
		Body   string
		Status int
		code   string
	}{
		{``, 400, "bad_body"},
		{`{}`, 400, "bad_body"},
		{`{"n": "4"}`, 400, "bad_body"},
		{`{"n": 4, "x": 1}`, 400, "bad_body"},
		{`{"n": 0}`, 400, "bad_split"},
		{`{"n": 9}`, 400, "bad_split"},
	} {
		if a := testcluster.Do(t, "POST", base+"/v1/counters/s/split", c.Body, nil); a.Status != c.Status || testcluster.ErrCode(a) != c.code {
			t.Errorf("split %q: %d %v, want %d %s", c.Body, a.Status, a.Body, c.Status, c.code)
		}
	}
	if a := testcluster.Do(t, "POST", base+"/v1/counters/s/split", `{"n": 1}`, nil); a.Status != 200 || a.Body["split"] != 1.0 {
		t.Errorf("n=1 on an unsplit counter: %d %v", a.Status, a.Body)
	}
	testcluster.Do(t, "POST", base+"/v1/counters/s/incr", `{"delta": 10}`, nil)
	if a := testcluster.Do(t, "POST", base+"/v1/counters/s/split", `{"n": 4}`, nil); a.Status != 200 || a.Body["split"] != 4.0 {
		t.Fatalf("split: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "POST", base+"/v1/counters/s/split", `{"n": 4}`, nil); a.Status != 200 || a.Body["split"] != 4.0 {
		t.Errorf("split again: %d %v", a.Status, a.Body)
	}
	for _, body := range []string{`{"n": 2}`, `{"n": 1}`} {
		if a := testcluster.Do(t, "POST", base+"/v1/counters/s/split", body, nil); a.Status != 409 || testcluster.ErrCode(a) != "split_shrink" {
			t.Errorf("shrink %s: %d %v", body, a.Status, a.Body)
		}
	}
	a := testcluster.Do(t, "POST", base+"/v1/counters/s/incr", ``, nil)
	if a.Status != 200 || a.Body["exact"] != false {
		t.Errorf("incr of a split counter: %d %v", a.Status, a.Body)
	}
	for _, body := range []string{`{"min": 0}`, `{"max": 100}`, `{"ttl_ms": 1000}`} {
		if a := testcluster.Do(t, "POST", base+"/v1/counters/s/incr", body, nil); a.Status != 409 || testcluster.ErrCode(a) != "counter_split" {
			t.Errorf("incr %s of a split counter: %d %v", body, a.Status, a.Body)
		}
	}
	// Likes stay on the home shard and count in the total.
	if a := testcluster.Do(t, "PUT", base+"/v1/counters/s/actors/u1", ``, nil); a.Status != 200 || a.Body["changed"] != true {
		t.Errorf("like a split counter: %d %v", a.Status, a.Body)
	}
	a = testcluster.Do(t, "POST", base+"/v1/batch", `{"ops":[{"name":"s","delta":5},{"name":"plain","delta":5},{"name":"s","delta":1,"max":3}]}`, nil)
	res, _ := a.Body["results"].([]any)
	if a.Status != 200 || len(res) != 3 {
		t.Fatalf("batch: %d %v", a.Status, a.Body)
	}
	if r := res[0].(map[string]any); r["exact"] != false {
		t.Errorf("batch op on a split counter: %v", r)
	}
	if r := res[1].(map[string]any); r["exact"] != true || r["value"] != 5.0 {
		t.Errorf("batch op on a plain counter: %v", r)
	}
	if r := res[2].(map[string]any); r["error"].(map[string]any)["code"] != "counter_split" {
		t.Errorf("bounded batch op on a split counter: %v", r)
	}
	// 10 + 1 + 1 like + 5 = 17, through every node and both read paths.
	for _, n := range tc.Nodes {
		for _, q := range []string{"", "?consistency=stale"} {
			if q != "" {
				testcluster.WaitFor(t, "replicas caught up", 30*time.Second, func() bool {
					return testcluster.Do(t, "GET", "http://"+n.HTTPAddr()+"/v1/counters/s"+q, "", nil).Body["value"] == 17.0
				})
			}
			a := testcluster.Do(t, "GET", "http://"+n.HTTPAddr()+"/v1/counters/s"+q, "", nil)
			if a.Status != 200 || a.Body["value"] != 17.0 || a.Body["split"] != 4.0 || len(a.Body["shards"].([]any)) != 4 {
				t.Errorf("get%s via %s: %d %v", q, n.ID(), a.Status, a.Body)
			}
		}
		a := testcluster.Do(t, "GET", "http://"+n.HTTPAddr()+"/v1/counters?name=s&name=plain", "", nil)
		cs, _ := a.Body["counters"].([]any)
		if a.Status != 200 || len(cs) != 2 || cs[0].(map[string]any)["value"] != 17.0 || cs[1].(map[string]any)["value"] != 5.0 {
			t.Errorf("multi-get via %s: %d %v", n.ID(), a.Status, a.Body)
		}
	}
	// An expiring counter cannot be split.
	testcluster.Do(t, "POST", base+"/v1/counters/window/incr", `{"ttl_ms": 60000}`, nil)
	if a := testcluster.Do(t, "POST", base+"/v1/counters/window/split", `{"n": 2}`, nil); a.Status != 409 || testcluster.ErrCode(a) != "not_splittable" {
		t.Errorf("split of an expiring counter: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "GET", base+"/v1/hot", "", nil); a.Status != 200 || a.Body["auto_split"] != false {
		t.Errorf("/v1/hot: %d %v", a.Status, a.Body)
	}
}
