// Package shard runs one shard replica: a hashicorp/raft group over the
// counter state machine, with group commit for writes and ReadIndex-style
// linearizable reads. A node runs one Shard per shard replica it hosts.
package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"tally/fsm"
	"tally/logbridge"
	"tally/raftstore"
)

// Config describes one shard replica.
type Config struct {
	ID     uint32
	NodeID string // this node's id: the raft ServerID
	Dir    string // <data-dir>/shard-<id>
	Stream raft.StreamLayer
	// Transport, when set, carries this replica's raft traffic instead of
	// a NetworkTransport over Stream (e.g. transport.Mux.RaftTransport:
	// one connection per node pair for every shard). Close closes it if
	// it implements raft.WithClose.
	Transport raft.Transport
	Logger    *slog.Logger

	DedupTTL          time.Duration // idempotency key lifetime (fsm default when 0)
	SnapshotThreshold uint64        // log entries between snapshots (default 8192)
	// SnapshotBytes: a snapshot is also taken once this many bytes of log
	// entries were applied since the last one (default 32 MiB; negative
	// counts as never). Group commit puts thousands of ops in one entry,
	// so entries alone would let a busy shard's log, and a restart's
	// replay, grow without bound.
	SnapshotBytes int64
	TrailingLogs  uint64 // entries kept after a snapshot (default 4096)
	// TrailingBytes caps the log kept after a snapshot in bytes too
	// (default 16 MiB; negative: entries only): at each snapshot the
	// replica keeps about this many bytes' worth of entries, at the
	// average size of those applied since the last one, and at most
	// TrailingLogs.
	TrailingBytes int64
	// Timing: HeartbeatTimeout and ElectionTimeout default to 300 ms
	// (leader lease 150 ms), which elects a new leader and serves writes
	// again within about a second of a leader's death on a LAN (chaos
	// campaigns: median 0.65 s, max 1.2-1.9 s; 500 ms gave 1.15 s /
	// 1.9 s). In-process tests under the race detector pass 1 s.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// MaxInflight is how many entries the proposer has in raft at once
	// (default 1). raft's leader stores and replicates one batch at a time
	// anyway, so a second entry in flight mostly halves the batches: with
	// 64 clients on 10,000 counters, 1 gave 2.4 → 3.4 ops per entry and
	// about 10-20% less CPU per increment than 2 (bench pairs in one run);
	// on one hot counter, fsyncs per increment fell from 0.34-0.37 to
	// 0.24-0.26.
	MaxInflight int
	MaxBatchOps int // ops per entry at most (default 4096)
	// BatchLinger is how long, under load, an entry smaller than the last
	// one waits for more ops (default 3 ms; negative: never). It never
	// delays a lone caller: it applies only after an entry of several ops.
	BatchLinger  time.Duration
	ObserveBatch func(ops int) // optional: called with each entry's op count
	// AdmitKeys, if set, says whether new idempotency keys may be
	// remembered (the node caps its dedup tables); while it says no,
	// Propose refuses ops whose keys this replica does not hold with
	// ErrKeysFull. Retries of remembered keys still go through.
	AdmitKeys      func() bool
	OnLeaderChange func(bool)               // optional: called (in order) when this replica gains or loses leadership
	OnSplit        func(name string, n int) // optional: called when this replica applies the end of a split
	InMemory       bool                     // tests: in-memory log and snapshots, nothing on disk
	// Logs is the node's shared raft log store (one file and one commit
	// for every shard's appends). Nil: this replica keeps its own
	// raft-boltdb file in Dir, as do replicas whose Dir already has one.
	Logs *raftstore.Store
	// ChangeRetention is how many recent changes (a counter moved by an
	// entry) the replica keeps for changefeeds; 0 keeps none.
	ChangeRetention int
}

// logCacheEntries is how many recent log entries each replica keeps in
// memory for replication to read.
const logCacheEntries = 128

