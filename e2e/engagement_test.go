package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/client"
)

// full reports whether to run the acceptance-size workloads (slow); CI
// runs the same code at a smaller size.
func full() bool { return os.Getenv("TALLY_ACCEPTANCE") == "1" }

// rssKiB returns the resident set size of node id's process.
func (e *env) rssKiB(t *testing.T, id string) int64 {
	runDir := strings.TrimPrefix(e.vars[0], "TALLY_RUN_DIR=")
	pid, err := os.ReadFile(filepath.Join(runDir, id+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// liveHeap forces a GC on node i (its /debug/pprof/heap?gc=1) and returns
// the live heap in bytes from its metrics.
func (e *env) liveHeap(t *testing.T, i int) int64 {
	base := "http://" + e.addrs[i]
	resp, err := http.Get(base + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_memstats_heap_alloc_bytes "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int64(f)
		}
	}
	t.Fatal("no go_memstats_heap_alloc_bytes in /metrics")
	return 0
}

// TestEngagementAtScale: likes from many distinct actors, each liking four
// times from different clients at once, must count each actor exactly
// once; a stock decremented by 64 clients with min 0 admits exactly its
// size; a rate limit admits at most its limit per window. Figures are
// logged (set TALLY_ACCEPTANCE=1 for the full-size run).
func TestEngagementAtScale(t *testing.T) {
	e := newEnv(t, 3, 8)
	e.vars = append(e.vars, "TALLY_EXTRA_FLAGS=--pprof")
	e.mustScript("up", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	actors, stock, window := 5000, int64(300), 3*time.Second
	if full() {
		actors, stock, window = 50000, 1000, 10*time.Second
	}
	const clients = 64

	// --- likes ---
	post := "likes:post:viral"
	before := map[string]int64{}
	heapBefore := map[int]int64{}
	for i := 1; i <= 3; i++ {
		before[fmt.Sprintf("n%d", i)] = e.rssKiB(t, fmt.Sprintf("n%d", i))
		heapBefore[i] = e.liveHeap(t, i-1)
	}
	var next atomic.Int64
	var failed, retried atomic.Int64
	total := int64(actors * 4)
	start := time.Now()
	var wg sync.WaitGroup
	// Plain PUTs without an Idempotency-Key: a like is idempotent by
	// itself, and without keys the memory growth is the actor sets' own
	// (plus the raft log), not the dedup table's.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	for w := 0; w < clients; w++ {
		base := "http://" + e.addrs[w%len(e.addrs)] + "/v1/counters/" + post + "/actors/"
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				// Like i is by actor i % actors: an actor's four likes are
				// spread over the whole run and over different clients.
				// A 503 or a lost connection is retried: a repeated like is
				// harmless by design.
				for attempt := 0; ; attempt++ {
					req, _ := http.NewRequestWithContext(ctx, http.MethodPut, base+fmt.Sprintf("u%07d", i%int64(actors)), nil)
					resp, err := hc.Do(req)
					status := 0
					if err == nil {
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						status = resp.StatusCode
						if status == http.StatusOK {
							break
						}
						if attempt == 0 {
							t.Logf("like answered %d: %s", status, body)
						}
					}
					if (err == nil && status != http.StatusServiceUnavailable) || attempt == 50 {
						failed.Add(1)
						break
					}
					retried.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d likes failed", f)
	}
	c := client.New(e.addrs, client.WithRetryDeadline(60*time.Second))
	got, err := c.Get(ctx, post, client.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	if got.Value != int64(actors) {
		t.Fatalf("%d likes from %d distinct actors counted %d", total, actors, got.Value)
	}
	var growth []string
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		d := e.rssKiB(t, id) - before[id]
		h := e.liveHeap(t, i-1) - heapBefore[i]
		growth = append(growth, fmt.Sprintf("%s RSS %+d KiB (%.0f B/actor), live heap %+d KiB (%.0f B/actor)",
			id, d, float64(d*1024)/float64(actors), h/1024, float64(h)/float64(actors)))
	}
	t.Logf("likes: %d from %d actors in %v = %.0f likes/s (%d retried after a 503 or lost connection); count exactly %d; growth: %s",
		total, actors, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), retried.Load(), got.Value, strings.Join(growth, ", "))

	// --- stock with min 0 ---
	sku := "stock:sku:acceptance"
	if _, err := c.Incr(ctx, sku, stock); err != nil {
		t.Fatal(err)
	}
	var ok, refused atomic.Int64
	zero := int64(0)
	per := int(2*stock/clients) + 1
	for w := 0; w < clients; w++ {
		cw := client.New(rotate(e.addrs, w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				_, err := cw.Sub(ctx, sku, 1, client.WriteOptions{Min: &zero})
				var ae *client.APIError
				switch {
				case err == nil:
					ok.Add(1)
				case errors.As(err, &ae) && ae.Code == "out_of_bounds":
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	left, _ := c.Get(ctx, sku, client.Linearizable)
	if ok.Load() != stock || left.Value != 0 {
		t.Fatalf("stock %d: %d decrements succeeded, %d refused, %d left", stock, ok.Load(), refused.Load(), left.Value)
	}
	t.Logf("stock: %d clients × %d decrements with min 0 on a stock of %d: exactly %d succeeded, %d refused, 0 left", clients, per, stock, ok.Load(), refused.Load())

	// --- fixed-window rate limit ---
	limit := int64(100)
	var mu sync.Mutex
	perWindow := map[time.Time]int64{}
	stop := time.Now().Add(window)
	for w := 0; w < clients; w++ {
		cw := client.New(rotate(e.addrs, w), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				r, err := cw.Add(ctx, "rate:acceptance", 1, client.WriteOptions{Max: &limit, TTL: time.Second})
				var ae *client.APIError
				if errors.As(err, &ae) && ae.Code == "out_of_bounds" {
					continue
				}
				if err != nil || r.ExpiresAt == nil {
					t.Errorf("rate-limited incr: %+v %v", r, err)
					return
				}
				mu.Lock()
				perWindow[*r.ExpiresAt]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	most := int64(0)
	for _, n := range perWindow {
		most = max(most, n)
	}
	if most > limit {
		t.Fatalf("a window admitted %d > %d: %v", most, limit, perWindow)
	}
	t.Logf("rate limit: %d windows of 1 s under %d clients for %v; most admitted in a window: %d (limit %d)", len(perWindow), clients, window, most, limit)
}
