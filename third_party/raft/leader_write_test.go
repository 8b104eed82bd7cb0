package raft

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

const leaderWriteDeadline = 10 * time.Second

// startTCPCluster starts n voters over NetworkTransport on loopback with
// pipelining on, and waits for a leader.
func startTCPCluster(t *testing.T, n int, configure ...func(*Config)) (leader *testNode, nodes []*testNode) {
	t.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: newLineCounter()})
	var servers []Server
	var transports []*NetworkTransport
	for i := 0; i < n; i++ {
		trans, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
			MaxPool: 2, Timeout: 2 * time.Second, MaxRPCsInFlight: 2, Logger: logger,
		})
		if err != nil {
			t.Fatalf("transport: %v", err)
		}
		transports = append(transports, trans)
		servers = append(servers, Server{Suffrage: Voter, ID: ServerID(fmt.Sprintf("node%d", i)), Address: trans.LocalAddr()})
	}
	for i, trans := range transports {
		conf := testConfig(servers[i].ID, logger.Named(string(servers[i].ID)))
		for _, c := range configure {
			c(conf)
		}
		node := startTestNode(t, conf, trans)
		nodes = append(nodes, node)
		if err := node.raft.BootstrapCluster(Configuration{Servers: servers}).Error(); err != nil {
			t.Fatalf("bootstrap: %v", err)
		}
	}
	t.Cleanup(func() { shutdownWithin(t, leaderWriteDeadline, nodes...) })
	leader = waitForLeader(t, nodes)
	// A committed entry of the leader's term; its answer also orders the
	// leader's setup of its leader state before the test reads it.
	if err := applyWithin(t, leader.raft, "first"); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	return leader, nodes
}

// applyWithin applies one entry and fails the test if it is not answered
// by the deadline.
func applyWithin(t *testing.T, r *Raft, data string) error {
	t.Helper()
	return answerWithin(t, r.Apply([]byte(data), 0))
}

// answerWithin waits for a future's answer, failing the test at the
// deadline: a wedged cluster fails the test instead of hanging it.
func answerWithin(t *testing.T, f Future) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-time.After(leaderWriteDeadline):
		t.Fatalf("no answer within %v", leaderWriteDeadline)
		return nil
	}
}

