package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"tally/placement"
)

// Fault kinds.
const (
	KillLeader      = "kill-leader"      // SIGKILL the leader of the busy shard, restart it
	KillNode        = "kill-node"        // SIGKILL a random node, restart it
	RestartAll      = "restart-all"      // SIGKILL every node, restart them all
	PauseLeader     = "pause-leader"     // SIGSTOP the busy shard's leader until another is elected, then SIGCONT
	PartitionLeader = "partition-leader" // cut the busy shard's leader off from the others, then heal
	SnapshotInstall = "snapshot-install" // SIGKILL a follower until the leader's log is compacted past it, restart it
	// PowerLoss SIGKILLs every node, drops every write they did not fsync
	// (their data dirs are on lazyfs), and restarts them all. Where FUSE
	// is unavailable it is skipped, with a message.
	PowerLoss = "power-loss"
)

// AllFaults lists every kind, in the order a mixed schedule uses them.
var AllFaults = []string{KillLeader, KillNode, PauseLeader, KillLeader, PartitionLeader, KillLeader, SnapshotInstall, KillLeader, RestartAll, KillLeader, PowerLoss, Replace, KillLeader, Decommission}

// FaultRecord is one injected fault.
type FaultRecord struct {
	Kind  string `json:"kind"`
	Node  string `json:"node"`
	Shard int    `json:"shard"`
	// Recovery is the time from the fault until the busy shard acknowledged
	// a write again (0: not measured).
	Recovery time.Duration `json:"recovery_ns"`
	Note     string        `json:"note,omitempty"`
	Err      string        `json:"error,omitempty"`
}

// nemesis injects faults into a cluster; the busy shard is the one the
// hot counters live on.
type nemesis struct {
	c         *Cluster
	busy      int
	probe     string // a counter on the busy shard, outside the history
	threshold uint64 // the nodes' snapshot threshold (snapshot-install)
	rng       *rand.Rand
	hc        *http.Client
	logf      func(format string, a ...any)
}

func newNemesis(c *Cluster, busy int, threshold uint64, logf func(string, ...any)) *nemesis {
	probe := ""
	for i := 0; probe == ""; i++ {
		if n := fmt.Sprintf("chaos:probe-%d", i); int(placement.Home(n, c.Shards)) == busy {
			probe = n
		}
	}
	return &nemesis{c: c, busy: busy, probe: probe, threshold: threshold,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		hc:  &http.Client{}, logf: logf}
}

// inject runs one fault to the end: the cluster is whole again (every
// node running and ready, no partition) when it returns without error.
func (nm *nemesis) inject(ctx context.Context, kind string) FaultRecord {
	rec := FaultRecord{Kind: kind, Shard: nm.busy}
	var err error
	switch kind {
	case KillLeader:
		err = nm.killLeader(ctx, &rec)
	case KillNode:
		err = nm.killNode(ctx, &rec)
	case RestartAll:
		err = nm.restartAll(ctx, &rec)
	case PauseLeader:
		err = nm.pauseLeader(ctx, &rec)
	case PartitionLeader:
		err = nm.partitionLeader(ctx, &rec)
	case SnapshotInstall:
		err = nm.snapshotInstall(ctx, &rec)
	case PowerLoss:
		err = nm.powerLoss(ctx, &rec)
	case Replace:
		err = nm.replace(ctx, &rec)
	case Decommission:
		err = nm.decommission(ctx, &rec)
	default:
		err = fmt.Errorf("unknown fault %q", kind)
	}
	if err != nil {
		rec.Err = err.Error()
	}
	return rec
}

// leader finds the busy shard's leader, waiting for one to be known.
func (nm *nemesis) leader(ctx context.Context) (*Node, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if id := nm.c.Leader(ctx, nm.busy, ""); id != "" {
			if n := nm.c.Node(id); n != nil {
				return n, nil
			}
		}
		if pause(ctx, 20*time.Millisecond) != nil {
			return nil, fmt.Errorf("shard %d has no leader", nm.busy)
		}
	}
}

