package chaos

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ciSchedule: ten leader kills, a leader paused past the election, a
// partition, a snapshot install, a node kill and a restart of every node.
var ciSchedule = []string{
	KillLeader, KillLeader, PartitionLeader, KillLeader, KillLeader, PauseLeader, KillLeader, KillLeader,
	SnapshotInstall, KillLeader, KillLeader, RestartAll, KillLeader, KillLeader, KillNode,
}

// dedupCap is the campaign nodes' --dedup-max-keys.
const dedupCap = 1000

// TestChaosCampaign is the short campaign CI runs: real tallyd processes
// (built here without the race detector), the faults above over two
// rounds, clients over HTTP and over RESP, and every check. Failover times are logged, not asserted: this
// machine is shared.
func TestChaosCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level chaos campaign")
	}
	sum := campaign(t, Config{
		Faults: ciSchedule, MinFaults: len(ciSchedule), FaultsPerRound: 8,
		// A key table the second round fills (a round sends about 650
		// keyed writes): keys past the cap are refused, and must not
		// count, until the first round's keys expire. Every keyed retry
		// (by the client, or settling an unknown write after its round)
		// comes well within the 30 s window.
		TallydArgs: []string{"--dedup-max-keys", strconv.Itoa(dedupCap), "--dedup-ttl", "30s"},
	})
	kinds := map[string]int{}
	for _, f := range sum.Faults {
		kinds[f.Kind]++
	}
	if kinds[KillLeader] < 10 || kinds[PartitionLeader] < 1 || kinds[RestartAll] < 1 {
		t.Fatalf("faults injected: %v", kinds)
	}
	if sum.Acked == 0 || sum.Reads == 0 || sum.Lost != 0 || sum.Duplicated != 0 || !sum.Linearizable || !sum.ReplicasAgree || !sum.FeedAgrees {
		t.Fatalf("summary does not add up: %+v", sum)
	}
	if sum.KeysFull == 0 {
		t.Fatalf("no write refused for a full key table: the cap of %d was never reached", dedupCap)
	}
	// Two of the six clients spoke RESP: their writes and reads were in
	// the checked histories.
	if sum.RESPAcked == 0 || sum.RESPReads == 0 || sum.RESPAcked >= sum.Acked {
		t.Fatalf("RESP clients: %d writes acknowledged of %d sent, %d reads; want some of the %d acknowledged", sum.RESPAcked, sum.RESPAttempted, sum.RESPReads, sum.Acked)
	}
}

// TestChaosMembership is the campaign of membership faults: nodes are
// replaced (killed, removed, a new one started on their ports) and the
// busy shard's leader decommissioned (a new node added first) between
// leader kills, with clients over HTTP and RESP and every check. Keys are
// remembered for tallyd's default window, longer than the round: a
// keyed retry after its window may count twice, as documented, and the
// settling retries of a round with membership faults come later than a
// short window.
func TestChaosMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level chaos campaign")
	}
	schedule := []string{KillLeader, Replace, KillLeader, Decommission, KillLeader, Replace, Decommission, KillLeader}
	sum := campaign(t, Config{Faults: schedule, MinFaults: len(schedule), FaultsPerRound: 4})
	kinds := map[string]int{}
	for _, f := range sum.Faults {
		if f.Err != "" {
			t.Fatalf("fault %s on %s failed: %s", f.Kind, f.Node, f.Err)
		}
		kinds[f.Kind]++
	}
	if kinds[Replace] < 2 || kinds[Decommission] < 2 {
		t.Fatalf("faults injected: %v", kinds)
	}
	if sum.Acked == 0 || sum.Lost != 0 || sum.Duplicated != 0 || !sum.Linearizable || !sum.ReplicasAgree || !sum.FeedAgrees {
		t.Fatalf("summary does not add up: %+v", sum)
	}
}

