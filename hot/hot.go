// Package hot finds hot counters: those written faster than a threshold
// for a sustained time. It keeps a bounded number of candidates (the
// Space-Saving heavy-hitters algorithm), so its memory does not grow with
// the number of counters a shard leader sees.
package hot

import (
	"slices"
	"sync"
	"time"
)

// Config tunes a Tracker.
type Config struct {
	Threshold float64       // writes per second that make a counter hot
	Sustain   time.Duration // for this long (as consecutive Tick windows)
	Capacity  int           // candidates tracked at most (default 64)
}

// Tracker counts writes per counter over windows that end at each Tick.
// Safe for concurrent use.
type Tracker struct {
	cfg Config

	mu      sync.Mutex
	entries map[string]*entry
	last    time.Time // when the current window began
	rates   []Rate    // the last window's rates, highest first
}

// entry is one candidate. In Space-Saving, a new candidate that replaces
// the least counted one inherits its count as possible error, so count
// overestimates and count-err is a guaranteed lower bound; only the lower
// bound can make a counter hot, so a cold counter is never split.
type entry struct {
	count, err int64
	prev       int64     // the last window's guaranteed count: shields a hot counter from eviction early in a window
	since      time.Time // start of its current run of hot windows; zero if none
	excluded   bool      // never reported hot (e.g. it cannot be split)
}

// Rate is a counter's write rate over the last window.
type Rate struct {
	Name string  `json:"name"`
	Rate float64 `json:"rate"` // writes per second, a lower bound
}

// New returns a Tracker whose first window starts now.
func New(cfg Config, now time.Time) *Tracker {
	if cfg.Capacity <= 0 {
		cfg.Capacity = 64
	}
	return &Tracker{cfg: cfg, entries: make(map[string]*entry, cfg.Capacity), last: now}
}

// Observe counts n writes to the counter name.
func (t *Tracker) Observe(name string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.entries[name]; ok {
		e.count += int64(n)
		return
	}
	if len(t.entries) < t.cfg.Capacity {
		t.entries[name] = &entry{count: int64(n)}
		return
	}
	// Replace the least counted candidate (O(capacity): capacity is
	// small), weighing in what each had last window so that counts reset
	// by Tick do not make a hot counter the first to go.
	var minName string
	var minE *entry
	for k, e := range t.entries {
		if minE == nil || e.count+e.prev < minE.count+minE.prev {
			minName, minE = k, e
		}
	}
	delete(t.entries, minName)
	t.entries[name] = &entry{count: minE.count + int64(n), err: minE.count}
}

// Exclude stops name from being reported hot while it stays a candidate.
func (t *Tracker) Exclude(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.entries[name]; ok {
		e.excluded = true
	}
}

// Tick ends the current window at now. It returns the counters whose
// guaranteed rate was at or above the threshold in every window for at
// least Sustain, and starts a new window. Counters not written in the
// window are forgotten.
func (t *Tracker) Tick(now time.Time) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	secs := now.Sub(t.last).Seconds()
	t.last = now
	t.rates = t.rates[:0]
	var hot []string
	for name, e := range t.entries {
		if e.count == 0 {
			delete(t.entries, name)
			continue
		}
		e.prev = e.count - e.err
		rate := 0.0
		if secs > 0 {
			rate = float64(e.count-e.err) / secs
		}
		t.rates = append(t.rates, Rate{Name: name, Rate: rate})
		switch {
		case rate < t.cfg.Threshold || e.excluded:
			e.since = time.Time{}
		case e.since.IsZero():
			// The run starts with the window that just ended.
			e.since = now.Add(-time.Duration(secs * float64(time.Second)))
		}
		if !e.since.IsZero() && now.Sub(e.since) >= t.cfg.Sustain {
			hot = append(hot, name)
		}
		e.count, e.err = 0, 0
	}
	slices.SortFunc(t.rates, func(a, b Rate) int {
		switch {
		case a.Rate > b.Rate:
			return -1
		case a.Rate < b.Rate:
			return 1
		}
		return 0
	})
	slices.Sort(hot)
	return hot
}

// Top returns up to k counters with the highest rates in the last window.
func (t *Tracker) Top(k int) []Rate {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Rate{}, t.rates[:min(k, len(t.rates))]...)
}