// firstWrite sends single keyed increments of the probe counter to the
// nodes other than skip, a new attempt every 10 ms, each with its own
// timeout and all in flight together (so one stuck on a dead leader does
// not hide a new leader), and returns the time from "from" until the
// first is acknowledged.
func (nm *nemesis) firstWrite(ctx context.Context, skip *Node, from time.Time) (time.Duration, error) {
	var live []string
	for _, n := range nm.c.Nodes {
		if n != skip {
			live = append(live, n.HTTP)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel() // ends the attempts still in flight
	acked := make(chan time.Duration, 1)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		go func(addr, key string) {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			defer acancel()
			req, _ := http.NewRequestWithContext(actx, http.MethodPost, "http://"+addr+"/v1/counters/"+url.PathEscape(nm.probe)+"/incr", nil)
			req.Header.Set("Idempotency-Key", key)
			resp, err := nm.hc.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				select {
				case acked <- time.Since(from):
				default:
				}
			}
		}(live[i%len(live)], fmt.Sprintf("probe-%d-%d", from.UnixNano(), i))
		select {
		case d := <-acked:
			return d, nil
		case <-ctx.Done():
			return 0, fmt.Errorf("no write on shard %d acknowledged within 60s", nm.busy)
		case <-tick.C:
		}
	}
}

func (nm *nemesis) restart(ctx context.Context, nodes ...*Node) error {
	for _, n := range nodes {
		if err := nm.c.Start(n); err != nil {
			return err
		}
	}
	return nm.c.WaitReady(ctx, 2*time.Minute)
}

func (nm *nemesis) killLeader(ctx context.Context, rec *FaultRecord) error {
	l, err := nm.leader(ctx)
	if err != nil {
		return err
	}
	rec.Node = l.ID
	at := time.Now()
	if err := nm.c.Kill(l); err != nil {
		return err
	}
	rec.Recovery, err = nm.firstWrite(ctx, l, at)
	if err != nil {
		return err
	}
	return nm.restart(ctx, l)
}

func (nm *nemesis) killNode(ctx context.Context, rec *FaultRecord) error {
	n := nm.c.Nodes[nm.rng.IntN(len(nm.c.Nodes))]
	rec.Node = n.ID
	if err := nm.c.Kill(n); err != nil {
		return err
	}
	return nm.restart(ctx, n)
}

func (nm *nemesis) restartAll(ctx context.Context, rec *FaultRecord) error {
	rec.Node = "all"
	at := time.Now()
	for _, n := range nm.c.Nodes {
		if err := nm.c.Kill(n); err != nil {
			return err
		}
	}
	if err := nm.restart(ctx, nm.c.Nodes...); err != nil {
		return err
	}
	var err error
	rec.Recovery, err = nm.firstWrite(ctx, nil, at)
	rec.Note = "recovery includes process start"
	return err
}

// powerLoss is restartAll with the unsynced writes lost in between: a
// SIGKILL alone leaves them in the page cache (here, in lazyfs' memory),
// so only this fault tests that a node fsyncs what it acknowledges.
func (nm *nemesis) powerLoss(ctx context.Context, rec *FaultRecord) error {
	if !nm.c.OnLazyFS() {
		return fmt.Errorf("needs the nodes' data dirs on lazyfs")
	}
	rec.Node = "all"
	at := time.Now()
	for _, n := range nm.c.Nodes {
		if err := nm.c.Kill(n); err != nil {
			return err
		}
	}
	// Every node is dead (Kill waits for the exit, and the kernel answers
	// a dying process's pending writes first), so nothing is in flight.
	files, bytes, err := nm.c.PowerLoss(ctx)
	if err != nil {
		nm.restart(ctx, nm.c.Nodes...)
		return err
	}
	if err := nm.restart(ctx, nm.c.Nodes...); err != nil {
		return err
	}
	rec.Recovery, err = nm.firstWrite(ctx, nil, at)
	rec.Note = fmt.Sprintf("dropped %d unsynced bytes of %d files; recovery includes process start", bytes, files)
	return err
}

// pauseLeader stops the leader until the others have elected a new one
// (so it was stopped past the election timeout), then continues it: it
// comes back believing it leads, and must step down without harm.
func (nm *nemesis) pauseLeader(ctx context.Context, rec *FaultRecord) error {
	l, err := nm.leader(ctx)
	if err != nil {
		return err
	}
	rec.Node = l.ID
	at := time.Now()
	if err := nm.c.Pause(l); err != nil {
		return err
	}
	defer nm.c.Resume(l) // also on the error paths: never leave a stopped process
	rec.Recovery, err = nm.firstWrite(ctx, l, at)
	if err != nil {
		return err
	}
	if err := nm.newLeader(ctx, l); err != nil {
		return err
	}
	if err := nm.c.Resume(l); err != nil {
		return err
	}
	return nm.c.WaitReady(ctx, 2*time.Minute)
}

