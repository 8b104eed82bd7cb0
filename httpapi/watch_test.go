package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tally/client"
	"tally/internal/testcluster"
)

type sse struct {
	ID    uint64
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Index uint64 `json:"index"`
}

// watch opens a watch stream and delivers its events until ctx ends.
func watch(t *testing.T, ctx context.Context, url, lastID string) <-chan sse {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatalf("watch %s: %v", url, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("watch %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan sse, 1024)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.ID, _ = strconv.ParseUint(line[4:], 10, 64)
			case strings.HasPrefix(line, "data: "):
				json.Unmarshal([]byte(line[6:]), &ev)
			case line == "" && ev.Name != "":
				out <- ev
				ev = sse{}
			}
		}
	}()
	return out
}

// until reads events until one has want, checking on the way that the
// stream only moves forward.
func until(t *testing.T, events <-chan sse, want int64, d time.Duration) sse {
	t.Helper()
	timeout := time.After(d)
	var last sse
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended at %+v, before value %d", last, want)
			}
			if ev.ID != ev.Index {
				t.Fatalf("event id %d, index %d", ev.ID, ev.Index)
			}
			if last.Name != "" && (ev.Index <= last.Index || ev.Value < last.Value) {
				t.Fatalf("stream went back: %+v after %+v", ev, last)
			}
			last = ev
			if ev.Value == want {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event with value %d within %v; last %+v", want, d, last)
		}
	}
}

// TestWatchSeesEveryWriteInOrder: under 64 concurrent writers, a watch on
// another node than the counter's leader moves only forward and ends on
// the exact final value; a split counter reports its sum; a reconnect with
// Last-Event-ID gets nothing older; watchers of one counter share one
// subscription per node.
func TestWatchSeesEveryWriteInOrder(t *testing.T) {
	tc := testcluster.Start(t, 3, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := client.New(tc.HTTPAddrs())
	if _, err := c.Incr(ctx, "w", 5); err != nil {
		t.Fatal(err)
	}
	base := testcluster.BaseURL(tc.Nodes[1])
	events := watch(t, ctx, base+"/v1/counters/w/watch?interval=50ms", "")
	first := until(t, events, 5, 30*time.Second)

	const writers, each = 64, 20
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if _, err := c.Incr(ctx, "w", 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	final := until(t, events, 5+writers*each, 30*time.Second)
	if final.Index <= first.Index {
		t.Fatalf("index %d after %d", final.Index, first.Index)
	}

	// Reconnect with the last id: no state at or below it comes back.
	ctx2, cancel2 := context.WithCancel(ctx)
	again := watch(t, ctx2, testcluster.BaseURL(tc.Nodes[2])+"/v1/counters/w/watch?consistency=stale", strconv.FormatUint(final.Index, 10))
	if _, err := c.Incr(ctx, "w", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-again:
		if ev.Index <= final.Index {
			t.Fatalf("resumed with %+v, not above index %d", ev, final.Index)
		}
		if ev.Value != final.Value+1 {
			until(t, again, final.Value+1, 30*time.Second)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no event after the resume")
	}
	cancel2()

	// A split counter: the sum of its sub-counters.
	if _, err := c.Split(ctx, "s", 3); err != nil {
		t.Fatal(err)
	}
	split := watch(t, ctx, base+"/v1/counters/s/watch", "")
	for i := 0; i < 30; i++ {
		if _, err := c.Incr(ctx, "s", 2); err != nil {
			t.Fatal(err)
		}
	}
	until(t, split, 60, 30*time.Second)

	// Twenty watchers of one counter on one node: one subscription.
	n := tc.Nodes[0]
	wctx, wcancel := context.WithCancel(ctx)
	for i := 0; i < 20; i++ {
		until(t, watch(t, wctx, testcluster.BaseURL(n)+"/v1/counters/shared/watch", ""), 0, 30*time.Second)
	}
	if subs, watchers := n.WatchStats(); subs != 1 || watchers != 20 {
		t.Fatalf("20 watchers of one counter: %d subscriptions, %d watchers", subs, watchers)
	}
	wcancel()
	testcluster.WaitFor(t, "the watches to end", 30*time.Second, func() bool {
		subs, watchers := n.WatchStats()
		return subs == 0 && watchers == 0
	})
}

func TestWatchBadInput(t *testing.T) {
	tc := testcluster.Start(t, 1, 2)
	base := testcluster.BaseURL(tc.Nodes[0])
	for _, c := range []struct{ url, lastID, code string }{
		{"/v1/counters/w/watch?interval=1ms", "", "bad_interval"},
		{"/v1/counters/w/watch?interval=soon", "", "bad_interval"},
		{"/v1/counters/w/watch?consistency=eventual", "", "bad_consistency"},
		{"/v1/counters/w/watch", "yesterday", "bad_event_id"},
		{"/v1/counters/a%01b/watch", "", "bad_name"},
	} {
		hdr := map[string]string{}
		if c.lastID != "" {
			hdr["Last-Event-ID"] = c.lastID
		}
		if a := testcluster.Do(t, "GET", base+c.url, "", hdr); a.Status != 400 || testcluster.ErrCode(a) != c.code {
			t.Errorf("%s: %d %v, want 400 %s", c.url, a.Status, a.Body, c.code)
		}
	}
	if subs, _ := tc.Nodes[0].WatchStats(); subs != 0 {
		t.Fatalf("refused watches left %d subscriptions", subs)
	}
}

// TestWatchEndsWhenTheNodeStops: a graceful shutdown ends watch streams at
// once instead of waiting out the HTTP drain, so their clients move on.
func TestWatchEndsWhenTheNodeStops(t *testing.T) {
	tc := testcluster.Start(t, 1, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// An hour between events: the stream is in its pause when the node stops.
	events := watch(t, ctx, testcluster.BaseURL(tc.Nodes[0])+"/v1/counters/w/watch?interval=1h", "")
	until(t, events, 0, 30*time.Second)
	start := time.Now()
	if err := tc.Nodes[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for range events {
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("shutdown with an open watch took %v: the stream held the drain", d)
	}
}
