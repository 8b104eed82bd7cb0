package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/anishathalye/porcupine"

	"tally/client"
	"tally/placement"
)

// Config is one chaos campaign: rounds of workload plus faults, each
// round healed, settled and checked on its own counters.
type Config struct {
	// A managed cluster (Bin set) or an attached one (Addrs set).
	Bin               string
	Addrs             []string
	Nodes             int
	Shards            int
	SnapshotThreshold uint64
	TallydArgs        []string // extra flags for every started tallyd
	// LazyFS is the tally-lazyfs binary power-loss faults need (default:
	// next to Bin, else on PATH). Where it, FUSE or mounting is missing,
	// power-loss faults are skipped (Summary.Skipped says why) and the
	// other faults run.
	LazyFS string
	// FakeFsync (testing the campaign itself): once the cluster is up,
	// lazyfs answers fsyncs of files whose base name matches this glob
	// without persisting them ("*.log": pebble's WAL), so a power loss
	// must show acknowledged writes lost.
	FakeFsync string

	Dir  string // run directory: node data and logs, failing rounds' evidence
	Keep bool   // keep Dir even when every check passed

	Faults         []string      // kinds, cycled through (see AllFaults)
	Duration       time.Duration // campaign length; rounds keep starting until it has passed
	MinFaults      int           // ... and until at least this many faults were injected
	FaultsPerRound int
	Clients        int
	// RESPClients of the Clients send their increments (TALLY.INCRBY
	// with an IDEMPOTENCY id) and reads (GET) over the Redis protocol, to
	// a random node's RESP port, instead of over HTTP. 0: a quarter of
	// them, at least one; negative: none. An attached cluster's RESP ports
	// are not known: there every client speaks HTTP.
	RESPClients  int
	Rate         int // ops/s over all clients
	Hot, Cold    int // counters per round
	CheckTimeout time.Duration

	Log io.Writer // progress lines; nil: none
}

func (c *Config) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 3
	}
	if c.Shards == 0 && len(c.Addrs) == 0 {
		c.Shards = 4
	}
	if len(c.Faults) == 0 {
		c.Faults = AllFaults
	}
	if c.FaultsPerRound == 0 {
		c.FaultsPerRound = 10
	}
	if c.Clients == 0 {
		c.Clients = 8
	}
	switch {
	case c.RESPClients == 0:
		c.RESPClients = max(1, c.Clients/4)
	case c.RESPClients < 0:
		c.RESPClients = 0
	}
	c.RESPClients = min(c.RESPClients, c.Clients)
	if c.Rate == 0 {
		c.Rate = 200
	}
	if c.Hot == 0 {
		c.Hot = 2
	}
	if c.Cold == 0 {
		c.Cold = 40
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = time.Minute
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
}

// Summary is the campaign's outcome.
type Summary struct {
	Rounds    int           `json:"rounds"`
	Faults    []FaultRecord `json:"faults"`
	Attempted int           `json:"attempted"` // writes sent (acked + unknown + failed)
	Acked     int           `json:"acked"`
	Resolved  int           `json:"resolved"`
	// The RESP clients' share: writes sent, acknowledged (settled ones
	// included), settled by a keyed RESP retry; linearizable reads.
	RESPAttempted int `json:"resp_attempted"`
	RESPAcked     int `json:"resp_acked"`
	RESPResolved  int `json:"resp_resolved"`
	RESPReads     int `json:"resp_reads"`
	Unknown       int `json:"unknown"`
	// UnsettledChecked counts unknown writes also checked as unknown (in
	// the history before settling: may have happened or not).
	UnsettledChecked int   `json:"unsettled_checked"`
	Failed           int   `json:"failed"`    // writes and reads that definitely did not happen
	KeysFull         int   `json:"keys_full"` // of the failed writes, those refused because a node's key table was full
	Reads            int   `json:"reads"`
	Lost             int64 `json:"lost"`
	Duplicated       int64 `json:"duplicated"`
	Backwards        int   `json:"backwards"`
	Linearizable     bool  `json:"linearizable"`
	ReplicasAgree    bool  `json:"replicas_agree"`
	// FeedAgrees: a changefeed consumer that followed the whole campaign
	// held exactly the final values after every round; FeedResyncs is how
	// often its cursor expired and it reloaded from a dump.
	FeedAgrees  bool                       `json:"feed_agrees"`
	FeedResyncs int                        `json:"feed_resyncs"`
	Problems    []string                   `json:"problems,omitempty"`
	Dir         string                     `json:"dir"`
	Elapsed     time.Duration              `json:"elapsed_ns"`
	Failover    map[string][]time.Duration `json:"failover_ns"`
	Skipped     map[string]string          `json:"skipped,omitempty"` // fault kind -> why it could not be injected
}

