package lazyfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

const pebbleChildEnv = "LAZYFS_PEBBLE_CHILD"

func pebbleKey(kind string, i int) []byte { return fmt.Appendf(nil, "%s-%04d", kind, i) }

// TestPebbleOnLazyFS checks the property tally's raft log store relies
// on, on a mount: a process (this test binary again) opens pebble there,
// commits keys with Sync, then more with NoSync, and is SIGKILLed; after
// the power loss pebble opens with every synced key and none of the
// unsynced ones (which a SIGKILL alone would have kept).
func TestPebbleOnLazyFS(t *testing.T) {
	if dir := os.Getenv(pebbleChildEnv); dir != "" {
		pebbleChild(dir)
		return
	}
	f, _, mnt := mount(t, Options{})
	dir := filepath.Join(mnt, "db")
	const n = 200

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestPebbleOnLazyFS$")
	cmd.Env = append(os.Environ(), pebbleChildEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	done := false
	for sc.Scan() {
		if sc.Text() == "unsynced written" {
			done = true
			break
		}
		t.Logf("child: %s", sc.Text())
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !done {
		t.Fatalf("the pebble child ended before writing: %v", sc.Err())
	}

	files, bytes := f.Drop()
	t.Logf("power loss dropped %d bytes of %d files", bytes, files)
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatalf("pebble does not open after the power loss: %v", err)
	}
	defer db.Close()
	missing, kept := 0, 0
	for i := 0; i < n; i++ {
		if _, c, err := db.Get(pebbleKey("synced", i)); err == nil {
			c.Close()
		} else if errors.Is(err, pebble.ErrNotFound) {
			missing++
		} else {
			t.Fatal(err)
		}
		if _, c, err := db.Get(pebbleKey("unsynced", i)); err == nil {
			c.Close()
			kept++
		} else if !errors.Is(err, pebble.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d keys committed with Sync are gone after the power loss", missing, n)
	}
	if kept > 0 {
		t.Errorf("%d of %d keys committed with NoSync survived the power loss: unsynced data reached the disk", kept, n)
	}
	if err := db.Set([]byte("after"), []byte("x"), pebble.Sync); err != nil {
		t.Fatalf("pebble does not write after recovering: %v", err)
	}
}

// pebbleChild writes the keys TestPebbleOnLazyFS checks, then waits to
// be killed.
func pebbleChild(dir string) {
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "pebble child:", err)
		os.Exit(1)
	}
	val := make([]byte, 100)
	for i := 0; i < 200; i++ {
		if err := db.Set(pebbleKey("synced", i), val, pebble.Sync); err != nil {
			fmt.Fprintln(os.Stderr, "pebble child:", err)
			os.Exit(1)
		}
	}
	for i := 0; i < 200; i++ {
		if err := db.Set(pebbleKey("unsynced", i), val, pebble.NoSync); err != nil {
			fmt.Fprintln(os.Stderr, "pebble child:", err)
			os.Exit(1)
		}
	}
	fmt.Println("unsynced written")
	select {}
}
