package transport

import (
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// recFSM records every command it applies.
type recFSM struct {
	mu      sync.Mutex
	applied []string
}

func (f *recFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return nil
}

func (f *recFSM) get() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applied)
}

func (f *recFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *recFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

type raftNode struct {
	r   *raft.Raft
	fsm *recFSM
}

// TestTwoShardsShareOnePort runs two independent 3-node raft groups whose
// traffic all goes through one Mux (one port) per node.
func TestTwoShardsShareOnePort(t *testing.T) {
	const nodes, shards = 3, 2
	muxes := make([]*Mux, nodes)
	for i := range muxes {
		muxes[i] = newMux(t, false)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})

	var servers []raft.Server
	for i, m := range muxes {
		servers = append(servers, raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("node%d", i)),
			Address: raft.ServerAddress(m.Addr()),
		})
	}

	groups := make([][]raftNode, shards)
	for s := range shards {
		for i, m := range muxes {
			trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
				Stream:  m.StreamLayer(uint32(s)),
				MaxPool: 3,
				Timeout: 10 * time.Second,
				Logger:  hlog.Named(fmt.Sprintf("net-s%d-n%d", s, i)),
			})
			t.Cleanup(func() { trans.Close() }) // runs before the Mux's cleanup
			if got := string(trans.LocalAddr()); got != m.Addr() {
				t.Fatalf("shard %d node %d: LocalAddr %q, want Mux.Addr %q", s, i, got, m.Addr())
			}

			cfg := raft.DefaultConfig()
			cfg.LocalID = servers[i].ID
			cfg.Logger = hlog.Named(fmt.Sprintf("s%d-n%d", s, i))
			// Faster than the defaults but with room for a slow, raced CI box.
			cfg.HeartbeatTimeout = 500 * time.Millisecond
			cfg.ElectionTimeout = 500 * time.Millisecond
			cfg.LeaderLeaseTimeout = 250 * time.Millisecond
			cfg.CommitTimeout = 20 * time.Millisecond

			store := raft.NewInmemStore()
			fsm := &recFSM{}
			r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
			if err != nil {
				t.Fatalf("shard %d node %d: NewRaft: %v", s, i, err)
			}
			t.Cleanup(func() { r.Shutdown().Error() })
			if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				t.Fatalf("shard %d node %d: bootstrap: %v", s, i, err)
			}
			groups[s] = append(groups[s], raftNode{r, fsm})
		}
	}

	for s, group := range groups {
		cmd := fmt.Sprintf("shard-%d-cmd", s)
		// Retry: a freshly elected leader can lose leadership while the
		// cluster settles on a slow machine.
		waitFor(t, 60*time.Second, fmt.Sprintf("shard %d to elect a leader and commit", s), func() bool {
			for _, n := range group {
				if n.r.State() == raft.Leader {
					return n.r.Apply([]byte(cmd), 5*time.Second).Error() == nil
				}
			}
			return false
		})
		waitFor(t, waitTimeout, fmt.Sprintf("shard %d command on all nodes", s), func() bool {
			for _, n := range group {
				if !slices.Contains(n.fsm.get(), cmd) {
					return false
				}
			}
			return true
		})
	}

	// No crosstalk: every FSM holds only its own shard's command (once, unless
	// a retried Apply after a leadership change committed it twice).
	for s, group := range groups {
		want := fmt.Sprintf("shard-%d-cmd", s)
		for i, n := range group {
			for _, got := range n.fsm.get() {
				if got != want {
					t.Errorf("shard %d node %d applied %q: crosstalk", s, i, got)
				}
			}
		}
	}
}