// campaign runs cfg on a fresh 3-node, 4-shard cluster of tallyd built
// here (six clients, two of them over RESP, 150 writes/s), logs its
// progress and summary, and fails the test unless it passed.
func campaign(t *testing.T, cfg Config) *Summary {
	t.Helper()
	cfg.Bin = build(t, "tallyd")
	cfg.Nodes, cfg.Shards, cfg.SnapshotThreshold = 3, 4, 64
	cfg.Clients, cfg.RESPClients, cfg.Rate = 6, 2, 150
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var log strings.Builder
	cfg.Log = &log
	sum, err := Run(ctx, cfg)
	t.Logf("campaign log:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	sum.Table(&table)
	t.Logf("summary:\n%s", table.String())
	if !sum.OK() {
		t.Fatalf("chaos campaign failed; evidence kept in %s", sum.Dir)
	}
	return sum
}

// build builds the commands into one temp dir (so the campaign finds
// tally-lazyfs next to tallyd), without the race detector, and returns
// the first one's path.
func build(t *testing.T, cmds ...string) string {
	t.Helper()
	dir := t.TempDir()
	_, file, _, _ := runtime.Caller(0)
	for _, c := range cmds {
		b := exec.Command("go", "build", "-o", filepath.Join(dir, c), "./cmd/"+c)
		b.Dir = filepath.Dir(filepath.Dir(file))
		if out, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	return filepath.Join(dir, cmds[0])
}

// powerLossCampaign runs a short campaign with the given faults on
// lazyfs, skipping the test where lazyfs cannot be mounted.
func powerLossCampaign(t *testing.T, bin string, cfg Config) *Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var log strings.Builder
	cfg.Bin, cfg.Nodes, cfg.Shards, cfg.SnapshotThreshold = bin, 3, 4, 64
	cfg.MinFaults, cfg.FaultsPerRound = len(cfg.Faults), len(cfg.Faults)
	cfg.Clients, cfg.Rate, cfg.Log = 6, 150, &log
	sum, err := Run(ctx, cfg)
	t.Logf("campaign log:\n%s", log.String())
	var lerr *LazyFSError
	if errors.As(err, &lerr) {
		t.Skipf("power-loss faults need lazyfs: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	sum.Table(&table)
	t.Logf("summary:\n%s", table.String())
	if why := sum.Skipped[PowerLoss]; why != "" {
		t.Skipf("power-loss faults were skipped: %s", why)
	}
	return sum
}

// TestChaosPowerLoss: every acknowledged increment survives power losses
// (every node SIGKILLed, every write it did not fsync dropped, all
// restarted), by every check of the campaign; and the campaign does
// catch a node that acknowledges writes it has not made durable.
func TestChaosPowerLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level chaos campaign")
	}
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("power-loss faults need FUSE: %v", err)
	} else {
		f.Close()
	}
	bin := build(t, "tallyd", LazyFSBin)

	t.Run("acknowledged-increments-survive", func(t *testing.T) {
		sum := powerLossCampaign(t, bin, Config{Faults: []string{PowerLoss, KillLeader, PowerLoss}})
		if !sum.OK() {
			t.Fatalf("chaos campaign with power losses failed; evidence kept in %s", sum.Dir)
		}
		n := 0
		for _, f := range sum.Faults {
			if f.Kind == PowerLoss {
				n++
			}
		}
		if n != 2 {
			t.Fatalf("%d power losses injected, want 2: %+v", n, sum.Faults)
		}
		if sum.Acked == 0 || sum.Reads == 0 || sum.Lost != 0 || sum.Duplicated != 0 || !sum.Linearizable || !sum.ReplicasAgree || !sum.FeedAgrees {
			t.Fatalf("summary does not add up: %+v", sum)
		}
	})

	// With lazyfs faking the fsyncs of pebble's WAL (answered, nothing
	// persisted) from when the cluster is up, one power loss must be
	// reported as acknowledged increments lost.
	t.Run("missing-fsync-is-caught", func(t *testing.T) {
		sum := powerLossCampaign(t, bin, Config{Faults: []string{PowerLoss}, FakeFsync: "*.log", Dir: t.TempDir()})
		if sum.OK() || sum.Lost == 0 {
			t.Fatalf("with the WAL's fsyncs faked the campaign must report lost increments: %+v", sum)
		}
	})
}
