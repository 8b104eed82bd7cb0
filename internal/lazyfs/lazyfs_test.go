package lazyfs

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mount mounts a lazyfs for a test, or skips it where FUSE cannot be
// used (no /dev/fuse, or mounting is not allowed here).
func mount(t *testing.T, opts Options) (f *FS, backing, mnt string) {
	t.Helper()
	if d, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		t.Skipf("lazyfs needs FUSE: cannot open /dev/fuse: %v", err)
	} else {
		d.Close()
	}
	dir := t.TempDir()
	backing, mnt = filepath.Join(dir, "disk"), filepath.Join(dir, "mnt")
	for _, d := range []string{backing, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := Mount(backing, mnt, opts)
	if err != nil {
		t.Skipf("lazyfs needs FUSE: mounting failed: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return f, backing, mnt
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func writeFile(t *testing.T, path string, data []byte, sync bool) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestUnsyncedWriteIsLost(t *testing.T) {
	f, backing, mnt := mount(t, Options{})
	p := filepath.Join(mnt, "f")
	writeFile(t, p, []byte("hello, world"), false)
	if got := readFile(t, p); string(got) != "hello, world" {
		t.Fatalf("before the power loss the mount reads %q", got)
	}
	if n := size(t, p); n != 12 {
		t.Fatalf("size %d before the power loss, want 12", n)
	}
	if got := readFile(t, filepath.Join(backing, "f")); len(got) != 0 {
		t.Fatalf("closing the file wrote %q to the disk; only fsync may", got)
	}
	files, bytes := f.Drop()
	if files != 1 || bytes != 12 {
		t.Fatalf("drop lost %d files, %d bytes; want 1, 12", files, bytes)
	}
	// The file was created (metadata survives) but its data is gone.
	if got := readFile(t, p); len(got) != 0 {
		t.Fatalf("after the power loss the never-synced file reads %q, want empty", got)
	}
	if n := size(t, p); n != 0 {
		t.Fatalf("size %d after the power loss, want 0", n)
	}
}

func TestSyncedWriteIsKept(t *testing.T) {
	for _, data := range []bool{false, true} {
		t.Run(map[bool]string{false: "fsync", true: "fdatasync"}[data], func(t *testing.T) {
			f, backing, mnt := mount(t, Options{})
			p := filepath.Join(mnt, "f")
			w, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteString("durable"); err != nil {
				t.Fatal(err)
			}
			if data {
				err = syscall.Fdatasync(int(w.Fd()))
			} else {
				err = w.Sync()
			}
			if err != nil {
				t.Fatal(err)
			}
			w.Close()
			if got := readFile(t, filepath.Join(backing, "f")); string(got) != "durable" {
				t.Fatalf("after the sync the disk holds %q", got)
			}
			if files, _ := f.Drop(); files != 0 {
				t.Fatalf("drop found %d files with unsynced data, want 0", files)
			}
			if got := readFile(t, p); string(got) != "durable" {
				t.Fatalf("after the power loss the synced file reads %q", got)
			}
		})
	}
}

// TestPartiallySynced: writes over synced data, overlapping each other
// and leaving a hole, are read overlaid before the power loss, and the
// synced data alone after it, also through a descriptor kept open (the
// kernel's cached pages and size must be invalidated).
func TestPartiallySynced(t *testing.T) {
	f, backing, mnt := mount(t, Options{})
	p := filepath.Join(mnt, "f")
	synced := bytes.Repeat([]byte("a"), 100)
	writeFile(t, p, synced, true)

	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, wr := range []struct {
		off  int64
		data string
	}{{50, strings.Repeat("b", 100)}, {120, strings.Repeat("c", 10)}, {300, "tail"}, {40, "dd"}} {
		if _, err := w.WriteAt([]byte(wr.data), wr.off); err != nil {
			t.Fatal(err)
		}
	}
	want := make([]byte, 304)
	copy(want, synced)
	copy(want[50:], strings.Repeat("b", 100))
	copy(want[120:], strings.Repeat("c", 10))
	copy(want[300:], "tail")
	copy(want[40:], "dd")
	if got := readFile(t, p); !bytes.Equal(got, want) {
		t.Fatalf("overlaid read:\n got %q\nwant %q", got, want)
	}
	buf := make([]byte, 30)
	if n, err := w.ReadAt(buf, 35); err != nil || string(buf[:n]) != "aaaaa"+"dd"+"aaaaaaaa"+strings.Repeat("b", 15) {
		t.Fatalf("read at 35: %q, %v", buf, err)
	}
	if n := size(t, p); n != 304 {
		t.Fatalf("size %d, want 304", n)
	}
	if got := readFile(t, filepath.Join(backing, "f")); !bytes.Equal(got, synced) {
		t.Fatalf("the disk holds unsynced data: %q", got)
	}

	f.Drop()
	if got := readFile(t, p); !bytes.Equal(got, synced) {
		t.Fatalf("after the power loss:\n got %q\nwant %q", got, synced)
	}
	full := make([]byte, 400)
	n, _ := w.ReadAt(full, 0)
	if !bytes.Equal(full[:n], synced) {
		t.Fatalf("after the power loss the open descriptor reads %q", full[:n])
	}
	if fi, err := w.Stat(); err != nil || fi.Size() != 100 {
		t.Fatalf("after the power loss the open descriptor's size is %v (%v), want 100", fi.Size(), err)
	}

	// Writing on, and syncing, after the power loss works as before.
	if _, err := w.WriteAt([]byte("zz"), 100); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Drop()
	if got := readFile(t, p); string(got) != string(synced)+"zz" {
		t.Fatalf("after the second power loss: %q", got)
	}
}

func TestTruncate(t *testing.T) {
	f, backing, mnt := mount(t, Options{})
	p := filepath.Join(mnt, "f")
	synced := []byte(strings.Repeat("0123456789", 10))
	writeFile(t, p, synced, true)

	// Down then up: the bytes in between read as zeros, not as the
	// synced data under them.
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Truncate(50); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("xy"), 20); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 50)
	copy(want, synced[:10])
	copy(want[20:], "xy")
	if got := readFile(t, p); !bytes.Equal(got, want) {
		t.Fatalf("truncated and extended:\n got %q\nwant %q", got, want)
	}
	if got := readFile(t, filepath.Join(backing, "f")); !bytes.Equal(got, synced) {
		t.Fatalf("an unsynced truncation reached the disk: %q", got)
	}
	f.Drop()
	if got := readFile(t, p); !bytes.Equal(got, synced) {
		t.Fatalf("after the power loss an unsynced truncation must be undone:\n got %q\nwant %q", got, synced)
	}

	// A synced truncation (and what was written after it) is durable.
	if err := w.Truncate(5); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte("!"), 7); err != nil {
		t.Fatal(err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	f.Drop()
	if got, want := readFile(t, p), "01234\x00\x00!"; string(got) != want {
		t.Fatalf("synced truncation: %q, want %q", got, want)
	}

	// O_TRUNC is a truncation like any other: undone by a power loss
	// unless synced.
	writeFile(t, p, []byte("new"), false)
	if got := readFile(t, p); string(got) != "new" {
		t.Fatalf("rewritten: %q", got)
	}
	f.Drop()
	if got, want := readFile(t, p), "01234\x00\x00!"; string(got) != want {
		t.Fatalf("after an unsynced O_TRUNC rewrite and a power loss: %q, want %q", got, want)
	}
}

// TestMetadataPassesThrough: names change at once and survive a power
// loss (data-only mode); unlinked files take their unsynced data with
// them, and an unlinked file still open reads what was written to it.
func TestMetadataPassesThrough(t *testing.T) {
	f, backing, mnt := mount(t, Options{})
	if err := os.Mkdir(filepath.Join(mnt, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(mnt, "d", "tmp"), []byte("unsynced"), false)
	if err := os.Rename(filepath.Join(mnt, "d", "tmp"), filepath.Join(mnt, "d", "final")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(backing, "d", "final")); err != nil {
		t.Fatalf("rename did not pass through: %v", err)
	}
	if got := readFile(t, filepath.Join(mnt, "d", "final")); string(got) != "unsynced" {
		t.Fatalf("renamed file reads %q", got)
	}

	// Replaced by a rename and unlinked: their state goes with them.
	writeFile(t, filepath.Join(mnt, "gone"), []byte("x"), false)
	writeFile(t, filepath.Join(mnt, "over"), []byte("y"), false)
	if err := os.Rename(filepath.Join(mnt, "over"), filepath.Join(mnt, "d", "final")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "gone")); err != nil {
		t.Fatal(err)
	}
	open, err := os.Create(filepath.Join(mnt, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.WriteString("still here"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(mnt, "open")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 20)
	if n, _ := open.ReadAt(buf, 0); string(buf[:n]) != "still here" {
		t.Fatalf("unlinked open file reads %q", buf[:n])
	}
	open.Close()
	// The kernel releases a closed file in the background.
	for deadline := time.Now().Add(10 * time.Second); ; {
		s := f.Stats()
		if s.DirtyFiles == 1 && s.DirtyBytes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want only d/final's 1 unsynced byte", s)
		}
		time.Sleep(10 * time.Millisecond)
	}

	f.Drop()
	if got := readFile(t, filepath.Join(mnt, "d", "final")); len(got) != 0 {
		t.Fatalf("never-synced file reads %q after the power loss", got)
	}
	ents, err := os.ReadDir(mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "d" {
		t.Fatalf("mount holds %v, want [d]", names)
	}
	f.mu.Lock()
	left := len(f.files)
	f.mu.Unlock()
	if f.Stats().DirtyFiles != 0 || left != 0 {
		t.Fatalf("state left after the power loss: %+v, %d files", f.Stats(), left)
	}
}

// TestFakeFsync: the testing hook makes fsync of matching files succeed
// without persisting, so a power loss loses what was "synced".
func TestFakeFsync(t *testing.T) {
	f, backing, mnt := mount(t, Options{FakeFsync: "*.log"})
	writeFile(t, filepath.Join(mnt, "000001.log"), []byte("wal"), true)
	writeFile(t, filepath.Join(mnt, "MANIFEST"), []byte("manifest"), true)
	if got := readFile(t, filepath.Join(backing, "000001.log")); len(got) != 0 {
		t.Fatalf("a faked fsync wrote %q", got)
	}
	f.Drop()
	if got := readFile(t, filepath.Join(mnt, "000001.log")); len(got) != 0 {
		t.Fatalf("fake-fsynced file reads %q after the power loss", got)
	}
	if got := readFile(t, filepath.Join(mnt, "MANIFEST")); string(got) != "manifest" {
		t.Fatalf("really synced file reads %q after the power loss", got)
	}
	if s := f.Stats(); s.FakeFsyncs != 1 || s.Fsyncs != 1 || s.Drops != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestControl(t *testing.T) {
	f, _, mnt := mount(t, Options{})
	sock := filepath.Join(t.TempDir(), "ctl")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go f.ServeControl(l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	writeFile(t, filepath.Join(mnt, "a"), []byte("12345"), false)
	a, err := Command(ctx, sock, "stats")
	if err != nil || a.Stats == nil || a.Stats.DirtyFiles != 1 || a.Stats.DirtyBytes != 5 {
		t.Fatalf("stats: %+v, %v", a, err)
	}
	if a, err := Command(ctx, sock, "drop"); err != nil || a.Files != 1 || a.Bytes != 5 {
		t.Fatalf("drop: %+v, %v", a, err)
	}
	if got := readFile(t, filepath.Join(mnt, "a")); len(got) != 0 {
		t.Fatalf("after drop: %q", got)
	}
	writeFile(t, filepath.Join(mnt, "b"), []byte("678"), false)
	if a, err := Command(ctx, sock, "sync"); err != nil || a.Files != 1 || a.Bytes != 3 {
		t.Fatalf("sync: %+v, %v", a, err)
	}
	if _, err := Command(ctx, sock, "fake-fsync *.log"); err != nil {
		t.Fatal(err)
	}
	if f.Stats().FakeFsync != "*.log" {
		t.Fatalf("fake-fsync not set: %+v", f.Stats())
	}
	if _, err := Command(ctx, sock, "fake-fsync"); err != nil || f.Stats().FakeFsync != "" {
		t.Fatalf("fake-fsync not cleared: %v, %+v", err, f.Stats())
	}
	for _, bad := range []string{"reboot", "drop now", "fake-fsync [", ""} {
		if a, err := Command(ctx, sock, bad); err == nil || a.OK || a.Error == "" {
			t.Errorf("%q: %+v, %v: want an error", bad, a, err)
		}
	}
	if f.Stats().Drops != 1 {
		t.Fatalf("a refused command changed something: %+v", f.Stats())
	}
}
