package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"tally/client"
)

// feedCopy follows the changefeed through the whole campaign, as a
// database sync would, and keeps every counter part's value: after each
// round its sums must equal the final reads exactly, whatever the faults
// did to the nodes it was reading from. When its cursor expires (a power
// loss or a restart of every node rebuilds the replicas' histories from
// their snapshots) it reloads from a dump and follows on.
type feedCopy struct {
	mu      sync.Mutex
	parts   map[string]map[int]int64
	last    map[int]uint64 // per shard, the last index applied
	cursor  string
	resyncs int
	broken  string // an order violation: the feed is wrong
	err     error  // why following stopped, if it did
	cancel  context.CancelFunc
	done    chan struct{}
}

// followFeed starts following the feed of the cluster at addrs from now.
func followFeed(ctx context.Context, addrs []string) *feedCopy {
	ctx, cancel := context.WithCancel(ctx)
	f := &feedCopy{parts: map[string]map[int]int64{}, last: map[int]uint64{}, cursor: client.CursorNow, cancel: cancel, done: make(chan struct{})}
	c := client.New(addrs, client.WithRetryDeadline(5*time.Minute))
	go func() {
		defer close(f.done)
		for ctx.Err() == nil {
			err := c.Changes(ctx, f.cursorNow(), f.apply)
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, client.ErrCursorExpired) {
				f.mu.Lock()
				f.err = err
				f.mu.Unlock()
				return
			}
			dump, cur, err := c.Dump(ctx)
			if err != nil {
				if ctx.Err() == nil {
					f.mu.Lock()
					f.err = fmt.Errorf("dump after an expired cursor: %w", err)
					f.mu.Unlock()
				}
				return
			}
			f.load(dump, cur)
		}
	}()
	return f
}

func (f *feedCopy) cursorNow() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cursor
}

func (f *feedCopy) load(dump []client.DumpedCounter, cursor string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.parts = map[string]map[int]int64{}
	for _, d := range dump {
		f.set(d.Name, d.Part, d.Value)
	}
	f.last = map[int]uint64{} // the dump's cursor starts the order afresh
	f.cursor = cursor
	f.resyncs++
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
		if ev.Index <= f.last[ev.Shard] && f.broken == "" {
			f.broken = fmt.Sprintf("shard %d: change at index %d after one at %d", ev.Shard, ev.Index, f.last[ev.Shard])
		}
		f.last[ev.Shard] = ev.Index
		for _, c := range ev.Changes {
			if old := f.parts[c.Name][c.Part]; c.Value-c.Delta != old && f.broken == "" {
				f.broken = fmt.Sprintf("%s part %d at shard %d index %d: moves from %d, the copy has %d", c.Name, c.Part, ev.Shard, ev.Index, c.Value-c.Delta, old)
			}
			f.set(c.Name, c.Part, c.Value)
		}
	}
	f.cursor = cursor
	return nil
}

// check waits until the copy has exactly finals, and returns the problems
// left at the deadline.
func (f *feedCopy) check(finals map[string]int64, within time.Duration) []string {
	deadline := time.Now().Add(within)
	for {
		f.mu.Lock()
		var probs []string
		if f.broken != "" {
			probs = append(probs, "changefeed out of order: "+f.broken)
		}
		if f.err != nil {
			probs = append(probs, "changefeed stopped: "+f.err.Error())
		}
		diff := ""
		for name, want := range finals {
			var got int64
			for _, v := range f.parts[name] {
				got += v
			}
			if got != want {
				diff = fmt.Sprintf("changefeed copy: %s is %d, the final read %d", name, got, want)
				break
			}
		}
		f.mu.Unlock()
		if diff == "" || len(probs) > 0 || time.Now().After(deadline) {
			if diff != "" {
				probs = append(probs, diff)
			}
			return probs
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *feedCopy) stop() int {
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resyncs
}
