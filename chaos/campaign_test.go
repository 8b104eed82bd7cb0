package chaos

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
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

// TestChaosCampaign is the short campaign CI runs: real tallyd processes
// (built here without the race detector), the faults above over two
// rounds, and every check. Failover times are logged, not asserted: this
// machine is shared.
func TestChaosCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level chaos campaign")
	}
	bin := filepath.Join(t.TempDir(), "tallyd")
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "./cmd/tallyd")
	build.Dir = filepath.Dir(filepath.Dir(file))
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tallyd: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	var log strings.Builder
	sum, err := Run(ctx, Config{
		Bin: bin, Nodes: 3, Shards: 4, SnapshotThreshold: 64,
		Faults: ciSchedule, MinFaults: len(ciSchedule), FaultsPerRound: 8,
		Clients: 6, Rate: 150, Log: &log,
	})
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
	kinds := map[string]int{}
	for _, f := range sum.Faults {
		kinds[f.Kind]++
	}
	if kinds[KillLeader] < 10 || kinds[PartitionLeader] < 1 || kinds[RestartAll] < 1 {
		t.Fatalf("faults injected: %v", kinds)
	}
	if sum.Acked == 0 || sum.Reads == 0 || sum.Lost != 0 || sum.Duplicated != 0 || !sum.Linearizable || !sum.ReplicasAgree {
		t.Fatalf("summary does not add up: %+v", sum)
	}
}
