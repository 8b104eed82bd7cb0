package node

import (
	"context"
	"sync"
	"time"

	"tally/fsm"
	"tally/hot"
)

// splitLoop runs once a second on every formed node. It finishes splits
// that were begun on a shard this node leads and never ended (their
// splitter crashed, or lost leadership), and, unless auto-split is off,
// splits the counters its shard leaders found hot.
func (n *Node) splitLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case now := <-t.C:
			n.finishPendingSplits()
			if n.tracker != nil {
				for _, name := range n.tracker.Tick(now) {
					n.autoSplit(name)
				}
			}
		}
	}
}

// finishPendingSplits runs the protocol again for every split this node's
// shard leaders hold as begun: each step is idempotent.
func (n *Node) finishPendingSplits() {
	for _, sh := range n.hostedShards() {
		if !sh.IsLeader() {
			continue
		}
		for name, k := range sh.PendingSplits() {
			n.splitMu.Lock()
			_, busy := n.splitLocks[name]
			n.splitMu.Unlock()
			if busy {
				continue // being split right now, by this node
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.RequestTimeout)
			got, code, err := n.runSplit(ctx, sh, name, k)
			cancel()
			n.splitLog.add(SplitEvent{Name: name, To: k, Got: got, Reason: "resumed", At: time.Now(), Err: errText(code, err)})
		}
	}
}

// splitTarget is the factor the auto-splitter splits a hot counter to.
func (n *Node) splitTarget() int {
	S := n.shardCount()
	if n.cfg.SplitTo > 0 {
		return min(n.cfg.SplitTo, S)
	}
	n.mu.RLock()
	nodes := 1
	if n.state != nil {
		nodes = len(n.state.Members)
	}
	n.mu.RUnlock()
	return min(S, 2*nodes, fsm.MaxSplit)
}

// autoSplit splits a hot counter in the background (at most one run per
// counter at a time: lockSplit).
func (n *Node) autoSplit(name string) {
	k := n.splitTarget()
	from := n.splits.get(name)
	if k <= from {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 4*n.cfg.RequestTimeout)
		defer cancel()
		got, code, err := n.splitCounter(ctx, name, k)
		if code == fsm.ErrNotSplittable || code == fsm.ErrSplitShrink {
			n.tracker.Exclude(name)
		}
		ev := SplitEvent{Name: name, From: from, To: k, Got: got, Reason: "auto", At: time.Now(), Err: errText(code, err)}
		n.splitLog.add(ev)
		if ev.Err != "" {
			n.log.Warn("auto split failed", "counter", name, "to", k, "err", ev.Err)
		} else {
			n.log.Info("auto split", "counter", name, "from", from, "to", got)
			n.metrics.autoSplits.Inc()
		}
	}()
}

func errText(code fsm.Code, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case code != fsm.OK:
		return code.String()
	}
	return ""
}

// SplitEvent is one split this node ran, as HotReport lists it.
type SplitEvent struct {
	Name   string    `json:"name"`
	From   int       `json:"from,omitempty"`
	To     int       `json:"to"`
	Got    int       `json:"split,omitempty"` // the factor after it
	Reason string    `json:"reason"`          // auto, manual, resumed
	At     time.Time `json:"at"`
	Err    string    `json:"error,omitempty"`
}

// splitLog keeps the latest splits this node ran.
type splitLog struct {
	mu     sync.Mutex
	events []SplitEvent
}

const maxSplitLog = 100

func (l *splitLog) add(e SplitEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.events) == maxSplitLog {
		l.events = append(l.events[:0], l.events[1:]...)
	}
	l.events = append(l.events, e)
}

func (l *splitLog) list() []SplitEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]SplitEvent{}, l.events...)
}

// HotReport is what this node's shard leaders see of write rates, and the
// splits it ran: a diagnostic view (httpapi serves it as GET /v1/hot,
// field for field).
type HotReport struct {
	Node      string                `json:"node"`
	AutoSplit bool                  `json:"auto_split"`
	Threshold float64               `json:"threshold"` // writes/s
	SustainS  float64               `json:"sustain_s"`
	SplitTo   int                   `json:"split_to"`
	Hot       []hot.Rate            `json:"hot"`    // highest write rates on this node's home shards, last second
	Splits    []SplitEvent          `json:"splits"` // the splits this node ran, oldest first
	Known     map[string]KnownSplit `json:"known"`  // split counters this node knows of, with when it learned each (a replica of the home shard learns on applying the split)
}

// HotReport reports the write rates this node's shard leaders see and the
// splits it ran.
func (n *Node) HotReport() HotReport {
	r := HotReport{
		Node: n.cfg.ID, AutoSplit: n.tracker != nil, Threshold: n.cfg.SplitThreshold,
		SustainS: n.cfg.SplitSustain.Seconds(), SplitTo: n.splitTarget(),
		Hot: []hot.Rate{}, Splits: n.splitLog.list(), Known: n.splits.all(),
	}
	if n.tracker != nil {
		r.Hot = n.tracker.Top(10)
	}
	return r
}
