package raft

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
)

// TestFollowerIgnoresSnapshotItAppliedPast plays a leader by hand against
// one follower: entries 1..10 are committed and applied there, and the
// follower snapshots and compacts its log. The leader, whose view of the
// follower is behind, then sends a snapshot at index 5 and appends from
// there. Upstream the follower restores the older snapshot (its state
// goes back to index 5), finds its log holds nothing between, and either
// rejects every append or panics applying the next commit. Patched it
// keeps its state, accepts the append from inside its applied prefix, and
// applies exactly the entries after it.
func TestFollowerIgnoresSnapshotItAppliedPast(t *testing.T) {
	level := hclog.Warn
	if os.Getenv("RAFT_TEST_LOG") != "" {
		level = hclog.Info
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: level})
	conf := testConfig("f", logger)
	conf.TrailingLogs = 0
	conf.SnapshotThreshold = 1 << 20
	conf.SnapshotInterval = time.Hour
	_, ft := NewInmemTransport("f")
	_, lt := NewInmemTransport("l")
	ft.Connect("l", lt)
	lt.Connect("f", ft)
	fsm := &MockFSM{}
	r, err := NewRaft(conf, fsm, NewInmemStore(), NewInmemStore(), NewInmemSnapshotStore(), ft)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()

	cfg := Configuration{Servers: []Server{{Suffrage: Voter, ID: "l", Address: "l"}, {Suffrage: Voter, ID: "f", Address: "f"}}}
	header := RPCHeader{ProtocolVersion: ProtocolVersionMax, ID: []byte("l"), Addr: []byte("l")}
	cmd := func(i uint64) *Log {
		return &Log{Index: i, Term: 1, Type: LogCommand, Data: fmt.Appendf(nil, "c%d", i)}
	}
	appendFrom := func(prev uint64, from, to uint64) *AppendEntriesResponse {
		t.Helper()
		req := &AppendEntriesRequest{RPCHeader: header, Term: 1, PrevLogEntry: prev, PrevLogTerm: 1, LeaderCommitIndex: to}
		if prev == 0 {
			req.PrevLogTerm = 0
		}
		for i := from; i <= to; i++ {
			if i == 1 {
				req.Entries = append(req.Entries, &Log{Index: 1, Term: 1, Type: LogConfiguration, Data: EncodeConfiguration(cfg)})
				continue
			}
			req.Entries = append(req.Entries, cmd(i))
		}
		var resp AppendEntriesResponse
		if err := lt.AppendEntries("f", "f", req, &resp); err != nil {
			t.Fatalf("append %d..%d: %v", from, to, err)
		}
		return &resp
	}
	applied := func() []string {
		var out []string
		for _, b := range fsm.Logs() {
			out = append(out, string(b))
		}
		return out
	}
	want := func(to int) []string {
		var out []string
		for i := 2; i <= to; i++ {
			out = append(out, fmt.Sprintf("c%d", i))
		}
		return out
	}

	if resp := appendFrom(0, 1, 10); !resp.Success {
		t.Fatalf("first append refused: %+v", resp)
	}
	waitFor(t, 5*time.Second, "the follower to apply 10 entries", func() bool { return len(applied()) == 9 })
	if err := r.Snapshot().Error(); err != nil {
		t.Fatalf("follower snapshot: %v", err)
	}

	var old bytes.Buffer
	if err := codec.NewEncoder(&old, &codec.MsgpackHandle{}).Encode([][]byte{[]byte("c2"), []byte("c3"), []byte("c4"), []byte("c5")}); err != nil {
		t.Fatal(err)
	}
	snap := &InstallSnapshotRequest{RPCHeader: header, SnapshotVersion: 1, Term: 1, Leader: []byte("l"),
		LastLogIndex: 5, LastLogTerm: 1, Configuration: EncodeConfiguration(cfg), ConfigurationIndex: 1, Size: int64(old.Len())}
	var sresp InstallSnapshotResponse
	if err := lt.InstallSnapshot("f", "f", snap, &sresp, bytes.NewReader(old.Bytes())); err != nil {
		t.Fatalf("install snapshot: %v", err)
	}
	if got := applied(); len(got) != 9 {
		t.Fatalf("the follower's state went back to %v after a snapshot at 5; it had applied up to 10", got)
	}

	if resp := appendFrom(5, 6, 12); !resp.Success {
		t.Fatalf("append from index 5, inside the applied prefix, refused: %+v", resp)
	}
	waitFor(t, 5*time.Second, "the follower to apply up to 12", func() bool { return len(applied()) >= 11 })
	if got, w := fmt.Sprint(applied()), fmt.Sprint(want(12)); got != w {
		t.Fatalf("applied %s, want %s", got, w)
	}
}
