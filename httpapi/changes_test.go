package httpapi_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tally/client"
	"tally/internal/testcluster"
	"tally/node"
)

// feedCopy is what a changefeed consumer keeps: each counter part's value,
// and per shard the last index seen, to check the order.
type feedCopy struct {
	mu    sync.Mutex
	parts map[string]map[int]int64
	last  map[int]uint64
	cur   string
	err   error
}

func newFeedCopy() *feedCopy {
	return &feedCopy{parts: map[string]map[int]int64{}, last: map[int]uint64{}}
}

func (f *feedCopy) load(dump []client.DumpedCounter, cursor string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range dump {
		f.set(d.Name, d.Part, d.Value)
	}
	f.cur = cursor
}

func (f *feedCopy) set(name string, part int, v int64) {
	if f.parts[name] == nil {
		f.parts[name] = map[int]int64{}
	}
	f.parts[name][part] = v
}

func (f *feedCopy) apply(evs []client.ChangeEvent, cursor string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range evs {
		if ev.Index <= f.last[ev.Shard] {
			f.err = fmt.Errorf("shard %d: index %d after %d", ev.Shard, ev.Index, f.last[ev.Shard])
			return f.err
		}
		f.last[ev.Shard] = ev.Index
		for _, c := range ev.Changes {
			old := f.parts[c.Name][c.Part]
			if c.Value-c.Delta != old {
				f.err = fmt.Errorf("%s part %d: moves from %d, the copy has %d", c.Name, c.Part, c.Value-c.Delta, old)
				return f.err
			}
			f.set(c.Name, c.Part, c.Value)
		}
	}
	f.cur = cursor
	return nil
}

func (f *feedCopy) value(name string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var sum int64
	for _, v := range f.parts[name] {
		sum += v
	}
	return sum
}

func (f *feedCopy) cursor() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

// follow runs a consumer of the feed on c from the copy's cursor until ctx
// ends.
func (f *feedCopy) follow(ctx context.Context, c *client.Client) <-chan error {
	done := make(chan error, 1)
	go func() { done <- c.Changes(ctx, f.cursor(), f.apply) }()
	return done
}

