package raft

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestPipelineRejectedAppendDoesNotWedgeReplication runs a leader and a
// follower over NetworkTransport on loopback with pipelining on
// (MaxRPCsInFlight 2, the smallest value that pipelines, where the
// transport's channels are unbuffered) and makes the follower reject
// appends (its log store fails one write, so it answers Success=false and
// rejects the pipelined appends after it for a missing previous entry)
// while the leader keeps the pipeline full. Upstream, the pipeline's
// decoder returns on the rejection and nobody reads the transport's
// responses any more; the next send that races the decoder's exit parks
// for good, the follower never gets another entry and Shutdown hangs.
// Each round fails with a deadline instead: the follower must catch up.
func TestPipelineRejectedAppendDoesNotWedgeReplication(t *testing.T) {
	const (
		rounds   = 25
		maxLag   = 2000
		loaders  = 4
		catchUp  = 10 * time.Second
		shutdown = 10 * time.Second
	)
	lines := newLineCounter("pipelining replication", "aborting pipeline replication")
	if os.Getenv("RAFT_TEST_LOG") != "" {
		lines.echo = os.Stderr
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: lines})

	newTrans := func() *NetworkTransport {
		trans, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
			MaxPool:         2,
			Timeout:         2 * time.Second,
			MaxRPCsInFlight: 2,
			Logger:          logger,
		})
		if err != nil {
			t.Fatalf("transport: %v", err)
		}
		return trans
	}
	leaderTrans, followerTrans := newTrans(), newTrans()
	// One voter, so leadership cannot move while the follower (a
	// non-voter, replicated to by the same code as a voter) misbehaves.
	leader := startTestNode(t, testConfig("leader", logger.Named("leader")), leaderTrans)
	follower := startTestNode(t, testConfig("follower", logger.Named("follower")), followerTrans)
	stopped := false
	defer func() {
		if !stopped {
			shutdownWithin(t, shutdown, leader, follower)
		}
	}()

	if err := leader.raft.BootstrapCluster(Configuration{Servers: []Server{
		{Suffrage: Voter, ID: leader.id, Address: leaderTrans.LocalAddr()},
	}}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitFor(t, 10*time.Second, "a leader", func() bool { return leader.raft.State() == Leader })
	if err := leader.raft.AddNonvoter(follower.id, followerTrans.LocalAddr(), 0, 0).Error(); err != nil {
		t.Fatalf("add follower: %v", err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < loaders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Stay a bounded distance ahead of the follower: far enough
				// to keep its pipeline full through a rejection, near
				// enough that a slow follower (-race) keeps up.
				if leader.raft.LastIndex() > follower.raft.LastIndex()+maxLag {
					time.Sleep(time.Millisecond)
					continue
				}
				if err := leader.raft.Apply([]byte("x"), 0).Error(); err != nil {
					return
				}
			}
		}()
	}
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
	}
	defer func() { stopLoad(); wg.Wait() }()

	pipelined := func() bool {
		return lines.count("pipelining replication") > lines.count("aborting pipeline replication")
	}
	for round := 1; round <= rounds; round++ {
		// The rejection must hit a running pipeline, or this test would
		// pass without the fix.
		waitFor(t, catchUp, "pipelined replication to the follower", pipelined)
		before := follower.logs.failed.Load()
		follower.logs.failNext.Store(true)
		waitFor(t, catchUp, "the follower's failed write", func() bool {
			return follower.logs.failed.Load() > before
		})
		// The entries of the failed write must reach the follower on a
		// retry.
		target := follower.logs.lastFail.Load()
		deadline := time.Now().Add(catchUp)
		for follower.raft.LastIndex() < target {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: follower stuck at index %d after rejecting an append, leader at %d: replication to it never resumed",
					round, follower.raft.LastIndex(), leader.raft.LastIndex())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	stopLoad()
	wg.Wait()

	if err := leader.raft.Barrier(catchUp).Error(); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	want := leader.raft.LastIndex()
	waitFor(t, catchUp, "the follower to hold the leader's whole log", func() bool {
		return follower.raft.LastIndex() >= want
	})
	if n := lines.count("pipelining replication"); n < rounds {
		t.Fatalf("pipeline started %d times over %d rejections; want one restart per rejection", n, rounds)
	}
	stopped = true
	shutdownWithin(t, shutdown, leader, follower)
}
