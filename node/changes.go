package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"tally/forward"
	"tally/placement"
	"tally/shard"
)

// The changefeed: every committed change of every counter, in raft order
// per shard. Each replica keeps its shard's recent changes (shard.Changes);
// a node reads each shard's from its own replica when that one's history
// reaches back to the cursor, and from the shard's leader otherwise.

// DefaultChangeRetention is how many recent changes each replica keeps
// when Config.ChangeRetention is 0.
const DefaultChangeRetention = 65536

// Cursor is a changefeed position: for each shard, the raft index its
// changes have been delivered through. Its text form is "shard:index"
// pairs joined by commas, e.g. "0:1200,1:877"; a shard left out is at 0
// (from its beginning).
type Cursor []uint64

// ParseCursor reads a cursor's text form for a cluster of shards shards.
func ParseCursor(s string, shards int) (Cursor, error) {
	c := make(Cursor, shards)
	if s == "" {
		return c, nil
	}
	for _, part := range strings.Split(s, ",") {
		sh, idx, ok := strings.Cut(part, ":")
		id, err1 := strconv.Atoi(sh)
		v, err2 := strconv.ParseUint(idx, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, badInput(CodeBadCursor, "cursor %q: want shard:index pairs joined by commas, e.g. 0:1200,1:877", s)
		}
		if id < 0 || id >= shards {
			return nil, badInput(CodeBadCursor, "cursor %q: shard %d does not exist (the cluster has %d)", s, id, shards)
		}
		c[id] = v
	}
	return c, nil
}

func (c Cursor) String() string {
	var b strings.Builder
	for i, v := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(i))
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(v, 10))
	}
	return b.String()
}

// CounterChange is one counter moved by a committed entry. A split
// counter changes part by part: Part is the sub-counter (0 for an unsplit
// counter) and Value that sub-counter's value, so a consumer sums a
// counter's parts; Delta is how far the part moved.
type CounterChange struct {
	Name  string
	Part  int
	Value int64
	Delta int64
}

// ChangeEvent is what one committed entry of a shard changed.
type ChangeEvent struct {
	Shard   int
	Index   uint64
	Time    int64 // the entry's leader time, Unix nanoseconds
	Changes []CounterChange
}

// changesPerShard bounds what one read of a shard returns.
const changesPerShard = 4096

// feedContact is how recently a local replica must have heard from its
// leader to serve a feed: a node cut off from the others must not go on
// sending a stale feed as if nothing had happened.
const feedContact = 2 * time.Second

// ReadChanges returns the changes after cursor, shard by shard in raft
// order, and the cursor they bring the consumer to (which moves past
// entries that changed nothing too). A shard whose history no longer
// reaches back to the cursor fails it all with CodeCursorExpired: resync
// from Dump.
func (n *Node) ReadChanges(ctx context.Context, cursor Cursor) ([]ChangeEvent, Cursor, error) {
	if err := n.checkFormed(); err != nil {
		return nil, nil, err
	}
	if len(cursor) != n.shardCount() {
		return nil, nil, badInput(CodeBadCursor, "cursor has %d shards, the cluster %d", len(cursor), n.shardCount())
	}
	pages := make([]shard.ChangesPage, len(cursor))
	errs := make([]error, len(cursor))
	var wg sync.WaitGroup
	for s := range cursor {
		wg.Go(func() { pages[s], errs[s] = n.changesPage(ctx, uint32(s), cursor[s]) })
	}
	wg.Wait()
	next := make(Cursor, len(cursor))
	var out []ChangeEvent
	for s, p := range pages {
		if errs[s] != nil {
			return nil, nil, changesError(errs[s])
		}
		next[s] = max(p.Through, cursor[s])
		for _, b := range p.Batches {
			ev := ChangeEvent{Shard: s, Index: b.Index, Time: b.Time, Changes: make([]CounterChange, len(b.Changes))}
			for i, c := range b.Changes {
				name, part := placement.ParseSubName(c.Name)
				ev.Changes[i] = CounterChange{Name: name, Part: part, Value: c.Value, Delta: c.Value - c.Old}
			}
			out = append(out, ev)
		}
	}
	return out, next, nil
}

