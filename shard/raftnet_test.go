package shard

import (
	"context"
	"fmt"
	"testing"
	"time"

	"tally/fsm"
	"tally/transport"
)

// TestShardsOverRaftNet opens three shards on three nodes with
// Config.Transport from each node's Mux (one RaftNet shared by the
// node's shards): each elects a leader, commits increments, and every
// replica applies them; a shard closed and reopened on the same Mux
// catches up.
func TestShardsOverRaftNet(t *testing.T) {
	const nodes, shards = 3, 3
	logger := testLogger()
	var muxes []*transport.Mux
	voters := map[string]string{}
	for i := range nodes {
		m, err := transport.Listen("127.0.0.1:0", "", false, logger)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		t.Cleanup(func() { m.Close() })
		muxes = append(muxes, m)
		voters[fmt.Sprintf("n%d", i+1)] = m.Addr()
	}
	open := func(s uint32, i int) *Shard {
		sh, err := Open(Config{
			ID:               s,
			NodeID:           fmt.Sprintf("n%d", i+1),
			Transport:        muxes[i].RaftTransport(s),
			Logger:           logger,
			HeartbeatTimeout: raftTimeout,
			ElectionTimeout:  raftTimeout,
			InMemory:         true,
		})
		if err != nil {
			t.Fatalf("open shard %d on n%d: %v", s, i+1, err)
		}
		t.Cleanup(func() { sh.Close() })
		return sh
	}
	reps := make([][]*Shard, shards)
	for s := range uint32(shards) {
		for i := range nodes {
			reps[s] = append(reps[s], open(s, i))
		}
		if err := reps[s][0].Bootstrap(voters); err != nil {
			t.Fatalf("bootstrap shard %d: %v", s, err)
		}
	}
	propose := func(s int, delta int64) {
		t.Helper()
		waitFor(t, waitTimeout, fmt.Sprintf("shard %d to commit", s), func() bool {
			for _, r := range reps[s] {
				if !r.IsLeader() {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := r.Propose(ctx, []fsm.Op{add("c", delta)})
				cancel()
				return err == nil
			}
			return false
		})
	}
	waitValue := func(s int, want int64) {
		t.Helper()
		waitFor(t, waitTimeout, fmt.Sprintf("shard %d: c = %d on every replica", s, want), func() bool {
			for _, r := range reps[s] {
				v, err := r.Read(context.Background(), []string{"c"}, false)
				if err != nil || v[0] != want {
					return false
				}
			}
			return true
		})
	}
	for s := range shards {
		for range 5 {
			propose(s, int64(s+1))
		}
		waitValue(s, int64(5*(s+1)))
	}

	// Reopen one follower of shard 0 on the same Mux: its RaftNet gives it
	// a fresh transport for the same shard id.
	f := 0
	for reps[0][f].IsLeader() {
		f++
	}
	if err := reps[0][f].Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	propose(0, 10)
	reps[0][f] = open(0, f)
	waitValue(0, 15)
}
