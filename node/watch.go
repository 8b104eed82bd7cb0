package node

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// watchTick is how often a node reads the counters its clients watch: one
// batched read per shard and consistency for all of them, however many
// clients watch each.
const watchTick = 50 * time.Millisecond

// MinWatchInterval is the shortest coalescing interval a watch may ask
// for: events cannot come faster than the node reads.
const MinWatchInterval = watchTick

// WatchEvent is one state of a watched counter: its value (the sum of its
// sub-counters when split) and the raft index that state is at (for a
// split counter, the sum of its shards' indexes). Index only grows.
type WatchEvent struct {
	Name  string
	Value int64
	Index uint64
	// JSON is the event as {"name","value","index"}, rendered once for
	// every watcher of the counter; read only.
	JSON []byte
}

type watchKey struct {
	name   string
	linear bool
}

// watchSub is the one subscription of a node to a counter at a
// consistency, shared by every watch of it.
type watchSub struct {
	key      watchKey
	watchers int // guarded by the hub's mu

	mu   sync.Mutex // serializes offers
	name []byte     // the counter's name as a JSON string
	seen uint64     // the highest index read, so an older state is never taken
	// cur is the latest state, read by watchers without a lock: each
	// change stores a new one and closes the old one's changed.
	cur atomic.Pointer[watchState]
}

type watchState struct {
	ev      WatchEvent
	changed chan struct{}
}

func newWatchSub(key watchKey) *watchSub {
	s := &watchSub{key: key}
	s.name, _ = json.Marshal(key.name)
	return s
}

// offer takes a read of the counter unless it is older than one taken.
func (s *watchSub) offer(value int64, index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cur.Load()
	if old != nil && index < s.seen {
		return
	}
	s.seen = index
	if old != nil && value == old.ev.Value {
		// The same value at a later index: no event for those who have it,
		// but a watcher resuming above the old index must see this state.
		if index > old.ev.Index {
			ev := old.ev
			ev.Index, ev.JSON = index, s.render(value, index)
			s.cur.Store(&watchState{ev: ev, changed: old.changed})
		}
		return
	}
	s.cur.Store(&watchState{ev: WatchEvent{Name: s.key.name, Value: value, Index: index, JSON: s.render(value, index)}, changed: make(chan struct{})})
	if old != nil {
		close(old.changed)
	}
}

func (s *watchSub) render(value int64, index uint64) []byte {
	b := make([]byte, 0, len(s.name)+64)
	b = append(b, `{"name":`...)
	b = append(b, s.name...)
	b = append(b, `,"value":`...)
	b = strconv.AppendInt(b, value, 10)
	b = append(b, `,"index":`...)
	b = strconv.AppendUint(b, index, 10)
	return append(b, '}')
}

// watchHub holds a node's subscriptions and reads them every tick.
type watchHub struct {
	mu   sync.Mutex
	subs map[watchKey]*watchSub

	// ended closes when the node begins to stop, so that streams end and
	// the HTTP server's graceful drain need not wait for them.
	endOnce sync.Once
	ended   chan struct{}
}

func (h *watchHub) end() { h.endOnce.Do(func() { close(h.ended) }) }

// Watch is one client's watch of a counter. Next returns its states in
// order; Close ends it.
type Watch struct {
	n    *Node
	sub  *watchSub
	sent bool
	last int64
	once sync.Once
}

// Watch starts watching name. Its first state comes from a read made
// now, at consistency c (linearizable: it reflects every write
// acknowledged before the call); later ones from the node's reads every
// watchTick. It fails as a read would (unknown leader, bad name).
func (n *Node) Watch(ctx context.Context, name string, c Consistency) (*Watch, error) {
	if err := n.checkFormed(); err != nil {
		return nil, err
	}
	if bad := ValidName(name); bad != "" {
		return nil, badInput(CodeBadName, "%s", bad)
	}
	if n.stopping.Load() {
		return nil, &Error{Code: CodeUnavailable, Message: "this node is shutting down; watch through another"}
	}
	key := watchKey{name: name, linear: c == Linearizable}
	rctx, cancel := n.requestContext(ctx, 1)
	vals, err := n.readCountersAt(rctx, []string{name}, key.linear, true)
	cancel()
	if err != nil {
		return nil, clusterError(err)
	}
	h := &n.watches
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[watchKey]*watchSub{}
	}
	sub := h.subs[key]
	if sub == nil {
		sub = newWatchSub(key)
		h.subs[key] = sub
	}
	sub.watchers++
	h.mu.Unlock()
	sub.offer(vals[0].value, vals[0].index)
	return &Watch{n: n, sub: sub}, nil
}

// Next returns the counter's state if it is one this watch has not
// returned, at an index above after (the index of the last event the
// client saw, as Last-Event-ID carries it; 0 for none); ok is false when
// there is none yet: wait for Changed. A state with the value last
// returned is skipped: events are changes.
func (w *Watch) Next(after uint64) (ev WatchEvent, ok bool) {
	st := w.sub.cur.Load()
	if st == nil || st.ev.Index <= after || (w.sent && st.ev.Value == w.last) {
		return WatchEvent{}, false
	}
	w.sent, w.last = true, st.ev.Value
	return st.ev, true
}

// Changed is closed when the counter's state changes after the one Next
// last looked at; a watcher selects on it, and on Ended.
func (w *Watch) Changed() <-chan struct{} { return w.sub.cur.Load().changed }

// Ended is closed when the node begins to stop: no more changes will
// come; a stream ends (and its client reconnects to another node).
func (w *Watch) Ended() <-chan struct{} { return w.n.watches.ended }

// Close ends the watch; the node stops reading the counter when no watch
// of it is left.
func (w *Watch) Close() {
	w.once.Do(func() {
		h := &w.n.watches
		h.mu.Lock()
		defer h.mu.Unlock()
		if w.sub.watchers--; w.sub.watchers == 0 {
			delete(h.subs, w.sub.key)
		}
	})
}

// WatchStats is how many counters (at each consistency) this node reads
// for its watchers, and how many watches there are.
func (n *Node) WatchStats() (subscriptions, watchers int) {
	h := &n.watches
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.subs {
		watchers += s.watchers
	}
	return len(h.subs), watchers
}

// pollWatches reads every watched counter (the node calls it every
// watchTick once formed; with no watch it does nothing).
func (n *Node) pollWatches() {
	h := &n.watches
	h.mu.Lock()
	if len(h.subs) == 0 {
		h.mu.Unlock()
		return
	}
	// One group per consistency and home shard, read side by side: a
	// shard without a leader, or a slow one, holds up only its own
	// counters.
	type group struct {
		linear bool
		shard  uint32
	}
	keys := n.keys()
	groups := map[group][]*watchSub{}
	for k, s := range h.subs {
		g := group{k.linear, keys.Home(k.name)}
		groups[g] = append(groups[g], s)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for g, subs := range groups {
		for start := 0; start < len(subs); start += MaxReadMany {
			chunk := subs[start:min(len(subs), start+MaxReadMany)]
			wg.Go(func() { n.readWatched(g.linear, chunk) })
		}
	}
	wg.Wait()
}

// readWatched reads the counters of subs and offers each its value.
func (n *Node) readWatched(linear bool, subs []*watchSub) {
	names := make([]string, len(subs))
	for i, s := range subs {
		names[i] = s.key.name
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
	defer cancel()
	vals, err := n.readCountersAt(ctx, names, linear, true)
	if err != nil {
		return // no leader just now: the next tick tries again
	}
	for i, s := range subs {
		if !vals[i].overflow {
			s.offer(vals[i].value, vals[i].index)
		}
	}
}