// newLeader waits until a node other than old reports another leader.
func (nm *nemesis) newLeader(ctx context.Context, old *Node) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if id := nm.c.Leader(ctx, nm.busy, old.ID); id != "" && id != old.ID {
			return nil
		}
		if pause(ctx, 20*time.Millisecond) != nil {
			return fmt.Errorf("no new leader for shard %d within 60s of cutting off %s", nm.busy, old.ID)
		}
	}
}

// partitionLeader cuts the leader off from the majority (its transport
// refuses their raft and forwarding traffic both ways) until the majority
// has a new leader accepting writes, then heals.
func (nm *nemesis) partitionLeader(ctx context.Context, rec *FaultRecord) error {
	l, err := nm.leader(ctx)
	if err != nil {
		return err
	}
	rec.Node = l.ID
	at := time.Now()
	if err := nm.c.Partition(ctx, l); err != nil {
		return err
	}
	rec.Recovery, err = nm.firstWrite(ctx, l, at)
	if err == nil {
		err = nm.newLeader(ctx, l)
	}
	if herr := nm.c.Heal(context.WithoutCancel(ctx)); err == nil {
		err = herr
	}
	if err != nil {
		return err
	}
	return nm.c.WaitReady(ctx, 2*time.Minute)
}

// snapshotInstall kills a follower of the busy shard and keeps it down
// until the leader has taken a snapshot that compacted away the log the
// follower would need (the nodes run with a small --snapshot-threshold,
// which also keeps a log tail of half of it), then restarts it: it can
// only catch up by installing the leader's snapshot.
func (nm *nemesis) snapshotInstall(ctx context.Context, rec *FaultRecord) error {
	if nm.threshold == 0 || nm.threshold >= 1024 {
		return fmt.Errorf("needs the nodes started with --snapshot-threshold under 1024")
	}
	l, err := nm.leader(ctx)
	if err != nil {
		return err
	}
	var f *Node
	for _, n := range nm.c.Nodes {
		if n != l {
			f = n
			break
		}
	}
	if f == nil {
		return fmt.Errorf("no follower to lag")
	}
	rec.Node = f.ID
	reps, err := nm.c.Replicas(ctx, f)
	if err != nil {
		return err
	}
	lag := reps[nm.busy].AppliedIndex
	before := installs(f, nm.busy)
	if err := nm.c.Kill(f); err != nil {
		return err
	}
	// Wait (with a deadline) for a snapshot past lag + the kept tail; the
	// workload keeps writing to the busy shard meanwhile.
	need := lag + nm.threshold/2 + 1
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var snap uint64
	for {
		if l, err := nm.leader(wctx); err == nil {
			if reps, err := nm.c.Replicas(wctx, l); err == nil {
				snap = reps[nm.busy].SnapshotIndex
			}
		}
		if snap > need {
			break
		}
		if pause(wctx, 100*time.Millisecond) != nil {
			nm.restart(ctx, f)
			return fmt.Errorf("leader's snapshot reached %d, not past %d, within 2m (is the workload writing?)", snap, need)
		}
	}
	if err := nm.restart(ctx, f); err != nil {
		return err
	}
	// The follower must catch up past the snapshot.
	for {
		if reps, err := nm.c.Replicas(wctx, f); err == nil && reps[nm.busy].AppliedIndex >= snap {
			break
		}
		if pause(wctx, 50*time.Millisecond) != nil {
			return fmt.Errorf("%s did not catch up to the snapshot at %d", f.ID, snap)
		}
	}
	rec.Note = fmt.Sprintf("down at index %d, leader snapshot at %d", lag, snap)
	// Informational: raft's log line is the evidence, the catch-up above
	// is the requirement.
	if installs(f, nm.busy) > before {
		rec.Note += ", snapshot installed"
	}
	return nil
}

// installs counts the "Installed remote snapshot" lines raft logged for
// shard s in n's log (which spans its restarts).
func installs(n *Node, s int) int {
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		return 0
	}
	tag := fmt.Sprintf(`"shard":%d,`, s)
	count := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Installed remote snapshot") && strings.Contains(line, tag) {
			count++
		}
	}
	return count
}

// schedule returns the fault kinds for a run: the given list, cycled.
func schedule(kinds []string, i int) string {
	return kinds[i%len(kinds)]
}

func validKinds(kinds []string) error {
	for _, k := range kinds {
		if !slices.Contains(AllFaults, k) {
			return fmt.Errorf("unknown fault %q (want %s)", k, strings.Join(uniq(AllFaults), ", "))
		}
	}
	return nil
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
