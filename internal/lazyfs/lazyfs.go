// Package lazyfs is a FUSE file system that passes a directory through,
// except that file data written to it reaches the directory only when
// the file is fsynced, and can be thrown away as a machine losing power
// would: a power-loss fault for process-level tests, in the spirit of
// Jepsen's LazyFS. SIGKILL leaves the kernel's page cache intact, so
// killing a process never tests its fsyncs; dropping lazyfs' unsynced
// writes does.
//
// Semantics (LazyFS's data-only mode):
//
//   - Writes and truncations (ftruncate, truncate, O_TRUNC, a size-changing
//     fallocate) are kept in memory per file, as extents over the durable
//     content (the underlying file as of its last sync). Reads see them
//     overlaid, and the size users see includes them.
//   - fsync or fdatasync of any descriptor of a file writes all of its
//     pending data to the underlying file (which is not itself fsynced:
//     the host does not lose power, lazyfs does). Closing a file does not
//     persist anything.
//   - Metadata operations (create, mkdir, rename, unlink, link, symlink,
//     chmod, times) pass through at once and survive a power loss; so a
//     file created and written but never fsynced reads as empty after one.
//   - Drop (the power loss) forgets every pending write and truncation of
//     every file, and tells the kernel to forget what it cached of them.
//     The processes using the mount should be dead by then, as they would
//     be on a machine that lost power.
//   - Unmount writes everything pending back first, as a clean shutdown
//     flushes the page cache.
//
// FakeFsync is a testing hook for the tests of this fault: fsyncs of the
// files it matches succeed without persisting anything, so a drop loses
// their data as if the program had never synced them.
package lazyfs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Options configure a mount.
type Options struct {
	// FakeFsync, if set, is a pattern (path.Match) on a file's base name:
	// fsyncs of the files it matches succeed without persisting their
	// data. Only for proving that a test catches a missing fsync.
	FakeFsync string
	Logger    *slog.Logger // nil: slog.Default()
	Debug     bool         // log every FUSE request
}

// Stats count what the mount has done.
type Stats struct {
	DirtyFiles int    `json:"dirty_files"` // files with unsynced data now
	DirtyBytes int64  `json:"dirty_bytes"` // unsynced bytes held now
	Fsyncs     int64  `json:"fsyncs"`      // fsyncs that persisted something
	FakeFsyncs int64  `json:"fake_fsyncs"` // fsyncs FakeFsync answered without persisting
	Drops      int64  `json:"drops"`       // power losses
	FakeFsync  string `json:"fake_fsync,omitempty"`
}

// FS is a mounted lazyfs.
type FS struct {
	mnt    string
	log    *slog.Logger
	server *fuse.Server

	mu        sync.Mutex
	files     map[key]*file // files open or with unsynced data
	fakeFsync string

	dirty                     atomic.Int64 // files whose state is not nil
	fsyncs, fakeFsyncs, drops atomic.Int64
}

// key names an underlying file.
type key struct{ dev, ino uint64 }

func keyOf(st *syscall.Stat_t) key { return key{dev: uint64(st.Dev), ino: st.Ino} }

// file is one underlying file's shared state. It stays in FS.files while
// the file is open or holds unsynced data; the descriptors held then keep
// the underlying inode alive, so its number is not reused meanwhile.
type file struct {
	key key

	// Guarded by FS.mu.
	opens  int
	orphan bool // unlinked while open: forgotten on its last release

	mu  sync.RWMutex
	st  *state   // nil: nothing unsynced
	wfd *os.File // set exactly when st is: a descriptor to sync through

	inode atomic.Pointer[fs.Inode] // the kernel's inode, whose cache a drop invalidates
}