// matches waits until the copy has every name's value as the cluster reads it.
func matches(t *testing.T, ctx context.Context, c *client.Client, f *feedCopy, names []string) {
	t.Helper()
	want := map[string]int64{}
	for _, n := range names {
		r, err := c.Get(ctx, n, client.Linearizable)
		if err != nil {
			t.Fatal(err)
		}
		want[n] = r.Value
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad := ""
		for _, n := range names {
			if got := f.value(n); got != want[n] {
				bad = fmt.Sprintf("%s: the feed's copy has %d, the cluster %d", n, got, want[n])
				break
			}
		}
		if bad == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(bad)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChangesKeepACopyExact: a consumer that follows the feed from the
// beginning, one that starts from a dump taken under load, and one that
// stops and resumes on another node from its cursor all end with exactly
// the cluster's values: increments, decrements, likes, a split counter's
// parts, deletes.
func TestChangesKeepACopyExact(t *testing.T) {
	tc := testcluster.Start(t, 3, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := client.New(tc.HTTPAddrs())
	names := []string{"a", "b", "c", "d", "liked", "split"}
	if _, err := c.Split(ctx, "split", 3); err != nil {
		t.Fatal(err)
	}
	fromStart := newFeedCopy()
	doneStart := fromStart.follow(ctx, client.New(tc.HTTPAddrs()[:1]))

	var wg sync.WaitGroup
	write := func(rounds int) {
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < rounds; i++ {
					name := names[(w+i)%len(names)]
					var err error
					switch {
					case name == "liked":
						_, err = c.Like(ctx, name, fmt.Sprint("u", (w*rounds+i)%37))
					case i%5 == 4:
						_, err = c.Incr(ctx, name, -2)
					default:
						_, err = c.Incr(ctx, name, int64(1+i%3))
					}
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	write(40)
	dump, dumpCursor, err := c.Dump(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fromDump := newFeedCopy()
	fromDump.load(dump, dumpCursor)
	doneDump := fromDump.follow(ctx, client.New(tc.HTTPAddrs()[2:]))

	// A consumer that stops half way and resumes elsewhere from its cursor.
	resumed := newFeedCopy()
	rctx, rcancel := context.WithCancel(ctx)
	doneFirst := resumed.follow(rctx, client.New(tc.HTTPAddrs()[1:2]))
	write(40)
	wg.Wait()
	rcancel()
	if err := <-doneFirst; err != nil {
		t.Fatal(err)
	}
	doneResumed := resumed.follow(ctx, client.New(tc.HTTPAddrs()[2:]))
	if a := testcluster.Do(t, "DELETE", testcluster.BaseURL(tc.Nodes[0])+"/v1/counters/d", "", nil); a.Status != 200 {
		t.Fatalf("delete: %d %v", a.Status, a.Body)
	}
	write(20)
	wg.Wait()

	for what, f := range map[string]*feedCopy{"from the start": fromStart, "from a dump": fromDump, "resumed": resumed} {
		t.Run(what, func(t *testing.T) { matches(t, ctx, c, f, names) })
	}
	cancel()
	for _, d := range []<-chan error{doneStart, doneDump, doneResumed} {
		if err := <-d; err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []*feedCopy{fromStart, fromDump, resumed} {
		if f.err != nil {
			t.Fatal(f.err)
		}
	}
}

// TestChangesCursorExpired: a consumer further behind than the nodes keep
// gets a clear answer (410 cursor_expired, naming the dump), and a cursor
// from the dump works.
func TestChangesCursorExpired(t *testing.T) {
	tc := testcluster.StartWith(t, 1, 2, func(c *node.Config) { c.ChangeRetention = 5 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := client.New(tc.HTTPAddrs())
	for i := 0; i < 30; i++ {
		if _, err := c.Incr(ctx, fmt.Sprint("n", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	base := testcluster.BaseURL(tc.Nodes[0])
	if a := testcluster.Do(t, "GET", base+"/v1/changes?follow=false", "", nil); a.Status != 410 || testcluster.ErrCode(a) != "cursor_expired" {
		t.Fatalf("an expired cursor: %d %v, want 410 cursor_expired", a.Status, a.Body)
	}
	if err := c.Changes(ctx, "", func([]client.ChangeEvent, string) error { return nil }); !errors.Is(err, client.ErrCursorExpired) {
		t.Fatalf("client on an expired cursor: %v", err)
	}
	dump, cur, err := c.Dump(ctx)
	if err != nil || len(dump) != 30 {
		t.Fatalf("dump: %d counters, %v", len(dump), err)
	}
	f := newFeedCopy()
	f.load(dump, cur)
	done := f.follow(ctx, c)
	if _, err := c.Incr(ctx, "n3", 5); err != nil {
		t.Fatal(err)
	}
	matches(t, ctx, c, f, []string{"n3", "n4"})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestChangesBadInput(t *testing.T) {
	tc := testcluster.Start(t, 1, 2)
	base := testcluster.BaseURL(tc.Nodes[0])
	for _, u := range []string{"/v1/changes?cursor=yesterday", "/v1/changes?cursor=5:10", "/v1/changes?cursor=0:-1", "/v1/changes?follow=maybe"} {
		a := testcluster.Do(t, "GET", base+u, "", nil)
		if a.Status != 400 {
			t.Errorf("%s: %d %v, want 400", u, a.Status, a.Body)
		}
	}
	if cur := nowCursor(t, base); !strings.HasPrefix(cur, "0:") || !strings.Contains(cur, ",1:") {
		t.Errorf("cursor=now: %q", cur)
	}
}

// nowCursor reads the first step of a feed from now: its cursor.
func nowCursor(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/v1/changes?cursor=now&follow=false")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("cursor=now: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
			return id
		}
	}
	t.Fatal("no event with an id")
	return ""
}

// TestChangesMoveOffACutOffNode: a node cut off from the others stops
// serving its stale replicas' feed, so a consumer moves on to a node
// that has the changes.
func TestChangesMoveOffACutOffNode(t *testing.T) {
	tc := testcluster.StartWith(t, 3, 4, func(c *node.Config) { c.EnableFaults = true })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n1, n2, n3 := tc.Nodes[0], tc.Nodes[1], tc.Nodes[2]
	f := newFeedCopy()
	// A cursor taken now, before the first write (cursor=now in the
	// consumer's own request could be taken after it).
	f.cur = nowCursor(t, testcluster.BaseURL(n1))
	done := f.follow(ctx, client.New([]string{testcluster.BaseURL(n3), testcluster.BaseURL(n1)}, client.WithRetryDeadline(time.Minute)))
	c := client.New([]string{testcluster.BaseURL(n1), testcluster.BaseURL(n2)})
	if _, err := c.Incr(ctx, "cut", 1); err != nil {
		t.Fatal(err)
	}
	matches(t, ctx, c, f, []string{"cut"})
	n3.Faults().Block(n1.RaftAddr(), n2.RaftAddr())
	n1.Faults().Block(n3.RaftAddr())
	n2.Faults().Block(n3.RaftAddr())
	for i := 0; i < 50; i++ {
		if _, err := c.Incr(ctx, "cut", 1); err != nil {
			t.Fatal(err)
		}
	}
	matches(t, ctx, c, f, []string{"cut"})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