// NowCursor is the cursor at every shard's last committed index: a feed
// from it carries only changes to come.
func (n *Node) NowCursor(ctx context.Context) (Cursor, error) {
	if err := n.checkFormed(); err != nil {
		return nil, err
	}
	c := make(Cursor, n.shardCount())
	errs := make([]error, len(c))
	var wg sync.WaitGroup
	for s := range c {
		wg.Go(func() { _, c[s], errs[s] = n.readAt(ctx, uint32(s), nil, true) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, clusterError(err)
	}
	return c, nil
}

// waitChanges waits until shard s may have changes after index, or ctx
// ends: on this node's replica of it when there is one; otherwise it
// cannot tell and returns at once, false.
func (n *Node) waitChanges(ctx context.Context, s uint32, index uint64) bool {
	sh := n.shard(s)
	return sh != nil && sh.WaitApplied(ctx, index)
}

// WaitChanges waits until one of the shards this node holds a replica of
// applies an entry past cursor, or ctx ends (a caller passes a deadline:
// shards without a replica here are read again when it passes). It
// returns false once the node is shutting down: a feed ends then.
func (n *Node) WaitChanges(ctx context.Context, cursor Cursor) bool {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for s := range cursor {
		if n.shard(uint32(s)) == nil {
			continue
		}
		wg.Go(func() {
			if n.waitChanges(ctx, uint32(s), cursor[s]) {
				cancel()
			}
		})
	}
	wg.Wait()
	<-ctx.Done()
	select {
	case <-n.stop:
		return false
	default:
		return true
	}
}

// changesPage reads one page of shard s after index after.
func (n *Node) changesPage(ctx context.Context, s uint32, after uint64) (shard.ChangesPage, error) {
	if sh := n.shard(s); sh != nil && sh.InContact(feedContact) {
		if p, err := sh.Changes(after, changesPerShard); err == nil {
			return p, nil
		}
		// This replica's history is too short or off: the leader's may not be.
	}
	var p shard.ChangesPage
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		if sh != nil {
			var err error
			p, err = sh.Changes(after, changesPerShard)
			return err
		}
		r, err := n.fwd.Changes(ctx, addr, forward.ChangesRequest{Shard: s, After: after, Max: changesPerShard})
		switch {
		case err != nil:
			return err
		case r.Status == forward.ChangesExpired:
			return &shard.CursorExpiredError{Shard: s, Cursor: after, Floor: r.Floor}
		case r.Status == forward.ChangesOff:
			return shard.ErrChangesOff
		}
		p = r.Page
		return nil
	})
	return p, err
}

func changesError(err error) *Error {
	var ce *shard.CursorExpiredError
	switch {
	case errors.As(err, &ce):
		return &Error{Code: CodeCursorExpired, Message: fmt.Sprintf("shard %d no longer holds the changes after index %d (its history starts after %d): resynchronize from GET /v1/changes/dump, then follow the changes from the dump's cursor", ce.Shard, ce.Cursor, ce.Floor), cause: err}
	case errors.Is(err, shard.ErrChangesOff):
		return &Error{Code: CodeChangesOff, Message: "the shard's leader keeps no changes (--changes-retention 0)", cause: err}
	}
	return clusterError(err)
}

// DumpedCounter is one counter part of a Dump (see CounterChange).
type DumpedCounter struct {
	Name  string
	Part  int
	Value int64
}

// Dump returns every counter part with a non-zero value, shard by shard,
// and the cursor of the state it shows: a changefeed consumer that loads
// it and then follows the changes from that cursor misses nothing and
// counts nothing twice.
func (n *Node) Dump(ctx context.Context, fn func(shard int, c DumpedCounter) error) (Cursor, error) {
	if err := n.checkFormed(); err != nil {
		return nil, err
	}
	c := make(Cursor, n.shardCount())
	for s := range c {
		vals, idx, err := n.dumpShard(ctx, uint32(s))
		if err != nil {
			return nil, clusterError(err)
		}
		c[s] = idx
		for _, v := range vals {
			name, part := placement.ParseSubName(v.Name)
			if err := fn(s, DumpedCounter{Name: name, Part: part, Value: v.Value}); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// dumpShard reads shard s's counters from this node's replica, or from
// its leader when this node holds none.
func (n *Node) dumpShard(ctx context.Context, s uint32) ([]shard.NamedValue, uint64, error) {
	if sh := n.shard(s); sh != nil {
		vals, idx := sh.Dump()
		return vals, idx, nil
	}
	var vals []shard.NamedValue
	var idx uint64
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		if sh != nil {
			vals, idx = sh.Dump()
			return nil
		}
		r, err := n.fwd.Dump(ctx, addr, forward.DumpRequest{Shard: s})
		vals, idx = r.Counters, r.Index
		return err
	})
	return vals, idx, err
}