// Mount mounts a lazyfs over the directory backing at mountpoint (both
// must exist). It mounts with mount(2) itself (this needs root), falling
// back to fusermount if that is installed.
func Mount(backing, mountpoint string, opts Options) (*FS, error) {
	if opts.FakeFsync != "" {
		if _, err := filepath.Match(opts.FakeFsync, ""); err != nil {
			return nil, fmt.Errorf("lazyfs: fake-fsync pattern %q: %w", opts.FakeFsync, err)
		}
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	lb, err := fs.NewLoopbackRoot(backing)
	if err != nil {
		return nil, fmt.Errorf("lazyfs: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	f := &FS{mnt: mountpoint, log: log, files: map[key]*file{}, fakeFsync: opts.FakeFsync}
	root := &node{LoopbackNode: lb.(*fs.LoopbackNode), fsys: f}
	timeout := time.Second
	mo := fuse.MountOptions{
		FsName: backing,
		Name:   "lazyfs",
		// The kernel must send every read and write here: passthrough
		// would hand it the underlying file.
		DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		DirectMount:          true,
		Debug:                opts.Debug,
		Logger:               slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if opts.Debug {
		mo.Logger = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	}
	server, err := fs.Mount(mountpoint, root, &fs.Options{
		MountOptions: mo,
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
	})
	if err != nil {
		return nil, fmt.Errorf("lazyfs: mount %s (needs root for mount(2), or fusermount from the fuse3 package): %w", mountpoint, err)
	}
	f.server = server
	return f, nil
}

// Dir is the mountpoint.
func (f *FS) Dir() string { return f.mnt }

// Wait returns when the file system is unmounted.
func (f *FS) Wait() { f.server.Wait() }

// Unmount writes every unsynced change back (a clean shutdown) and
// unmounts. While files on the mount are open it fails with EBUSY (after
// a few seconds: the kernel releases closed files in the background).
func (f *FS) Unmount() error {
	_, _, serr := f.Sync()
	for deadline := time.Now().Add(5 * time.Second); ; {
		err := syscall.Unmount(f.mnt, 0)
		if err == nil {
			break
		}
		if err == syscall.EPERM {
			// Mounted by fusermount: it unmounts too.
			if err := f.server.Unmount(); err != nil {
				return fmt.Errorf("lazyfs: unmount %s: %w", f.mnt, err)
			}
			return serr
		}
		if err != syscall.EBUSY || time.Now().After(deadline) {
			return fmt.Errorf("lazyfs: unmount %s: %w", f.mnt, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.server.Wait()
	return serr
}

// SetFakeFsync changes the FakeFsync pattern ("" turns it off).
func (f *FS) SetFakeFsync(pattern string) error {
	if pattern != "" {
		if _, err := filepath.Match(pattern, ""); err != nil {
			return fmt.Errorf("fake-fsync pattern %q: %w", pattern, err)
		}
	}
	f.mu.Lock()
	f.fakeFsync = pattern
	f.mu.Unlock()
	return nil
}

// Stats returns the counters.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	s := Stats{Fsyncs: f.fsyncs.Load(), FakeFsyncs: f.fakeFsyncs.Load(), Drops: f.drops.Load(), FakeFsync: f.fakeFsync}
	for _, fl := range f.files {
		fl.mu.RLock()
		if fl.st != nil {
			s.DirtyFiles++
			s.DirtyBytes += fl.st.held()
		}
		fl.mu.RUnlock()
	}
	f.mu.Unlock()
	return s
}

// Drop is the power loss: every write and truncation not yet fsynced is
// forgotten, in every file, and the kernel's cached pages and attributes
// of those files with them. It returns how many files and bytes were
// lost.
func (f *FS) Drop() (files int, bytes int64) {
	var inval []*fs.Inode
	f.mu.Lock()
	for k, fl := range f.files {
		fl.mu.Lock()
		if fl.st != nil {
			files++
			held := fl.st.held()
			bytes += held
			if in := fl.inode.Load(); in != nil {
				inval = append(inval, in)
			}
			if f.log.Enabled(context.Background(), slog.LevelDebug) {
				f.log.Debug("lazyfs: power loss", "file", fl.wfd.Name(), "bytes", held, "size", fl.st.size, "durable_size", fl.st.base)
			}
			fl.clean(f)
		}
		fl.mu.Unlock()
		if fl.opens == 0 {
			delete(f.files, k)
		}
	}
	f.mu.Unlock()
	f.drops.Add(1)
	// Outside the locks: the kernel may call back while invalidating.
	// An inode the kernel has forgotten has no cache left to invalidate.
	for _, in := range inval {
		in.NotifyContent(0, 0)
	}
	f.log.Info("lazyfs: power loss: unsynced data dropped", "files", files, "bytes", bytes)
	return files, bytes
}

// Sync writes every unsynced change back, as sync(1) does (FakeFsync
// does not apply).
func (f *FS) Sync() (files int, bytes int64, err error) {
	f.mu.Lock()
	var all []*file
	for _, fl := range f.files {
		all = append(all, fl)
	}
	f.mu.Unlock()
	var errs []error
	for _, fl := range all {
		fl.mu.Lock()
		if fl.st != nil {
			n := fl.st.held()
			if e := fl.apply(f); e != nil {
				errs = append(errs, e)
			} else {
				files++
				bytes += n
			}
		}
		fl.mu.Unlock()
	}
	f.mu.Lock()
	for k, fl := range f.files {
		if fl.opens == 0 && fl.isClean() {
			delete(f.files, k)
		}
	}
	f.mu.Unlock()
	return files, bytes, errors.Join(errs...)
}

// isClean says whether fl holds nothing unsynced (taking fl.mu).
func (fl *file) isClean() bool {
	fl.mu.RLock()
	defer fl.mu.RUnlock()
	return fl.st == nil
}

// dirtyLocked makes sure fl has a state to record changes in, opening
// the descriptor it will be synced through with open. fl.mu is held.
func (fl *file) dirtyLocked(f *FS, open func() (*os.File, error)) error {
	if fl.st != nil {
		return nil
	}
	w, err := open()
	if err != nil {
		return err
	}
	fi, err := w.Stat()
	if err != nil {
		w.Close()
		return err
	}
	fl.st, fl.wfd = newState(fi.Size()), w
	f.dirty.Add(1)
	return nil
}

// clean forgets fl's unsynced state. fl.mu is held.
func (fl *file) clean(f *FS) {
	fl.st = nil
	fl.wfd.Close()
	fl.wfd = nil
	f.dirty.Add(-1)
}

// apply writes fl's unsynced state to the underlying file. fl.mu is held.
func (fl *file) apply(f *FS) error {
	if err := fl.st.apply(fl.wfd); err != nil {
		return err
	}
	fl.clean(f)
	return nil
}

// open registers a descriptor of the underlying file whose stat is st.
func (f *FS) open(st *syscall.Stat_t, in *fs.Inode) *file {
	k := keyOf(st)
	f.mu.Lock()
	fl := f.files[k]
	if fl == nil {
		fl = &file{key: k}
		f.files[k] = fl
	}
	fl.opens++
	f.mu.Unlock()
	fl.inode.Store(in)
	return fl
}

// release unregisters a descriptor of fl.
func (f *FS) release(fl *file) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.opens--
	if fl.opens > 0 {
		return
	}
	if f.files[fl.key] != fl {
		return // a drop forgot it already
	}
	if fl.orphan {
		fl.mu.Lock()
		if fl.st != nil {
			fl.clean(f)
		}
		fl.mu.Unlock()
		delete(f.files, fl.key)
	} else if fl.isClean() {
		delete(f.files, fl.key)
	}
}

// truncate records fl truncated to size; cur is the underlying file's
// size, open gives the descriptor fl is to be synced through.
func (f *FS) truncate(fl *file, size, cur int64, open func() (*os.File, error)) error {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.st == nil && size == cur {
		return nil // nothing changes (an O_TRUNC of an empty file)
	}
	if err := fl.dirtyLocked(f, open); err != nil {
		return err
	}
	fl.st.truncate(size)
	return nil
}

// forget drops fl from the files if it is neither open nor dirty (the
// descriptors of those keep their inode numbers from being reused).
func (f *FS) forget(fl *file) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl.opens == 0 && f.files[fl.key] == fl && fl.isClean() {
		delete(f.files, fl.key)
	}
}

// lookup returns the state of the underlying file whose stat is st, if
// it has any; with create, it makes one.
func (f *FS) lookup(st *syscall.Stat_t, create bool) *file {
	k := keyOf(st)
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.files[k]
	if fl == nil && create {
		fl = &file{key: k}
		f.files[k] = fl
	}
	return fl
}

// unlinked is told that the last name of the underlying file whose stat
// (before) was st is gone: its unsynced data is moot.
func (f *FS) unlinked(st *syscall.Stat_t) {
	k := keyOf(st)
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.files[k]
	if fl == nil {
		return
	}
	if fl.opens > 0 {
		fl.orphan = true
		return
	}
	fl.mu.Lock()
	if fl.st != nil {
		fl.clean(f)
	}
	fl.mu.Unlock()
	delete(f.files, k)
}

// patch makes attr show the size its users see of the underlying file
// whose stat is st, and notes in as its kernel inode.
func (f *FS) patch(st *syscall.Stat_t, attr *fuse.Attr, in *fs.Inode) {
	if f.dirty.Load() == 0 {
		return
	}
	fl := f.lookup(st, false)
	if fl == nil {
		return
	}
	fl.mu.RLock()
	if fl.st != nil {
		attr.Size = uint64(fl.st.size)
		attr.Blocks = (attr.Size + 511) / 512
		if in != nil {
			fl.inode.Store(in)
		}
	}
	fl.mu.RUnlock()
}

// fakes says whether fsyncs of the file named name are to be faked.
func (f *FS) fakes(name string) bool {
	f.mu.Lock()
	p := f.fakeFsync
	f.mu.Unlock()
	if p == "" {
		return false
	}
	ok, _ := filepath.Match(p, name)
	return ok
}

// dupFile duplicates f's descriptor (close-on-exec).
func dupFile(f *os.File) (*os.File, error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var derr error
	if err := sc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}

func fstat(f *os.File, st *syscall.Stat_t) error {
	sc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := sc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), st) }); err != nil {
		return err
	}
	return serr
}