// OK reports whether the campaign passed every check.
func (s *Summary) OK() bool { return len(s.Problems) == 0 }

// Run runs a campaign. The error is for a campaign that could not run;
// failed checks are in the Summary (and their evidence in its Dir).
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	cfg.defaults()
	if err := validKinds(cfg.Faults); err != nil {
		return nil, err
	}
	// Every fault takes one node away; the rest must still be a majority.
	if n := max(cfg.Nodes, len(cfg.Addrs)); (len(cfg.Addrs) == 0 && cfg.Nodes < 3) || (len(cfg.Addrs) > 0 && len(cfg.Addrs) < 3) {
		return nil, fmt.Errorf("a chaos campaign needs at least 3 nodes (one address per node with --attach), not %d", n)
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "tally-chaos-")
		if err != nil {
			return nil, err
		}
		cfg.Dir = d
	} else if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	sum := &Summary{Dir: cfg.Dir, Linearizable: true, ReplicasAgree: true, FeedAgrees: true, Failover: map[string][]time.Duration{}}
	start := time.Now()
	logf := func(format string, a ...any) {
		fmt.Fprintf(cfg.Log, "%6.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	// Power losses need the nodes' data on lazyfs; without it they are
	// skipped, loudly, and the other faults still run.
	skip := func(kind string, why error) error {
		logf("%s faults SKIPPED: %v", kind, why)
		if sum.Skipped == nil {
			sum.Skipped = map[string]string{}
		}
		sum.Skipped[kind] = why.Error()
		cfg.Faults = slices.DeleteFunc(slices.Clone(cfg.Faults), func(k string) bool { return k == kind })
		if len(cfg.Faults) == 0 {
			return fmt.Errorf("no fault kinds left to inject: %s skipped: %w", kind, why)
		}
		return nil
	}
	lazyBin := ""
	if slices.Contains(cfg.Faults, PowerLoss) {
		var why error
		if len(cfg.Addrs) > 0 {
			why = errNotManaged
		} else {
			lazyBin, why = findLazyFS(cfg.LazyFS, cfg.Bin)
		}
		if why != nil {
			if err := skip(PowerLoss, why); err != nil {
				return nil, err
			}
		}
	}

	var c *Cluster
	var err error
	if len(cfg.Addrs) > 0 {
		c, err = Attach(ctx, cfg.Addrs, cfg.Shards)
	} else {
		ccfg := ClusterConfig{Bin: cfg.Bin, Dir: cfg.Dir, Nodes: cfg.Nodes, Shards: cfg.Shards, SnapshotThreshold: cfg.SnapshotThreshold, ExtraArgs: cfg.TallydArgs, LazyFS: lazyBin}
		where := ""
		if lazyBin != "" {
			where = ", data dirs on lazyfs"
		}
		logf("starting %d tallyd nodes, %d shards, in %s%s", cfg.Nodes, cfg.Shards, cfg.Dir, where)
		c, err = StartCluster(ctx, ccfg)
		var lerr *LazyFSError
		if errors.As(err, &lerr) {
			if err := skip(PowerLoss, lerr); err != nil {
				return nil, err
			}
			ccfg.LazyFS = ""
			c, err = StartCluster(ctx, ccfg)
		}
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if cfg.RESPClients > 0 && c.RESPAddrs() == nil {
		logf("the nodes' RESP addresses are not known (attached cluster): all %d clients speak HTTP", cfg.Clients)
		cfg.RESPClients = 0
	}
	if cfg.FakeFsync != "" {
		if !c.OnLazyFS() {
			return nil, &LazyFSError{fmt.Errorf("fake fsync needs the nodes on lazyfs, and power-loss faults were skipped: %s", sum.Skipped[PowerLoss])}
		}
		if _, err := c.lazy.command(ctx, "fake-fsync "+cfg.FakeFsync); err != nil {
			return nil, err
		}
		logf("TESTING: lazyfs now fakes the fsyncs of files matching %q; power losses must lose acknowledged writes", cfg.FakeFsync)
	}

	feed := followFeed(ctx, c.Addrs())
	defer func() { sum.FeedResyncs = feed.stop() }()
	prefix := fmt.Sprintf("chaos:%d", time.Now().UnixNano())
	faultNo := 0
	over := func() bool { return time.Since(start) >= cfg.Duration && faultNo >= cfg.MinFaults }
	for round := 1; ctx.Err() == nil && !over(); round++ {
		if err := runRound(ctx, cfg, c, feed, fmt.Sprintf("%s:r%d", prefix, round), round, &faultNo, over, sum, logf); err != nil {
			sum.Problems = append(sum.Problems, fmt.Sprintf("round %d: %v", round, err))
			break
		}
		sum.Rounds = round
		if !sum.OK() {
			break // keep the evidence of the first failing round
		}
	}
	sum.Elapsed = time.Since(start)
	if sum.OK() && !cfg.Keep {
		// An attached cluster is left running; its dir holds only evidence.
		if err := c.Close(); err != nil {
			logf("closing the cluster: %v", err)
		} else {
			os.RemoveAll(cfg.Dir)
		}
	}
	return sum, nil
}

// hotCounters names n counters that share the busy shard (the home of
// the first), so faults on that shard's leader hit every hot counter.
func hotCounters(prefix string, n, shards int) ([]string, int) {
	busy := int(placement.Home(prefix+":hot-0", shards))
	var out []string
	for i := 0; len(out) < n; i++ {
		name := fmt.Sprintf("%s:hot-%d", prefix, i)
		if int(placement.Home(name, shards)) == busy {
			out = append(out, name)
		}
	}
	return out, busy
}

// splitCounter names a counter whose home is the busy shard, to be split.
func splitCounter(prefix string, busy, shards int) string {
	if shards < 2 {
		return ""
	}
	for i := 0; ; i++ {
		if name := fmt.Sprintf("%s:split-%d", prefix, i); int(placement.Home(name, shards)) == busy {
			return name
		}
	}
}

// over reports whether the campaign may end (its duration has passed and
// it has injected the faults it must).
func runRound(ctx context.Context, cfg Config, c *Cluster, feed *feedCopy, prefix string, round int, faultNo *int, over func() bool, sum *Summary, logf func(string, ...any)) error {
	hot, busy := hotCounters(prefix, cfg.Hot, c.Shards)
	w := NewWorkload(prefix, hot, cfg.Cold, cfg.Clients, cfg.Rate)
	if cfg.RESPClients > 0 {
		w.RESP, w.RESPClients = c.RESPAddrs(), cfg.RESPClients
	}
	// One more counter is split over shards, starting with the busy one,
	// so faults hit its sub-counters too. It gets a cold counter's share
	// of the ops: its adds answer a sub-counter's value, which does not
	// pin down their order, and porcupine's search over many concurrent
	// such adds grows too fast for a hot counter's history.
	if split := splitCounter(prefix, busy, c.Shards); split != "" {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		_, err := client.New(c.Addrs(), client.WithRetryDeadline(time.Minute)).Split(sctx, split, min(3, c.Shards))
		cancel()
		if err != nil {
			return fmt.Errorf("splitting %s: %w", split, err)
		}
		w.Cold = append(w.Cold, split)
		w.Up[split], w.Unit[split] = true, true
	}
	h := NewHistory()
	nm := newNemesis(c, busy, cfg.SnapshotThreshold, logf)
	w.Start(c.Addrs(), h)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			w.Stop()
		}
	}
	defer stop()

	var roundErr error
	for i := 0; i < cfg.FaultsPerRound && ctx.Err() == nil; i++ {
		if i > 0 && over() {
			break
		}
		// Each fault starts on a working cluster: wait for fresh acks.
		if err := waitAcks(ctx, w, 50, 2*time.Minute); err != nil {
			roundErr = err
			break
		}
		kind := schedule(cfg.Faults, *faultNo)
		*faultNo++
		acked := w.Acks()
		rec := nm.inject(ctx, kind)
		if kind == PowerLoss {
			if rec.Note != "" {
				rec.Note += "; "
			}
			rec.Note += fmt.Sprintf("%d writes of this round acknowledged before it", acked)
		}
		sum.Faults = append(sum.Faults, rec)
		line := fmt.Sprintf("round %d fault %d: %s on %s", round, *faultNo, kind, rec.Node)
		if rec.Recovery > 0 {
			line += fmt.Sprintf(", shard %d writes again after %v", busy, rec.Recovery.Round(time.Millisecond))
			sum.Failover[kind] = append(sum.Failover[kind], rec.Recovery)
		}
		if rec.Note != "" {
			line += " (" + rec.Note + ")"
		}
		if rec.Err != "" {
			line += ": ERROR " + rec.Err
			roundErr = fmt.Errorf("%s: %s", kind, rec.Err)
		}
		logf("%s", line)
		if roundErr != nil {
			break
		}
	}
	if err := c.Heal(ctx); err != nil && roundErr == nil {
		roundErr = err
	}
	if err := c.WaitReady(ctx, 2*time.Minute); err != nil && roundErr == nil {
		roundErr = err
	}
	if roundErr == nil {
		roundErr = waitAcks(ctx, w, 20, time.Minute) // the healed cluster serves again
	}
	stop()

	// Settle the unknown writes, then read every counter.
	unsettled, _ := h.Ops()
	left := w.Resolve(ctx)
	finals, ferr := w.FinalReads(ctx, cfg.Clients)
	ops, failed := h.Ops()
	w.MarkSplit(ops)
	w.MarkSplit(unsettled)
	rep, info := Check(ops, finals, failed, cfg.CheckTimeout)
	if ferr != nil {
		rep.Problems = append(rep.Problems, ferr.Error())
	}
	rep.Problems = append(rep.Problems, w.Problems()...)
	// The same history before the unknown writes were settled, with the
	// final reads, is valid too (a settling retry applies an unknown write
	// at most once, somewhere after its call): checking it exercises
	// unknown outcomes on real histories. Each unknown write may have
	// happened or not, so the search grows exponentially with their number
	// per counter: only counters with a few are checked this way.
	unsettled = fewUnknowns(append(unsettled, ops[len(unsettled):]...), 6)
	rep2, info2 := Check(unsettled, finals, failed, cfg.CheckTimeout)
	if !rep2.OK() {
		for _, p := range rep2.Problems {
			rep.Problems = append(rep.Problems, "with unknown writes unsettled: "+p)
		}
		if rep.Linearizable == porcupine.Ok {
			info = info2 // draw the failing one
		}
		if rep2.Linearizable != porcupine.Ok {
			rep.Linearizable = rep2.Linearizable
		}
	}
	agree, diffs := replicasAgree(ctx, c, time.Minute)
	rep.Problems = append(rep.Problems, diffs...)
	feedProbs := feed.check(finals, time.Minute)
	rep.Problems = append(rep.Problems, feedProbs...)
	if roundErr != nil {
		rep.Problems = append(rep.Problems, "fault injection: "+roundErr.Error())
	}

	ra := respTally(ops)
	sum.Attempted += rep.Adds + h.FailedWrites()
	sum.RESPAttempted += ra.adds + int(w.RESPFailedWrites())
	sum.RESPAcked += ra.acked
	sum.RESPResolved += ra.resolved
	sum.RESPReads += ra.reads
	sum.Acked += rep.Acked
	sum.Resolved += rep.Resolved
	sum.Unknown += rep.Unknown
	sum.UnsettledChecked += rep2.Unknown
	sum.Failed += rep.Failed
	sum.KeysFull += h.KeysFullWrites()
	sum.Reads += rep.Reads
	sum.Lost += rep.Lost
	sum.Duplicated += rep.Duplicated
	sum.Backwards += rep.Backwards
	sum.Linearizable = sum.Linearizable && rep.Linearizable == porcupine.Ok
	sum.ReplicasAgree = sum.ReplicasAgree && agree
	sum.FeedAgrees = sum.FeedAgrees && len(feedProbs) == 0
	logf("round %d checked: %d ops (%d acked, %d resolved by retry, %d unknown, %d reads, %d failed; over RESP %d acked, %d resolved, %d reads), linearizable %s, replicas agree %v, %d still unknown after resolve; before settling: %d counters with %d unknown writes checked, linearizable %s",
		round, len(ops), rep.Acked, rep.Resolved, rep.Unknown, rep.Reads, rep.Failed, ra.acked, ra.resolved, ra.reads, rep.Linearizable, agree, left, rep2.Counters, rep2.Unknown, rep2.Linearizable)
	if len(rep.Problems) == 0 {
		return nil
	}
	for _, p := range rep.Problems {
		sum.Problems = append(sum.Problems, fmt.Sprintf("round %d: %s", round, p))
	}
	return keepEvidence(cfg.Dir, round, ops, unsettled, rep, info)
}