// Shard is one running replica.
type Shard struct {
	id        uint32
	cfg       Config
	log       *slog.Logger
	r         *raft.Raft
	sm        *stateMachine
	prop      *proposer
	rd        *reader
	trans     raft.Transport
	store     *raftboltdb.BoltStore
	readyTerm atomic.Uint64
	snapping  atomic.Bool // a snapshot for log bytes is running
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// Open starts the replica. It neither bootstraps nor joins: on a fresh
// data dir it waits for a bootstrap (Bootstrap here, or a leader that adds
// it); on an existing one it resumes from its snapshot and log.
func Open(cfg Config) (*Shard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = 8192
	}
	if cfg.SnapshotBytes == 0 {
		cfg.SnapshotBytes = 32 << 20
	}
	if cfg.TrailingBytes == 0 {
		cfg.TrailingBytes = 16 << 20
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = 4096
		if cfg.SnapshotThreshold < smallSnapshotThreshold {
			// A tiny threshold (chaos runs) keeps a short tail too, so a
			// replica that lags a little must install a snapshot.
			cfg.TrailingLogs = max(cfg.SnapshotThreshold/2, 1)
		}
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = 300 * time.Millisecond
	}
	if cfg.ElectionTimeout == 0 {
		cfg.ElectionTimeout = 300 * time.Millisecond
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 1
	}
	if cfg.MaxBatchOps == 0 {
		cfg.MaxBatchOps = 4096
	}
	if cfg.BatchLinger == 0 {
		cfg.BatchLinger = 3 * time.Millisecond
	}
	logger := cfg.Logger.With("shard", cfg.ID)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = 30 * time.Second
	if cfg.SnapshotThreshold < smallSnapshotThreshold {
		rc.SnapshotInterval = time.Second // raft checks the threshold only this often
	}
	rc.PreVoteDisabled = false
	rc.NoLegacyTelemetry = true
	rc.Logger = logbridge.Raft(logger, "raft")

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
		store  *raftboltdb.BoltStore
	)
	if cfg.InMemory {
		mem := raft.NewInmemStore()
		logs, stable, snaps = mem, mem, raft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, err
		}
		// NoSync stays false: every append is fsync'd before raft counts
		// this replica toward the quorum. That is the durability promise.
		own := filepath.Join(cfg.Dir, "raft.db")
		_, statErr := os.Stat(own)
		var err error
		if cfg.Logs != nil && errors.Is(statErr, os.ErrNotExist) {
			var view *raftstore.Log
			if view, err = cfg.Logs.Shard(cfg.ID); err != nil {
				return nil, fmt.Errorf("shard %d: open log: %w", cfg.ID, err)
			}
			logs, stable = view, view
		} else {
			if store, err = raftboltdb.New(raftboltdb.Options{Path: own}); err != nil {
				return nil, fmt.Errorf("shard %d: open log store: %w", cfg.ID, err)
			}
			logs, stable = store, store
		}
		snaps, err = raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, logbridge.Raft(logger, "snapshot"))
		if err != nil {
			if store != nil {
				store.Close()
			}
			return nil, fmt.Errorf("shard %d: open snapshot store: %w", cfg.ID, err)
		}
	}

	if !cfg.InMemory {
		// Replication reads back the entries it sends; without a cache each
		// read is a bolt read transaction on the leader (4% of its CPU under
		// a hot counter). 128 recent entries cover a follower a few round
		// trips behind; one further back reads from bolt.
		cached, err := raft.NewLogCache(logCacheEntries, logs)
		if err != nil { // only for a capacity below 1
			panic(err)
		}
		logs = cached
	}

	trans := cfg.Transport
	if trans == nil {
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  cfg.Stream,
			MaxPool: 3,
			Timeout: 5 * time.Second,
			Logger:  logbridge.Raft(logger, "raft-net"),
			// raft's pipeline no longer deadlocks after a rejected append
			// (third_party/raft/PATCHES.md), so it runs at raft's default.
			MaxRPCsInFlight: 2,
		})
	}
	sm := newStateMachine(fsm.Config{DedupTTL: cfg.DedupTTL})
	sm.onSplit = cfg.OnSplit
	sm.keepChanges(cfg.ChangeRetention)
	sm.log = logger
	// Raft may apply entries (replaying its log) before Open returns the
	// Shard; until then, nothing to call.
	var opened atomic.Pointer[Shard]
	if cfg.SnapshotBytes > 0 {
		sm.snapBytes = uint64(cfg.SnapshotBytes)
		sm.onLogBytes = func() {
			if sh := opened.Load(); sh != nil {
				sh.snapshotForBytes()
			}
		}
	}
	if cfg.TrailingBytes > 0 {
		sm.onSnapshot = func(avg uint64) {
			if sh := opened.Load(); sh != nil {
				sh.trailFor(avg)
			}
		}
	}
	r, err := raft.NewRaft(rc, sm, logs, stable, snaps, trans)
	if err != nil {
		closeTransport(trans)
		if store != nil {
			store.Close()
		}
		return nil, fmt.Errorf("shard %d: start raft: %w", cfg.ID, err)
	}
	s := &Shard{id: cfg.ID, cfg: cfg, log: logger, r: r, sm: sm, trans: trans, store: store, stop: make(chan struct{})}
	s.prop = newProposer(r, cfg.ID, cfg.MaxInflight, cfg.MaxBatchOps, max(cfg.BatchLinger, 0), cfg.ObserveBatch)
	s.rd = newReader(r, cfg.ID, sm, &s.readyTerm)
	s.wg.Add(2)
	go s.watchLeadership()
	go s.reclaimExpired()
	opened.Store(s)
	return s, nil
}

