package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"tally/internal/lazyfs"
)

// LazyFSBin is the name of the lazyfs command (cmd/tally-lazyfs).
const LazyFSBin = "tally-lazyfs"

// LazyFSError is a lazyfs mount that could not be set up: power-loss
// faults are then impossible, the others are not.
type LazyFSError struct{ Err error }

func (e *LazyFSError) Error() string { return "lazyfs: " + e.Err.Error() }
func (e *LazyFSError) Unwrap() error { return e.Err }

// findLazyFS returns the lazyfs binary to use: bin if set, else the one
// next to tallyd (a build's bin/), else the one on PATH.
func findLazyFS(bin, tallyd string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if tallyd != "" {
		p := filepath.Join(filepath.Dir(tallyd), LazyFSBin)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(LazyFSBin); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s is neither next to %s nor on PATH (build it: go build -o bin/%s ./cmd/%s)", LazyFSBin, tallyd, LazyFSBin, LazyFSBin)
}

// lazyMount is a tally-lazyfs process whose mount holds the nodes' data
// dirs: the writes they have not fsynced can be dropped, as a power loss
// would.
type lazyMount struct {
	disk, mnt, control, logPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// startLazyFS mounts a lazyfs at dir/data over dir/disk and waits until
// its control socket answers.
func startLazyFS(ctx context.Context, bin, dir string) (*lazyMount, error) {
	if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err != nil {
		return nil, &LazyFSError{fmt.Errorf("FUSE is not available: %w", err)}
	} else {
		f.Close()
	}
	m := &lazyMount{
		disk:    filepath.Join(dir, "disk"),
		mnt:     filepath.Join(dir, "data"),
		control: filepath.Join(dir, "lazyfs.sock"),
		logPath: filepath.Join(dir, "lazyfs.log"),
	}
	for _, d := range []string{m.disk, m.mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	lf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// Debug level: a power loss logs each file it cut short.
	m.cmd = exec.Command(bin, "--dir", m.disk, "--mount", m.mnt, "--control", m.control, "--log-level", "debug")
	m.cmd.Stdout, m.cmd.Stderr = lf, lf
	if err := m.cmd.Start(); err != nil {
		lf.Close()
		return nil, &LazyFSError{fmt.Errorf("start %s: %w", bin, err)}
	}
	m.done = make(chan struct{})
	go func() {
		m.cmd.Wait()
		lf.Close()
		close(m.done)
	}()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if _, err := lazyfs.Command(wctx, m.control, "stats"); err == nil {
			return m, nil
		}
		if exited(m.done) {
			out, _ := os.ReadFile(m.logPath)
			return nil, &LazyFSError{fmt.Errorf("%s exited: %s", bin, bytes.TrimSpace(out))}
		}
		if pause(wctx, 20*time.Millisecond) != nil {
			m.close()
			return nil, &LazyFSError{fmt.Errorf("%s did not answer on %s within 30s; see %s", bin, m.control, m.logPath)}
		}
	}
}

// command runs a control command (drop, sync, stats, fake-fsync GLOB).
func (m *lazyMount) command(ctx context.Context, cmd string) (lazyfs.Answer, error) {
	if exited(m.done) {
		return lazyfs.Answer{}, fmt.Errorf("%s has exited; see %s", LazyFSBin, m.logPath)
	}
	return lazyfs.Command(ctx, m.control, cmd)
}

// close unmounts (lazyfs writes the unsynced data back first, as a clean
// shutdown would) and ends the process; a mount it could not take down
// is detached, so none is left behind.
func (m *lazyMount) close() error {
	if !exited(m.done) {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			m.cmd.Process.Kill()
			<-m.done
		}
	}
	var st, parent syscall.Stat_t
	if syscall.Stat(m.mnt, &st) == nil && syscall.Stat(filepath.Dir(m.mnt), &parent) == nil && st.Dev == parent.Dev {
		return nil // not a mountpoint any more
	}
	// Still mounted (or its connection is dead: ENOTCONN).
	if err := syscall.Unmount(m.mnt, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("detach %s: %w", m.mnt, err)
	}
	return fmt.Errorf("%s left %s mounted (detached now); see %s", LazyFSBin, m.mnt, m.logPath)
}