// respCounts are the RESP clients' ops in a history.
type respCounts struct{ adds, acked, resolved, reads int }

func respTally(ops []Op) respCounts {
	var n respCounts
	for _, op := range ops {
		switch {
		case !op.RESP:
		case op.Kind == Read:
			n.reads++
		default:
			n.adds++
			if op.Outcome == OK {
				n.acked++
			}
			if op.Resolved {
				n.resolved++
			}
		}
	}
	return n
}

// fewUnknowns keeps the ops of the counters with at most max unknown writes.
func fewUnknowns(ops []Op, max int) []Op {
	unknown := map[string]int{}
	for _, op := range ops {
		if op.Outcome == Unknown {
			unknown[op.Counter]++
		}
	}
	var out []Op
	for _, op := range ops {
		if unknown[op.Counter] <= max {
			out = append(out, op)
		}
	}
	return out
}

func waitAcks(ctx context.Context, w *Workload, n int64, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	target := w.Acks() + n
	for w.Acks() < target {
		if pause(ctx, 10*time.Millisecond) != nil {
			return fmt.Errorf("the workload got fewer than %d writes acknowledged within %v", n, within)
		}
	}
	return nil
}

// replicasAgree waits (with a deadline) until, for every shard, every
// replica reports the same applied index, then compares their digests.
// Writes have stopped, so the indexes converge; only replicas at equal
// indexes are comparable.
func replicasAgree(ctx context.Context, c *Cluster, within time.Duration) (bool, []string) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last []string
	suspect := ""
	for {
		per := map[int][]string{} // shard -> "node@index:digest"
		idx := map[int]map[uint64]bool{}
		dig := map[int]map[string]bool{}
		err := error(nil)
		for _, n := range c.Nodes {
			reps, e := c.Replicas(ctx, n)
			if e != nil {
				err = e
				break
			}
			for s, r := range reps {
				per[s] = append(per[s], fmt.Sprintf("%s@%d:%.12s", n.ID, r.AppliedIndex, r.Digest))
				if idx[s] == nil {
					idx[s], dig[s] = map[uint64]bool{}, map[string]bool{}
				}
				idx[s][r.AppliedIndex] = true
				dig[s][r.Digest] = true
			}
		}
		if err == nil {
			last = last[:0]
			converged := true
			for s := range per {
				if len(idx[s]) > 1 {
					converged = false
					last = append(last, fmt.Sprintf("shard %d replicas did not reach one applied index: %s", s, strings.Join(per[s], " ")))
				} else if len(dig[s]) > 1 {
					last = append(last, fmt.Sprintf("shard %d replicas DIVERGED at one applied index: %s", s, strings.Join(per[s], " ")))
				}
			}
			sort.Strings(last)
			if converged && len(last) == 0 {
				return true, nil
			}
			if converged {
				// A replica publishes its applied index just after applying
				// a batch, so one read in between looks diverged: believe
				// it only when the next poll finds exactly the same.
				now := strings.Join(last, "\n")
				if now == suspect {
					return false, last
				}
				suspect = now
			}
		} else if ctx.Err() == nil || len(last) == 0 {
			// A poll cut short by the check's own deadline says nothing
			// new: report the last full observation instead.
			last = []string{"replica check: " + err.Error()}
		}
		if pause(ctx, 50*time.Millisecond) != nil {
			sort.Strings(last)
			return false, last
		}
	}
}

