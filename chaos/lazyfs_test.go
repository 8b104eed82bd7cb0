package chaos

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPowerLossSkippedWithoutLazyFS: where lazyfs cannot be set up, the
// campaign says so, records why, and goes on with the other faults (here
// it then fails to start the bogus tallyd: the cluster was started
// without lazyfs); with no other faults it refuses to run.
func TestPowerLossSkippedWithoutLazyFS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	missing := filepath.Join(t.TempDir(), "no-such-lazyfs")

	var log strings.Builder
	_, err := Run(ctx, Config{Bin: filepath.Join(t.TempDir(), "no-such-tallyd"), LazyFS: missing,
		Faults: []string{PowerLoss, KillLeader}, Dir: t.TempDir(), Log: &log})
	if !strings.Contains(log.String(), "power-loss faults SKIPPED") || !strings.Contains(log.String(), "no-such-lazyfs") {
		t.Fatalf("no skip message naming the cause:\n%s", log.String())
	}
	if err == nil || !strings.Contains(err.Error(), "no-such-tallyd") {
		t.Fatalf("want the cluster started without lazyfs (and failing on the bogus tallyd), got %v", err)
	}

	_, err = Run(ctx, Config{Bin: "tallyd", LazyFS: missing, Faults: []string{PowerLoss}, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no fault kinds left") {
		t.Fatalf("a power-loss-only campaign without lazyfs: %v", err)
	}

	_, err = Run(ctx, Config{Addrs: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, Faults: []string{PowerLoss}, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "not --attach") {
		t.Fatalf("power losses on an attached cluster: %v", err)
	}
}

func TestFindLazyFS(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := findLazyFS("", "/nowhere/tallyd"); err == nil || !strings.Contains(err.Error(), "go build -o bin/tally-lazyfs ./cmd/tally-lazyfs") {
		t.Fatalf("want a message saying how to build it, got %v", err)
	}
	if p, err := findLazyFS("/x/tally-lazyfs", "/nowhere/tallyd"); err != nil || p != "/x/tally-lazyfs" {
		t.Fatalf("an explicit binary: %q, %v", p, err)
	}
}
