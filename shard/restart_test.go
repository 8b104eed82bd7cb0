package shard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tally/fsm"
	"tally/transport"
)

// TestRestartRecoversFromSnapshotAndLog: a single-replica shard on disk
// takes a snapshot halfway through 500 increments (compacting the log
// behind it), is closed and reopened on the same directory without a
// bootstrap: the snapshot plus the log after it must restore the value
// and the idempotency table, and writes must go on.
func TestRestartRecoversFromSnapshotAndLog(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, err := transport.Listen("127.0.0.1:0", "", false, testLogger())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	const id = 3
	open := func() *Shard {
		t.Helper()
		s, err := Open(Config{
			ID:                id,
			NodeID:            "solo",
			Dir:               dir,
			Stream:            m.StreamLayer(id), // a fresh listener after the last Close
			Logger:            testLogger(),
			HeartbeatTimeout:  raftTimeout,
			ElectionTimeout:   raftTimeout,
			SnapshotThreshold: 16,
			TrailingLogs:      8,
		})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	waitServing := func(s *Shard) {
		t.Helper()
		waitFor(t, waitTimeout, "the replica to lead and serve linearizable reads", func() bool {
			_, err := tryRead(s, "c")
			return err == nil
		})
	}

	s := open()
	if s.HasState() {
		t.Fatal("fresh dir: HasState() = true")
	}
	if err := s.Bootstrap(map[string]string{"solo": m.Addr()}); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitServing(s)

	keyed := mustPropose(t, s, addKey("c", 1, "first"))[0]
	for range 83 { // 249 more
		mustPropose(t, s, add("c", 1), add("c", 1), add("c", 1))
	}
	// Raft only checks SnapshotThreshold every SnapshotInterval, so ask for
	// the snapshot directly (one raft took on its own just now is as good).
	if err := s.r.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("snapshot: %v", err)
	}
	snapApplied := s.AppliedIndex()
	first, err := s.store.FirstIndex()
	if err != nil {
		t.Fatalf("first log index: %v", err)
	}
	if first <= 1 {
		t.Fatalf("log not compacted after the snapshot (first index %d): the restart would not need the snapshot", first)
	}
	for range 50 { // 250 more
		mustPropose(t, s, add("c", 1), add("c", 1), add("c", 1), add("c", 1), add("c", 1))
	}
	if got := mustRead(t, s, true, "c")[0]; got != 500 {
		t.Fatalf("before restart: %d, want 500", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if snaps, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin")); len(snaps) == 0 {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("no snapshot on disk in %s: %v", dir, entries)
	}

	s = open()
	if !s.HasState() {
		t.Fatal("reopened dir: HasState() = false")
	}
	// Open restores the latest snapshot before returning; the log after it
	// is replayed once the replica leads and commits again.
	if got := s.AppliedIndex(); got < snapApplied {
		t.Fatalf("applied index right after reopen: %d, want at least the snapshot's %d", got, snapApplied)
	}
	waitServing(s)
	if got := mustRead(t, s, true, "c")[0]; got != 500 {
		t.Fatalf("after restart: %d, want 500", got)
	}
	if r := mustPropose(t, s, addKey("c", 1, "first"))[0]; r != keyed {
		t.Fatalf("keyed retry after restart: %v, want the first result %v (dedup table not restored)", r, keyed)
	}
	if r := mustPropose(t, s, add("c", 1))[0]; r != (fsm.Result{Value: 501}) {
		t.Fatalf("write after restart: %v, want {501 ok}", r)
	}
}

// TestSnapshotByLogBytes: with a huge entry threshold, a replica still
// snapshots once SnapshotBytes of log were applied since its last
// snapshot, every replica on its own, and keeps TrailingBytes' worth of
// entries behind it, not TrailingLogs.
func TestSnapshotByLogBytes(t *testing.T) {
	g := startGroup(t, 3, func(i int, c *Config) {
		c.SnapshotThreshold = 1 << 40
		c.SnapshotBytes = 32 << 10
		c.TrailingLogs = 1000
		c.TrailingBytes = 16 << 10
	})
	leader := g.nodes[g.waitLeader()].sh
	if leader.LastSnapshotIndex() != 0 {
		t.Fatal("snapshot before any write")
	}
	long := strings.Repeat("n", 200)
	for i := range 40 { // about 40 entries of 4 KB
		ops := make([]fsm.Op, 16)
		for j := range ops {
			ops[j] = add(fmt.Sprintf("%s-%d-%d", long, i, j), 1)
		}
		mustPropose(t, leader, ops...)
	}
	for _, nd := range g.nodes {
		waitFor(t, 30*time.Second, nd.id+" snapshots for log bytes", func() bool { return nd.sh.LastSnapshotIndex() > 0 })
		// Entries of about 4 KB: 16 KiB is a handful of them.
		if n := nd.sh.r.ReloadableConfig().TrailingLogs; n < 2 || n > 8 {
			t.Fatalf("%s keeps %d entries after its snapshot, want 16 KiB's worth", nd.id, n)
		}
	}
}