// keepEvidence writes a failing round's history, report and porcupine's
// picture into the run directory (the node logs are there already).
func keepEvidence(dir string, round int, ops, unsettled []Op, rep Report, info porcupine.LinearizationInfo) error {
	rd := filepath.Join(dir, fmt.Sprintf("round-%d", round))
	if err := os.MkdirAll(rd, 0o755); err != nil {
		return err
	}
	var errs []error
	if b, err := json.MarshalIndent(ops, "", " "); err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(rd, "history.json"), b, 0o644))
	}
	if b, err := json.MarshalIndent(unsettled, "", " "); err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(rd, "history-unsettled.json"), b, 0o644))
	}
	if b, err := json.MarshalIndent(rep, "", " "); err == nil {
		errs = append(errs, os.WriteFile(filepath.Join(rd, "report.json"), b, 0o644))
	}
	errs = append(errs, Visualize(info, filepath.Join(rd, "history.html")))
	return errors.Join(errs...)
}

// Table prints the campaign summary.
func (s *Summary) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	byKind := map[string]int{}
	var kinds []string
	for _, f := range s.Faults {
		if byKind[f.Kind] == 0 {
			kinds = append(kinds, f.Kind)
		}
		byKind[f.Kind]++
	}
	sort.Strings(kinds)
	fmt.Fprintf(tw, "duration\t%v (%d rounds)\n", s.Elapsed.Round(time.Second), s.Rounds)
	fmt.Fprintf(tw, "faults\t%d\n", len(s.Faults))
	for _, k := range kinds {
		fmt.Fprintf(tw, "  %s\t%d\n", k, byKind[k])
	}
	var skipped []string
	for k := range s.Skipped {
		skipped = append(skipped, k)
	}
	sort.Strings(skipped)
	for _, k := range skipped {
		fmt.Fprintf(tw, "  %s\tSKIPPED: %s\n", k, s.Skipped[k])
	}
	fmt.Fprintf(tw, "writes attempted\t%d\n", s.Attempted)
	fmt.Fprintf(tw, "writes acknowledged\t%d (%d of them settled by a keyed retry after an unknown outcome)\n", s.Acked, s.Resolved)
	fmt.Fprintf(tw, "  over RESP\t%d of %d sent (%d settled by a keyed RESP retry); %d linearizable reads\n", s.RESPAcked, s.RESPAttempted, s.RESPResolved, s.RESPReads)
	fmt.Fprintf(tw, "writes unknown\t%d (after settling; %d were also checked as unknown before)\n", s.Unknown, s.UnsettledChecked)
	fmt.Fprintf(tw, "linearizable reads\t%d\n", s.Reads)
	fmt.Fprintf(tw, "ops failed (not applied)\t%d (%d writes refused: key table full)\n", s.Failed, s.KeysFull)
	fmt.Fprintf(tw, "lost\t%d\n", s.Lost)
	fmt.Fprintf(tw, "duplicated\t%d\n", s.Duplicated)
	fmt.Fprintf(tw, "reads backwards\t%d\n", s.Backwards)
	fmt.Fprintf(tw, "linearizable\t%s\n", yesNo(s.Linearizable))
	fmt.Fprintf(tw, "replicas agree\t%s\n", yesNo(s.ReplicasAgree))
	fmt.Fprintf(tw, "changefeed copy agrees\t%s (%d reloads from a dump after an expired cursor)\n", yesNo(s.FeedAgrees), s.FeedResyncs)
	var fk []string
	for k := range s.Failover {
		fk = append(fk, k)
	}
	sort.Strings(fk)
	var all []time.Duration
	for _, k := range fk {
		med, mx := MedianMax(s.Failover[k])
		fmt.Fprintf(tw, "failover %s\tmedian %v, max %v (n=%d)\n", k, med.Round(time.Millisecond), mx.Round(time.Millisecond), len(s.Failover[k]))
		if k != RestartAll && k != PowerLoss && k != Decommission {
			all = append(all, s.Failover[k]...)
		}
	}
	if len(all) > 0 {
		med, mx := MedianMax(all)
		fmt.Fprintf(tw, "failover (leader faults)\tmedian %v, max %v (n=%d)\n", med.Round(time.Millisecond), mx.Round(time.Millisecond), len(all))
	}
	fmt.Fprintf(tw, "result\t%s\n", map[bool]string{true: "PASS", false: "FAIL (evidence in " + s.Dir + ")"}[s.OK()])
	tw.Flush()
	for _, p := range s.Problems {
		fmt.Fprintln(w, "  problem:", p)
	}
}

// MedianMax of a sample (zeros for none).
func MedianMax(d []time.Duration) (time.Duration, time.Duration) {
	if len(d) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)-1]
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
