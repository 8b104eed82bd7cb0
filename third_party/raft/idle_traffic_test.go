package raft

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// countingTransport counts the AppendEntries requests its pipelines send
// and the heartbeats it sends.
type countingTransport struct {
	*NetworkTransport
	sent       atomic.Int64
	heartbeats atomic.Int64
}

func (c *countingTransport) AppendEntries(id ServerID, target ServerAddress, args *AppendEntriesRequest, resp *AppendEntriesResponse) error {
	if len(args.Entries) == 0 && args.PrevLogEntry == 0 && args.LeaderCommitIndex == 0 {
		c.heartbeats.Add(1)
	}
	return c.NetworkTransport.AppendEntries(id, target, args, resp)
}

func (c *countingTransport) AppendEntriesPipeline(id ServerID, target ServerAddress) (AppendPipeline, error) {
	p, err := c.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &countingPipeline{AppendPipeline: p, sent: &c.sent}, nil
}

type countingPipeline struct {
	AppendPipeline
	sent *atomic.Int64
}

func (p *countingPipeline) AppendEntries(args *AppendEntriesRequest, resp *AppendEntriesResponse) (AppendFuture, error) {
	p.sent.Add(1)
	return p.AppendPipeline.AppendEntries(args, resp)
}

// TestIdleGroupSendsNoCommitAppends runs a leader and a follower with a
// short CommitTimeout, applies a few entries, and checks two things: the
// follower still learns the final commit index (it applies every entry,
// which needs the send after the last commit), and once it has, the
// leader's pipeline sends nothing more while the group is idle. Upstream
// sends an empty AppendEntries every CommitTimeout forever, which on a
// node with many groups is most of its idle CPU.
func TestIdleGroupSendsNoCommitAppends(t *testing.T) {
	const (
		entries = 20
		idle    = 400 * time.Millisecond
		wait    = 10 * time.Second
	)
	level := hclog.Warn
	if os.Getenv("RAFT_TEST_LOG") != "" {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level, Output: os.Stderr})
	newTrans := func() *countingTransport {
		trans, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
			MaxPool:         2,
			Timeout:         2 * time.Second,
			MaxRPCsInFlight: 4,
			Logger:          logger,
		})
		if err != nil {
			t.Fatalf("transport: %v", err)
		}
		return &countingTransport{NetworkTransport: trans}
	}
	leaderTrans, followerTrans := newTrans(), newTrans()
	leader := startTestNode(t, testConfig("leader", logger.Named("leader")), leaderTrans)
	follower := startTestNode(t, testConfig("follower", logger.Named("follower")), followerTrans)
	defer shutdownWithin(t, wait, leader, follower)

	if err := leader.raft.BootstrapCluster(Configuration{Servers: []Server{
		{Suffrage: Voter, ID: leader.id, Address: leaderTrans.LocalAddr()},
	}}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitFor(t, wait, "a leader", func() bool { return leader.raft.State() == Leader })
	if err := leader.raft.AddNonvoter(follower.id, followerTrans.LocalAddr(), 0, 0).Error(); err != nil {
		t.Fatalf("add follower: %v", err)
	}
	for i := 0; i < entries; i++ {
		if err := leader.raft.Apply([]byte("x"), wait).Error(); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	// The follower applies an entry only once it has heard it committed.
	waitFor(t, wait, "the follower to apply every entry", func() bool {
		return len(follower.fsm.Logs()) == entries
	})
	// The send that carried the last commit index has arrived (the
	// follower applied the last entry): from here the group is idle.
	before := leaderTrans.sent.Load()
	time.Sleep(idle) // a measurement window, not a wait for a condition
	if n := leaderTrans.sent.Load() - before; n > 1 {
		t.Fatalf("the idle leader's pipeline sent %d appends in %v (CommitTimeout %v): it should send none once the follower has every entry and the commit index",
			n, idle, leader.raft.config().CommitTimeout)
	}
}

// TestBusyGroupSendsNoHeartbeats counts a leader's heartbeats to its
// follower while it idles and while it replicates entries without pause:
// a follower answering appends has heard from the leader, and upstream's
// heartbeats to it are messages that carry nothing. The idle count shows
// heartbeats still flow when nothing else does.
func TestBusyGroupSendsNoHeartbeats(t *testing.T) {
	const (
		window = 600 * time.Millisecond
		wait   = 10 * time.Second
	)
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	newTrans := func() *countingTransport {
		trans, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
			MaxPool: 2, Timeout: 2 * time.Second, MaxRPCsInFlight: 4, Logger: logger,
		})
		if err != nil {
			t.Fatalf("transport: %v", err)
		}
		return &countingTransport{NetworkTransport: trans}
	}
	leaderTrans, followerTrans := newTrans(), newTrans()
	conf := testConfig("leader", logger.Named("leader"))
	leader := startTestNode(t, conf, leaderTrans)
	follower := startTestNode(t, testConfig("follower", logger.Named("follower")), followerTrans)
	defer shutdownWithin(t, wait, leader, follower)
	if err := leader.raft.BootstrapCluster(Configuration{Servers: []Server{
		{Suffrage: Voter, ID: leader.id, Address: leaderTrans.LocalAddr()},
	}}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitFor(t, wait, "a leader", func() bool { return leader.raft.State() == Leader })
	if err := leader.raft.AddNonvoter(follower.id, followerTrans.LocalAddr(), 0, 0).Error(); err != nil {
		t.Fatalf("add follower: %v", err)
	}
	waitFor(t, wait, "the follower to catch up", func() bool {
		return follower.raft.LastIndex() >= leader.raft.LastIndex()
	})

	expected := int64(window / heartbeatInterval(conf.HeartbeatTimeout))
	before := leaderTrans.heartbeats.Load()
	time.Sleep(window) // a measurement window, not a wait for a condition
	idle := leaderTrans.heartbeats.Load() - before
	if idle < expected/2 {
		t.Fatalf("idle leader sent %d heartbeats in %v, want about %d", idle, window, expected)
	}

	// Keep an entry in flight at all times: the follower answers an
	// append every few milliseconds.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := leader.raft.Apply([]byte("x"), wait).Error(); err != nil {
				return
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	start := leader.raft.AppliedIndex()
	waitFor(t, wait, "entries replicating", func() bool { return leader.raft.AppliedIndex() > start+20 })
	before = leaderTrans.heartbeats.Load()
	applied := leader.raft.AppliedIndex()
	time.Sleep(window) // a measurement window
	busy := leaderTrans.heartbeats.Load() - before
	entries := leader.raft.AppliedIndex() - applied
	if entries < 30 {
		t.Fatalf("only %d entries applied in %v: the group was not kept busy, so the heartbeat count says nothing", entries, window)
	}
	if busy > idle/4 {
		t.Fatalf("busy leader (%d entries in %v) sent %d heartbeats, idle %d: heartbeats should stop while appends flow", entries, window, busy, idle)
	}
}