// HasState reports whether this replica already belongs to a raft
// configuration (so it must not be bootstrapped again).
func (s *Shard) HasState() bool {
	return s.r.LastIndex() > 0
}

// Bootstrap sets the shard's initial voters. Only one replica of a new
// shard calls it; it is a no-op error (raft.ErrCantBootstrap) on a replica
// that has state, which callers may ignore.
func (s *Shard) Bootstrap(voters map[string]string) error {
	var cfg raft.Configuration
	for id, addr := range voters {
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(addr)})
	}
	return s.r.BootstrapCluster(cfg).Error()
}

// ID is the shard number.
func (s *Shard) ID() uint32 { return s.id }

// Propose applies ops as part of a raft entry and returns one result per op,
// only after the entry is committed (on a quorum's fsync'd log) and
// applied here.
func (s *Shard) Propose(ctx context.Context, ops []fsm.Op) ([]fsm.Result, error) {
	// One invalid op would make every replica reject the whole entry,
	// failing the other callers grouped into it; refuse it here alone.
	for i := range ops {
		if err := ops[i].Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidOp, err)
		}
	}
	if s.r.State() != raft.Leader {
		return nil, s.notLeader()
	}
	if err := s.admit(ops); err != nil {
		return nil, err
	}
	return s.prop.propose(ctx, ops)
}

// admit refuses ops carrying keys new to this replica while the node's
// key tables are full (Config.AdmitKeys).
func (s *Shard) admit(ops []fsm.Op) error {
	if s.cfg.AdmitKeys == nil {
		return nil
	}
	checked := false
	for i := range ops {
		// Imported keys are moved, not new: a split must finish.
		if ops[i].Key == "" || ops[i].Kind == fsm.OpImportKey {
			continue
		}
		if !checked {
			if s.cfg.AdmitKeys() {
				return nil
			}
			checked = true
		}
		if !s.sm.hasKey(ops[i].Key) {
			return ErrKeysFull
		}
	}
	return nil
}

// DedupKeys returns how many idempotency keys this replica remembers, as of
// its last applied entry, without taking the state machine's lock.
func (s *Shard) DedupKeys() int64 { return s.sm.keys.Load() }

// Lookup is what a read returns for one counter.
type Lookup struct {
	Value     int64
	ExpiresAt int64 // Unix nanoseconds; 0 when the counter does not expire
	Split     int   // the counter's split factor (1 if never split); only its home shard knows
}

// Read returns the values of names. Linearizable reads reflect every write
// acknowledged before the call (leader only); stale reads return this
// replica's state, whatever role it has.
func (s *Shard) Read(ctx context.Context, names []string, linearizable bool) ([]int64, error) {
	ls, err := s.Lookup(ctx, names, linearizable)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(ls))
	for i, l := range ls {
		out[i] = l.Value
	}
	return out, nil
}

