package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSyncNamesWhatIsMissing: without the sink's program, tally sync says
// how to build it instead of failing obscurely.
func TestSyncNamesWhatIsMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	var out, errOut bytes.Buffer
	if code := run([]string{"sync", "postgres", "--dsn", "postgres://x"}, &out, &errOut, func(string) string { return "" }); code == 0 {
		t.Fatal("sync without tally-sync-postgres succeeded")
	}
	if !strings.Contains(errOut.String(), "make sink") {
		t.Fatalf("stderr %q does not say how to get tally-sync-postgres", errOut.String())
	}
	if code := run([]string{"sync", "mysql"}, &out, &errOut, func(string) string { return "" }); code == 0 {
		t.Fatal("sync to an unknown sink succeeded")
	}
}

// TestSyncEnvFlagsWin: --addr given on the command line reaches the sink
// even when TALLY_ADDR is set to another cluster.
func TestSyncEnvFlagsWin(t *testing.T) {
	env := syncEnv([]string{"PATH=/bin", "TALLY_ADDR=staging:7070", "TALLY_TOKEN=old"}, "prod:7070", "tok", "")
	seen := map[string][]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		seen[k] = append(seen[k], v)
	}
	if len(seen["TALLY_ADDR"]) != 1 || seen["TALLY_ADDR"][0] != "prod:7070" || len(seen["TALLY_TOKEN"]) != 1 || seen["TALLY_TOKEN"][0] != "tok" || seen["PATH"][0] != "/bin" {
		t.Fatalf("environment %q", env)
	}
}