func waitForLeader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var leader *testNode
	waitFor(t, leaderWriteDeadline, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// heldApply applies one entry on a leader whose log store holds every
// write, and waits until every other node has acknowledged the entry to
// the leader while the leader's own write is still parked. It returns the
// entry's index, the future, and the leader's commitment.
func heldApply(t *testing.T, leader *testNode, nodes []*testNode, release func()) (uint64, ApplyFuture, *commitment) {
	t.Helper()
	defer func() {
		if t.Failed() {
			release()
		}
	}()
	commitment := leader.raft.leaderState.commitment
	before := leader.raft.LastIndex()
	future := leader.raft.Apply([]byte("held"), 0)
	select {
	case <-leader.logs.holding:
	case <-time.After(leaderWriteDeadline):
		t.Fatal("the leader never started writing the entry")
	}
	index := before + 1
	for _, n := range nodes {
		if n == leader {
			continue
		}
		waitFor(t, leaderWriteDeadline, fmt.Sprintf("%s to acknowledge entry %d while the leader's write is held", n.id, index), func() bool {
			commitment.Lock()
			defer commitment.Unlock()
			return commitment.matchIndexes[n.id] >= index
		})
	}
	commitment.Lock()
	self := commitment.matchIndexes[leader.id]
	commitment.Unlock()
	if self >= index {
		t.Fatalf("leader counts itself at index %d before its write of entry %d returned", self, index)
	}
	if got := leader.logs.storedMax.Load(); got >= index {
		t.Fatalf("leader's store holds index %d while its write is held", got)
	}
	return index, future, commitment
}

// TestLeaderReplicatesDuringItsOwnWrite: with a leader whose log store
// blocks, the follower gets the entry and acknowledges it, and in a
// 2-voter cluster the entry does not commit until the leader's own write
// returns. Upstream the leader writes before it tells the replicators, so
// the follower never gets the entry while the write is held.
func TestLeaderReplicatesDuringItsOwnWrite(t *testing.T) {
	leader, nodes := startTCPCluster(t, 2)
	release := leader.logs.Hold()
	index, future, commitment := heldApply(t, leader, nodes, release)

	// A majority of 2 is both: the follower alone must not commit it.
	if got := commitment.getCommitIndex(); got >= index {
		t.Fatalf("commit index %d reached entry %d without the leader's own write", got, index)
	}
	if got := leader.raft.CommitIndex(); got >= index {
		t.Fatalf("raft commit index %d reached entry %d without the leader's own write", got, index)
	}
	if lf, ok := future.(*logFuture); ok {
		select {
		case err := <-lf.errCh:
			t.Fatalf("entry %d answered (%v) before the leader's write returned", index, err)
		default:
		}
	}

	release()
	if err := answerWithin(t, future); err != nil {
		t.Fatalf("entry %d after the leader's write returned: %v", index, err)
	}
	if got := leader.raft.CommitIndex(); got < index {
		t.Fatalf("commit index %d after entry %d was answered", got, index)
	}
}

// TestLeaderWhoseWriteFailsDoesNotCountItself: a 2-voter cluster whose
// leader's log write fails after the follower acknowledged the entry. The
// leader must not commit it (it would need its own vote), must step down,
// and the cluster goes on under a leader whose log has the entry.
func TestLeaderWhoseWriteFailsDoesNotCountItself(t *testing.T) {
	leader, nodes := startTCPCluster(t, 2)
	leader.logs.failAll.Store(true)
	release := leader.logs.Hold()
	index, future, commitment := heldApply(t, leader, nodes, release)
	if got := commitment.getCommitIndex(); got >= index {
		t.Fatalf("commit index %d reached entry %d without the leader's own write", got, index)
	}

	release()
	if err := answerWithin(t, future); !errors.Is(err, ErrLeadershipLost) {
		t.Fatalf("entry %d of a leader whose write failed: got %v, want %v", index, err, ErrLeadershipLost)
	}
	waitFor(t, leaderWriteDeadline, "the leader to step down", func() bool { return leader.raft.State() != Leader })
	if got := leader.logs.storedMax.Load(); got >= index {
		t.Fatalf("failed leader's store holds index %d", got)
	}
	leader.logs.failAll.Store(false)

	// The follower has the entry, so only it can win the next election;
	// it commits the entry with an entry of its own term.
	next := waitForLeader(t, nodes)
	if err := applyWithin(t, next.raft, "after"); err != nil {
		t.Fatalf("apply on the next leader: %v", err)
	}
	for _, n := range nodes {
		n := n
		waitFor(t, leaderWriteDeadline, fmt.Sprintf("%s to apply entry %d", n.id, index), func() bool {
			return len(n.fsm.Logs()) >= 3
		})
		if got := string(n.fsm.Logs()[1]); got != "held" {
			t.Fatalf("%s applied %q after the first entry, want the held entry", n.id, got)
		}
	}
}

// TestLeaderWhoseWriteFailsThreeVoters: with 3 voters the two followers
// are a quorum without the leader, so the entry may commit while the
// leader's write is held, but never with the leader counted; the leader
// then steps down on its failed write and the cluster goes on.
func TestLeaderWhoseWriteFailsThreeVoters(t *testing.T) {
	leader, nodes := startTCPCluster(t, 3)
	leader.logs.failAll.Store(true)
	release := leader.logs.Hold()
	index, future, commitment := heldApply(t, leader, nodes, release)
	waitFor(t, leaderWriteDeadline, "the two followers to commit the entry", func() bool {
		return commitment.getCommitIndex() >= index
	})
	if err := answerWithin(t, future); err != nil {
		t.Fatalf("entry %d, committed by the followers: %v", index, err)
	}
	commitment.Lock()
	self := commitment.matchIndexes[leader.id]
	commitment.Unlock()
	if self >= index {
		t.Fatalf("leader counted itself at %d before its write of entry %d returned", self, index)
	}

	release()
	waitFor(t, leaderWriteDeadline, "the leader to step down", func() bool { return leader.raft.State() != Leader })
	leader.logs.failAll.Store(false)
	next := waitForLeader(t, nodes)
	if err := applyWithin(t, next.raft, "after"); err != nil {
		t.Fatalf("apply on the next leader: %v", err)
	}
	for _, n := range nodes {
		n := n
		waitFor(t, leaderWriteDeadline, fmt.Sprintf("%s to apply entry %d and the next", n.id, index), func() bool {
			logs := n.fsm.Logs()
			return len(logs) >= 3 && string(logs[1]) == "held"
		})
	}
}

// TestLeaderSnapshotKeepsEntriesItHasNotWritten: entries the followers
// committed while the leader's write is held are applied and may be
// snapshotted on the leader; compacting its log after that snapshot must
// not delete past what its store holds (the held write comes later).
func TestLeaderSnapshotKeepsEntriesItHasNotWritten(t *testing.T) {
	leader, nodes := startTCPCluster(t, 3, func(c *Config) { c.TrailingLogs = 0 })
	release := leader.logs.Hold()
	defer release()
	index, future, _ := heldApply(t, leader, nodes, release)
	if err := answerWithin(t, future); err != nil {
		t.Fatalf("entry %d, committed by the followers: %v", index, err)
	}
	if err := answerWithin(t, leader.raft.Snapshot()); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if got := leader.logs.deletedAhead.Load(); got != 0 {
		t.Fatalf("log compaction deleted up to %d, past the leader's last stored entry", got)
	}
	release()
	if err := applyWithin(t, leader.raft, "after"); err != nil {
		t.Fatalf("apply after the snapshot: %v", err)
	}
}

// TestLeaderFinishesItsWriteBeforeFollowingANewerLeader: a leader whose
// write is held gets an AppendEntries of a newer term (a leader the
// followers elected, which has the held entry and appends after it). The
// leader becomes its follower within that RPC and writes the log itself;
// it must first finish its own write, or the new entry lands in the store
// ahead of the held one.
func TestLeaderFinishesItsWriteBeforeFollowingANewerLeader(t *testing.T) {
	leader, nodes := startTCPCluster(t, 2)
	writer := leader.raft.leaderState.logWriter
	release := leader.logs.HoldNext()
	defer release()
	index, _, _ := heldApply(t, leader, nodes, release)

	newer, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
		MaxPool: 1, Timeout: 2 * time.Second, MaxRPCsInFlight: 1,
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Off}),
	})
	if err != nil {
		t.Fatalf("transport: %v", err)
	}
	defer newer.Close()
	term := leader.raft.getCurrentTerm()
	req := &AppendEntriesRequest{
		RPCHeader:    RPCHeader{ProtocolVersion: ProtocolVersionMax, ID: []byte("newer"), Addr: []byte(newer.LocalAddr())},
		Term:         term + 1,
		PrevLogEntry: index,
		PrevLogTerm:  term,
		Entries:      []*Log{{Index: index + 1, Term: term + 1, Type: LogNoop}},
	}
	var resp AppendEntriesResponse
	rpcDone := make(chan error, 1)
	go func() { rpcDone <- newer.AppendEntries(leader.id, leader.trans.LocalAddr(), req, &resp) }()

	// Either the leader waits for its write (the fix) or it answers the
	// RPC while its write is still held.
	deadline := time.After(leaderWriteDeadline)
	for writer.flushWaits.Load() == 0 {
		select {
		case err := <-rpcDone:
			t.Fatalf("leader took a newer leader's entries (%v, success %v) while its own write of entry %d was held", err, resp.Success, index)
		case <-deadline:
			t.Fatal("leader neither waited for its write nor answered the newer leader")
		case <-time.After(2 * time.Millisecond):
		}
	}
	release()
	if err := <-rpcDone; err != nil || !resp.Success {
		t.Fatalf("newer leader's append: err %v, success %v", err, resp.Success)
	}
	for i := uint64(1); i <= index+1; i++ {
		var l Log
		if err := leader.logs.GetLog(i, &l); err != nil {
			t.Fatalf("old leader's log at %d: %v", i, err)
		}
	}
}
