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
