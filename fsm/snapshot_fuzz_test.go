package fsm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzRestore: a snapshot stream from a peer (an install over the wire)
// or a damaged disk either restores or fails; it never panics, and what
// restores writes back a stream that restores to the same state.
func FuzzRestore(f *testing.F) {
	f.Add(snapBytes(f, fillBusy(40).Snapshot()))
	f.Add(snapBytes(f, New(Config{}).Snapshot()))
	golden, _ := filepath.Glob("testdata/*.snap")
	for _, g := range golden {
		if b, err := os.ReadFile(g); err == nil {
			f.Add(b)
		}
	}
	cfg := Config{DedupTTL: 10 * time.Second}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := New(cfg)
		if err := m.Restore(bytes.NewReader(b)); err != nil {
			return
		}
		again := snapBytes(t, m.Snapshot())
		r := New(cfg)
		if err := r.Restore(bytes.NewReader(again)); err != nil {
			t.Fatalf("a restored state's own snapshot does not restore: %v", err)
		}
		if m.Digest() != r.Digest() {
			t.Fatal("a restored state's own snapshot restores differently")
		}
	})
}
