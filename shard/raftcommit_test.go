package shard

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// recordingFSM remembers what was applied at each index.
type recordingFSM struct {
	mu      sync.Mutex
	applied map[uint64]string
	last    uint64
}

func (f *recordingFSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[l.Index] = string(l.Data)
	f.last = max(f.last, l.Index)
	return nil
}
func (f *recordingFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, io.EOF }
func (f *recordingFSM) Restore(io.ReadCloser) error         { return nil }

// TestFollowerCommitsOnlyVerifiedEntries: a follower whose log ends with
// entries from an old term (a deposed leader's uncommitted tail) must not
// apply them when a new leader's AppendEntries proves only a prefix of its
// log and carries a commit index beyond it. Upstream hashicorp/raft v1.7.3
// committed up to the follower's own last index, applying the stale
// entries, so the replica's state diverged; tally builds with the patched
// copy in third_party/raft (see its PATCHES.md).
func TestFollowerCommitsOnlyVerifiedEntries(t *testing.T) {
	addrA, transA := raft.NewInmemTransport("a")
	addrB, transB := raft.NewInmemTransport("b")
	transA.Connect(addrB, transB)
	transB.Connect(addrA, transA)

	// A's log: the configuration, entries 2..5 that the new leader B also
	// has, then 6..8 from term 1 that B never got.
	store := raft.NewInmemStore()
	conf := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "a", Address: addrA},
		{Suffrage: raft.Voter, ID: "b", Address: addrB},
		{Suffrage: raft.Voter, ID: "c", Address: "c"},
	}}
	logs := []*raft.Log{{Index: 1, Term: 1, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(conf)}}
	for i := uint64(2); i <= 8; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("old")})
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := store.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = "a"
	cfg.HeartbeatTimeout = time.Hour // A must stay a follower: only B's requests move it
	cfg.ElectionTimeout = time.Hour
	cfg.LeaderLeaseTimeout = time.Hour
	cfg.Logger = hclog.NewNullLogger()
	fsm := &recordingFSM{applied: map[uint64]string{}}
	r, err := raft.NewRaft(cfg, fsm, store, store, raft.NewInmemSnapshotStore(), transA)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()

	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("b"), Addr: []byte(addrB)}
	send := func(req *raft.AppendEntriesRequest) {
		t.Helper()
		var resp raft.AppendEntriesResponse
		if err := transB.AppendEntries("a", addrA, req, &resp); err != nil {
			t.Fatal(err)
		}
		if !resp.Success {
			t.Fatalf("append refused: %+v", resp)
		}
	}
	// B (term 2) has committed up to 8 with C; its entries 6..8 are new.
	// This request proves A's log up to 5 only.
	send(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 2, PrevLogEntry: 5, PrevLogTerm: 1, LeaderCommitIndex: 8})
	// The next one brings B's 6..8, which replace A's stale ones.
	var fresh []*raft.Log
	for i := uint64(6); i <= 8; i++ {
		fresh = append(fresh, &raft.Log{Index: i, Term: 2, Type: raft.LogCommand, Data: []byte("new")})
	}
	send(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 2, PrevLogEntry: 5, PrevLogTerm: 1, Entries: fresh, LeaderCommitIndex: 8})

	deadline := time.Now().Add(30 * time.Second)
	for {
		fsm.mu.Lock()
		last := fsm.last
		got := []string{fsm.applied[6], fsm.applied[7], fsm.applied[8]}
		fsm.mu.Unlock()
		if last >= 8 {
			for i, d := range got {
				if d != "new" {
					t.Fatalf("index %d applied %q: the follower applied an entry of the old term that the leader never committed", 6+i, d)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied up to %d, want 8", last)
		}
		time.Sleep(5 * time.Millisecond) // polling the FSM with a deadline
	}
}