// Lookup is Read with each counter's expiry.
func (s *Shard) Lookup(ctx context.Context, names []string, linearizable bool) ([]Lookup, error) {
	if linearizable {
		if err := s.rd.wait(ctx); err != nil {
			return nil, err
		}
	}
	return s.sm.lookup(names, make([]Lookup, 0, len(names))), nil
}

// LookupAt is Lookup with the raft index of this replica's state the
// values reflect: exactly the state after that entry.
func (s *Shard) LookupAt(ctx context.Context, names []string, linearizable bool) ([]Lookup, uint64, error) {
	if linearizable {
		if err := s.rd.wait(ctx); err != nil {
			return nil, 0, err
		}
	}
	vals, idx := s.sm.lookupAt(names, make([]Lookup, 0, len(names)))
	return vals, idx, nil
}

// PendingSplits returns the counters whose split was begun on this shard
// (their home) and not ended, with the factor each is going to, as this
// replica has applied them.
func (s *Shard) PendingSplits() map[string]int { return s.sm.pendingSplits() }

// MovedKeys returns, as fsm.OpImportKey ops, the idempotency keys that the
// pending split of the counter name moves to other sub-counters, as this
// replica has applied them: complete once its begin is applied here.
func (s *Shard) MovedKeys(name string) []fsm.Op { return s.sm.movedKeys(name) }

// IsMember reports whether actor is in the counter's actor set, with the
// same consistency choices as Read.
func (s *Shard) IsMember(ctx context.Context, name, actor string, linearizable bool) (bool, error) {
	if linearizable {
		if err := s.rd.wait(ctx); err != nil {
			return false, err
		}
	}
	return s.sm.isMember(name, actor), nil
}

// IsLeader reports whether this replica leads the shard and can serve
// linearizable reads (its term marker is applied).
func (s *Shard) IsLeader() bool {
	return s.r.State() == raft.Leader && s.readyTerm.Load() == s.r.CurrentTerm()
}

// InContact reports whether this replica leads the shard or heard from
// its leader within d: what it has applied is then at most about d behind
// the commit. A replica cut off from the others reports false once d has
// passed.
func (s *Shard) InContact(d time.Duration) bool {
	if s.r.State() == raft.Leader {
		return true
	}
	lc := s.r.LastContact()
	return !lc.IsZero() && time.Since(lc) < d
}

// Leader returns the leader's node id and cluster address as this replica
// knows them (empty when unknown).
func (s *Shard) Leader() (id, addr string) {
	a, i := s.r.LeaderWithID()
	return string(i), string(a)
}

// Term is the replica's current raft term.
func (s *Shard) Term() uint64 { return s.r.CurrentTerm() }

// AppliedIndex is the index of the last log entry applied to the state.
func (s *Shard) AppliedIndex() uint64 { return s.sm.applied.Load() }

// Stats returns the number of live counters and remembered idempotency keys.
func (s *Shard) Stats() (counters, keys int) { return s.sm.stats() }

// Voters returns the ids and addresses of the shard's voters.
func (s *Shard) Voters() (map[string]string, error) {
	f := s.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			out[string(srv.ID)] = string(srv.Address)
		}
	}
	return out, nil
}

// TransferLeadership hands leadership to the given voter and waits.
func (s *Shard) TransferLeadership(id, addr string) error {
	if id == "" {
		return s.r.LeadershipTransfer().Error()
	}
	return s.r.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error()
}

func (s *Shard) notLeader() error {
	id, addr := s.Leader()
	return &NotLeaderError{Shard: s.id, LeaderID: id, LeaderAddr: addr}
}

// watchLeadership reacts to leadership changes. On gaining leadership it
// commits an empty entry (the term marker): once that is applied, this
// leader's commit index covers everything earlier leaders committed, and
// linearizable reads may start.
func (s *Shard) watchLeadership() {
	defer s.wg.Done()
	ch := s.r.LeaderCh()
	for {
		select {
		case <-s.stop:
			return
		case leader := <-ch:
			if leader {
				s.markTerm()
			} else {
				s.readyTerm.Store(0)
			}
			s.log.Info("leadership changed", "leader", leader, "term", s.r.CurrentTerm())
			if s.cfg.OnLeaderChange != nil {
				s.cfg.OnLeaderChange(leader)
			}
		}
	}
}

