package raft

import (
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// errInjected is what the test log stores return when told to fail.
var errInjected = errors.New("injected log store failure")

// faultyLogStore wraps a LogStore so a test can make StoreLogs fail, or
// hold it until released, without touching the rest of the store.
type faultyLogStore struct {
	LogStore

	failNext  atomic.Bool  // fail the next StoreLogs once
	failAll   atomic.Bool  // fail every StoreLogs while set
	failed    atomic.Int64 // StoreLogs calls that returned errInjected
	stored    atomic.Int64 // StoreLogs calls that reached the store
	lastFail  atomic.Uint64
	holdMu    sync.Mutex
	hold      chan struct{} // non-nil: StoreLogs waits for it to close
	holdOnce  bool          // only the next StoreLogs waits for hold
	holding   chan struct{} // receives once per StoreLogs parked on hold
	storedMax atomic.Uint64 // highest index a StoreLogs wrote

	deletedAhead atomic.Uint64 // a DeleteRange end past the last stored index
}

func newFaultyLogStore() *faultyLogStore {
	return &faultyLogStore{LogStore: NewInmemStore(), holding: make(chan struct{}, 64)}
}

// Hold makes every later StoreLogs wait until the returned function is
// called.
func (s *faultyLogStore) Hold() (release func()) { return s.hold1(false) }

// HoldNext makes only the next StoreLogs wait until the returned function
// is called.
func (s *faultyLogStore) HoldNext() (release func()) { return s.hold1(true) }

func (s *faultyLogStore) hold1(next bool) (release func()) {
	ch := make(chan struct{})
	s.holdMu.Lock()
	s.hold = ch
	s.holdOnce = next
	s.holdMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.holdMu.Lock()
			if s.hold == ch {
				s.hold = nil
			}
			s.holdMu.Unlock()
			close(ch)
		})
	}
}

func (s *faultyLogStore) StoreLog(l *Log) error { return s.StoreLogs([]*Log{l}) }

// DeleteRange records a deletion that reaches past the last stored entry:
// it deletes entries whose write has not happened yet, and a log store
// that keeps its entries contiguous (tally's raftstore) may then refuse
// or misplace that write.
func (s *faultyLogStore) DeleteRange(min, max uint64) error {
	if last, err := s.LogStore.LastIndex(); err == nil && max > last {
		s.deletedAhead.Store(max)
	}
	return s.LogStore.DeleteRange(min, max)
}

func (s *faultyLogStore) StoreLogs(logs []*Log) error {
	s.holdMu.Lock()
	hold := s.hold
	if s.holdOnce {
		s.hold = nil
	}
	s.holdMu.Unlock()
	if hold != nil {
		select {
		case s.holding <- struct{}{}:
		default:
		}
		<-hold
	}
	if s.failAll.Load() || s.failNext.CompareAndSwap(true, false) {
		if len(logs) > 0 {
			s.lastFail.Store(logs[len(logs)-1].Index)
		}
		s.failed.Add(1)
		return errInjected
	}
	if err := s.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	s.stored.Add(1)
	if len(logs) > 0 {
		s.storedMax.Store(logs[len(logs)-1].Index)
	}
	return nil
}

// lineCounter counts the log lines that contain each of a few phrases.
type lineCounter struct {
	mu     sync.Mutex
	counts map[string]int
	echo   io.Writer // nil: lines are only counted
}

func newLineCounter(phrases ...string) *lineCounter {
	c := &lineCounter{counts: make(map[string]int)}
	for _, p := range phrases {
		c.counts[p] = 0
	}
	return c
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	for phrase := range c.counts {
		c.counts[phrase] += strings.Count(string(p), phrase)
	}
	c.mu.Unlock()
	if c.echo != nil {
		return c.echo.Write(p)
	}
	return len(p), nil
}

func (c *lineCounter) count(phrase string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[phrase]
}

// testNode is one raft server of a test cluster.
type testNode struct {
	id    ServerID
	raft  *Raft
	logs  *faultyLogStore
	trans Transport
	fsm   *MockFSM
}

// testConfig has timeouts long enough that a loaded 2-core machine does
// not lose leadership in the middle of a test.
func testConfig(id ServerID, logger hclog.Logger) *Config {
	conf := DefaultConfig()
	conf.LocalID = id
	conf.HeartbeatTimeout = 500 * time.Millisecond
	conf.ElectionTimeout = 500 * time.Millisecond
	conf.LeaderLeaseTimeout = 250 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.Logger = logger
	return conf
}

func startTestNode(t *testing.T, conf *Config, trans Transport) *testNode {
	t.Helper()
	n := &testNode{id: conf.LocalID, logs: newFaultyLogStore(), trans: trans, fsm: &MockFSM{}}
	r, err := NewRaft(conf, n.fsm, n.logs, NewInmemStore(), NewDiscardSnapshotStore(), trans)
	if err != nil {
		t.Fatalf("start %s: %v", conf.LocalID, err)
	}
	n.raft = r
	return n
}

// shutdownWithin shuts the nodes down and fails the test if any Shutdown
// has not returned by the deadline (a stuck replication goroutine keeps
// Shutdown waiting forever).
func shutdownWithin(t *testing.T, d time.Duration, nodes ...*testNode) {
	t.Helper()
	done := make(chan ServerID, len(nodes))
	for _, n := range nodes {
		go func(n *testNode) {
			_ = n.raft.Shutdown().Error()
			if c, ok := n.trans.(WithClose); ok {
				_ = c.Close()
			}
			done <- n.id
		}(n)
	}
	deadline := time.After(d)
	for range nodes {
		select {
		case <-done:
		case <-deadline:
			t.Errorf("raft Shutdown did not return within %v", d)
			return
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
