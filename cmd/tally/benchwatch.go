package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"tally/client"
	"tally/loadgen"
)

// benchWatchers are the watch streams `tally bench --watchers` holds open
// on one node during the load: what watching costs the writers, and how
// soon after the last acknowledged write every watcher shows the final
// value.
type benchWatchers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	value   []int64     // each watcher's latest value
	at      []time.Time // when it arrived
	opened  atomic.Int64
	lastAck atomic.Int64 // unix ns of the last acknowledged write
}

// startWatchers opens n streams of counter on base and returns once all
// are open.
func (e *env) startWatchers(base, counter string, n int, interval time.Duration) (*benchWatchers, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &benchWatchers{cancel: cancel, value: make([]int64, n), at: make([]time.Time, n)}
	c := client.New([]string{base}, client.WithToken(e.token), client.WithTLS(e.tls()), client.WithoutRouting(), client.WithRetryDeadline(e.timeout))
	for i := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			first := true
			c.Watch(ctx, counter, client.WatchOptions{Interval: interval}, func(ev client.WatchEvent) bool {
				if first {
					first = false
					w.opened.Add(1)
				}
				w.mu.Lock()
				w.value[i], w.at[i] = ev.Value, time.Now()
				w.mu.Unlock()
				return true
			})
		}()
	}
	began := time.Now()
	deadline := began.Add(e.timeout + time.Duration(n)*time.Millisecond)
	for w.opened.Load() < int64(n) {
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("--watchers: %d of %d watch streams open on %s after %v", w.opened.Load(), n, base, time.Since(began).Round(time.Millisecond))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return w, nil
}

// observe wraps a load target so the time of the last acknowledged write
// is known.
func (w *benchWatchers) observe(newTarget func(int) loadgen.Target) func(int) loadgen.Target {
	return func(i int) loadgen.Target { return ackClock{newTarget(i), &w.lastAck} }
}

type ackClock struct {
	loadgen.Target
	last *atomic.Int64
}

func (a ackClock) Incr(ctx context.Context, counter string, delta int64) error {
	err := a.Target.Incr(ctx, counter, delta)
	if err == nil {
		a.last.Store(time.Now().UnixNano())
	}
	return err
}

// watchReport is what report found: how many watchers showed the final
// value, and how soon after the last acknowledged write.
type watchReport struct {
	Watchers int     `json:"watchers"`
	Final    int64   `json:"final"`
	Behind   int     `json:"behind"` // watchers that did not show it within the timeout
	MedianMS float64 `json:"median_ms,omitempty"`
	MaxMS    float64 `json:"max_ms,omitempty"`
}

// report waits (up to timeout) until every watcher shows final, and
// prints how long after the last acknowledged write they did: a line of
// text, or with asJSON a JSON object on its own line (after the bench's).
func (w *benchWatchers) report(out io.Writer, final int64, timeout time.Duration, asJSON bool) {
	r := w.wait(final, timeout)
	switch {
	case asJSON:
		b, _ := json.Marshal(struct {
			W watchReport `json:"watch"`
		}{r})
		fmt.Fprintf(out, "%s\n", b)
	case r.Behind == 0:
		fmt.Fprintf(out, "watchers: %d saw the final value %d, median %v and at most %v after the last acknowledged write\n",
			r.Watchers, final, msDuration(r.MedianMS), msDuration(r.MaxMS))
	default:
		fmt.Fprintf(out, "watchers: %d of %d did not show the final value %d within %v\n", r.Behind, r.Watchers, final, timeout)
	}
}

func msDuration(ms float64) time.Duration {
	return (time.Duration(ms * float64(time.Millisecond))).Round(time.Millisecond)
}

func (w *benchWatchers) wait(final int64, timeout time.Duration) watchReport {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		behind := 0
		for _, v := range w.value {
			if v != final {
				behind++
			}
		}
		var lags []time.Duration
		if behind == 0 {
			last := time.Unix(0, w.lastAck.Load())
			for _, t := range w.at {
				lags = append(lags, max(0, t.Sub(last)))
			}
		}
		w.mu.Unlock()
		if behind == 0 {
			slices.Sort(lags)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			return watchReport{Watchers: len(lags), Final: final, MedianMS: ms(lags[len(lags)/2]), MaxMS: ms(lags[len(lags)-1])}
		}
		if time.Now().After(deadline) {
			return watchReport{Watchers: len(w.value), Final: final, Behind: behind}
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (w *benchWatchers) stop() {
	w.cancel()
	w.wg.Wait()
}