func (s *Shard) markTerm() {
	backoff := 100 * time.Millisecond
	for {
		term := s.r.CurrentTerm()
		if s.r.State() != raft.Leader {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.prop.propose(ctx, nil)
		cancel()
		if err == nil {
			if s.r.CurrentTerm() == term && s.r.State() == raft.Leader {
				s.readyTerm.Store(term)
			}
			return
		}
		if _, ok := IsNotLeader(err); ok || errors.Is(err, ErrClosed) {
			return
		}
		// Without the marker this leader serves no linearizable read, so
		// keep trying for as long as it leads.
		s.log.Warn("term marker not committed yet; retrying", "err", err)
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// reclaimExpired makes an idle shard forget expired counters: expiry is
// judged by the time carried in log entries, so when the earliest expiry
// has passed and no write came since, the leader commits an empty entry.
func (s *Shard) reclaimExpired() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		// Keys too: while a node's key tables are full, keyed writes are
		// refused before they make entries, and only an entry lets their
		// keys expire.
		next := s.sm.nextExpiry()
		if next == 0 || next > time.Now().UnixNano() || !s.IsLeader() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.prop.propose(ctx, nil)
		cancel()
		if err != nil {
			s.log.Debug("reclaiming expired counters", "err", err)
		}
	}
}

// Ready reports whether the shard has a known leader (from this replica's
// view), which is what readiness needs.
func (s *Shard) Ready() bool {
	id, _ := s.Leader()
	return id != ""
}

// Close stops the replica: pending proposals fail, raft shuts down, stores
// close. It does not transfer leadership; call TransferLeadership first
// for a graceful stop.
// snapshotForBytes takes a snapshot, in the background, once the state
// machine has applied Config.SnapshotBytes of log since the last one. Raft
// then compacts the log behind it as after any snapshot.
// SnapshotIfBehind takes a snapshot now if at least min bytes of log were
// applied since the last one, so that a restart restores it instead of
// replaying them. A node calls it on its way down.
func (s *Shard) SnapshotIfBehind(min uint64) error {
	if s.sm.sinceSnap.Load() < min {
		return nil
	}
	err := s.r.Snapshot().Error()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return err
}

func (s *Shard) snapshotForBytes() {
	if !s.snapping.CompareAndSwap(false, true) {
		return // one is running
	}
	select {
	case <-s.stop:
		s.snapping.Store(false)
		return
	default:
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.snapping.Store(false)
		err := s.r.Snapshot().Error()
		if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) && !errors.Is(err, raft.ErrRaftShutdown) {
			s.log.Warn("snapshot for log bytes failed", "err", err)
		}
	}()
}

// trailFor sets how many entries the snapshot being taken leaves behind:
// Config.TrailingBytes worth at avg bytes an entry, between 1 and
// Config.TrailingLogs. Raft reads it when it truncates the log after the
// snapshot.
func (s *Shard) trailFor(avg uint64) {
	n := s.cfg.TrailingLogs
	if avg > 0 {
		n = min(n, max(uint64(s.cfg.TrailingBytes)/avg, 1))
	}
	rc := s.r.ReloadableConfig()
	if rc.TrailingLogs == n {
		return
	}
	rc.TrailingLogs = n
	if err := s.r.ReloadConfig(rc); err != nil {
		s.log.Warn("setting the trailing logs", "err", err)
	}
}

func (s *Shard) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.stop)
		s.prop.close()
		s.rd.close()
		err = s.r.Shutdown().Error()
		s.wg.Wait()
		if cerr := closeTransport(s.trans); err == nil {
			err = cerr
		}
		if s.store != nil {
			if cerr := s.store.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// closeTransport closes t if it can be closed.
func closeTransport(t raft.Transport) error {
	if c, ok := t.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}
