package lazyfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// node is a loopback node whose file data goes through lazyfs: it
// overrides every operation of fs.LoopbackNode that reads, writes or
// reports a file's data or size, and passes the rest (metadata) through.
type node struct {
	*fs.LoopbackNode
	fsys *FS
}

var (
	_ fs.NodeWrapChilder    = (*node)(nil)
	_ fs.NodeLookuper       = (*node)(nil)
	_ fs.NodeOpener         = (*node)(nil)
	_ fs.NodeCreater        = (*node)(nil)
	_ fs.NodeGetattrer      = (*node)(nil)
	_ fs.NodeSetattrer      = (*node)(nil)
	_ fs.NodeStatxer        = (*node)(nil)
	_ fs.NodeUnlinker       = (*node)(nil)
	_ fs.NodeRenamer        = (*node)(nil)
	_ fs.NodeLinker         = (*node)(nil)
	_ fs.NodeTmpfiler       = (*node)(nil)
	_ fs.NodeCopyFileRanger = (*node)(nil)
	_ fs.FileReader         = (*handle)(nil)
	_ fs.FileWriter         = (*handle)(nil)
	_ fs.FileFsyncer        = (*handle)(nil)
	_ fs.FileFlusher        = (*handle)(nil)
	_ fs.FileReleaser       = (*handle)(nil)
	_ fs.FileLseeker        = (*handle)(nil)
	_ fs.FileAllocater      = (*handle)(nil)
)

// WrapChild makes every node of the tree a lazyfs node.
func (n *node) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	if lb, ok := ops.(*fs.LoopbackNode); ok {
		return &node{LoopbackNode: lb, fsys: n.fsys}
	}
	return ops
}

// path is the node's underlying path (a deleted node's does not exist).
func (n *node) path() string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()))
}

func isReg(mode uint32) bool { return mode&syscall.S_IFMT == syscall.S_IFREG }

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Lookup(ctx, name, out)
	if errno == 0 && isReg(out.Attr.Mode) && n.fsys.dirty.Load() > 0 {
		var st syscall.Stat_t
		if syscall.Lstat(filepath.Join(n.path(), name), &st) == nil {
			n.fsys.patch(&st, &out.Attr, ch)
		}
	}
	return ch, errno
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch, errno := n.LoopbackNode.Link(ctx, target, name, out)
	if errno == 0 && isReg(out.Attr.Mode) {
		var st syscall.Stat_t
		if syscall.Lstat(filepath.Join(n.path(), name), &st) == nil {
			n.fsys.patch(&st, &out.Attr, ch)
		}
	}
	return ch, errno
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	var err error
	if h, ok := f.(*handle); ok {
		err = fstat(h.f, &st) // the file may have no name left
	} else if n.IsRoot() {
		err = syscall.Stat(n.path(), &st)
	} else {
		err = syscall.Lstat(n.path(), &st)
	}
	if err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	if isReg(st.Mode) {
		n.fsys.patch(&st, &out.Attr, n.EmbeddedInode())
	}
	return 0
}

// Statx is left to Getattr: the kernel falls back to GETATTR for good
// on ENOSYS, and one place reports sizes.
func (n *node) Statx(ctx context.Context, f fs.FileHandle, flags uint32, mask uint32, out *fuse.StatxOut) syscall.Errno {
	return syscall.ENOSYS
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	h, _ := f.(*handle)
	rest := *in
	size, truncate := in.GetSize()
	rest.Valid &^= fuse.FATTR_SIZE
	// Mode, owner and times pass through, on the open descriptor when
	// there is one (its file may have no name left). A LoopbackFile over
	// it does that; it is not released, so the descriptor stays h's.
	var lf fs.FileHandle
	if h != nil {
		lf = fs.NewLoopbackFileFromOS(h.f)
	}
	if errno := n.LoopbackNode.Setattr(ctx, lf, &rest, out); errno != 0 {
		return errno
	}
	if !truncate {
		return n.Getattr(ctx, f, out)
	}
	if h != nil {
		if errno := h.truncate(int64(size)); errno != 0 {
			return errno
		}
	} else {
		var st syscall.Stat_t
		p := n.path()
		if err := syscall.Lstat(p, &st); err != nil {
			return fs.ToErrno(err)
		}
		if !isReg(st.Mode) {
			return syscall.EINVAL
		}
		if fl := n.fsys.lookup(&st, false); fl == nil && int64(size) == st.Size {
			return n.Getattr(ctx, f, out) // nothing changes (an O_TRUNC of an empty file)
		}
		fl := n.fsys.lookup(&st, true)
		fl.inode.Store(n.EmbeddedInode())
		err := n.fsys.truncate(fl, int64(size), st.Size, func() (*os.File, error) {
			return os.OpenFile(p, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
		})
		n.fsys.forget(fl)
		if err != nil {
			return fs.ToErrno(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	trunc := flags&syscall.O_TRUNC != 0
	// The kernel places appends itself; O_DIRECT would hold reads of the
	// underlying file to alignment, and durability is ours to model (the
	// kernel follows each O_SYNC/O_DSYNC write with an fsync).
	flags &^= syscall.O_APPEND | syscall.O_TRUNC | fuse.FMODE_EXEC | syscall.O_DIRECT | syscall.O_DSYNC | syscall.O_SYNC
	f, err := os.OpenFile(n.path(), int(flags)|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	h, errno := n.fsys.newHandle(f, n.EmbeddedInode())
	if errno != 0 {
		return nil, 0, errno
	}
	if trunc {
		if errno := h.truncate(0); errno != 0 {
			h.Release(ctx)
			return nil, 0, errno
		}
	}
	return h, 0, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	trunc := flags&syscall.O_TRUNC != 0
	flags &^= syscall.O_TRUNC | syscall.O_DIRECT | syscall.O_DSYNC | syscall.O_SYNC
	ch, lfh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	// Take the loopback's descriptor over: a handle of ours on a
	// duplicate, the original closed.
	var f *os.File
	if pt, ok := lfh.(fs.FilePassthroughFder); ok {
		if fd, ok := pt.PassthroughFd(); ok {
			if nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err == nil {
				f = os.NewFile(uintptr(nfd), filepath.Join(n.path(), name))
			}
		}
	}
	if r, ok := lfh.(fs.FileReleaser); ok {
		r.Release(ctx)
	}
	if f == nil {
		return nil, nil, 0, syscall.EIO
	}
	h, errno := n.fsys.newHandle(f, ch)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	if trunc {
		if errno := h.truncate(0); errno != 0 {
			h.Release(ctx)
			return nil, nil, 0, errno
		}
	}
	var st syscall.Stat_t
	if fstat(f, &st) == nil {
		n.fsys.patch(&st, &out.Attr, ch)
	}
	return ch, h, fuseFlags, 0
}

// Tmpfile is refused: a file with no name would need its own bookkeeping.
func (n *node) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EOPNOTSUPP
}

// CopyFileRange is refused, so the kernel copies through reads and
// writes, which see and make unsynced data.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut uint64, len uint64, flags uint64) (uint32, syscall.Errno) {
	return 0, syscall.EOPNOTSUPP
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	var st syscall.Stat_t
	serr := syscall.Lstat(filepath.Join(n.path(), name), &st)
	errno := n.LoopbackNode.Unlink(ctx, name)
	if errno == 0 && serr == nil && isReg(st.Mode) && st.Nlink <= 1 {
		n.fsys.unlinked(&st)
	}
	return errno
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	var src, dst syscall.Stat_t
	replaced := false
	if np, ok := newParent.(*node); ok && flags&unix.RENAME_EXCHANGE == 0 {
		replaced = syscall.Lstat(filepath.Join(np.path(), newName), &dst) == nil &&
			syscall.Lstat(filepath.Join(n.path(), name), &src) == nil &&
			isReg(dst.Mode) && dst.Nlink <= 1 && keyOf(&src) != keyOf(&dst)
	}
	errno := n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
	if errno == 0 && replaced {
		n.fsys.unlinked(&dst)
	}
	return errno
}

// handle is an open file: reads and writes go through its file's state.
type handle struct {
	fsys  *FS
	f     *os.File // the underlying file
	fl    *file
	inode *fs.Inode
}

func (f *FS) newHandle(uf *os.File, in *fs.Inode) (*handle, syscall.Errno) {
	var st syscall.Stat_t
	if err := fstat(uf, &st); err != nil {
		uf.Close()
		return nil, fs.ToErrno(err)
	}
	return &handle{fsys: f, f: uf, fl: f.open(&st, in), inode: in}, 0
}

// name is the file's base name now, for FakeFsync.
func (h *handle) name() string {
	name, _ := h.inode.Parent()
	return name
}

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.fl.mu.RLock()
	defer h.fl.mu.RUnlock()
	var n int
	var err error
	if h.fl.st != nil {
		n, err = h.fl.st.read(buf, off, h.f)
	} else {
		n, err = h.f.ReadAt(buf, off)
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

// dirtyLocked gives h's file a state, synced later through a duplicate
// of h's descriptor (which the kernel opened for writing, or it would
// not send the write or truncation).
func (h *handle) dirtyLocked() error {
	return h.fl.dirtyLocked(h.fsys, func() (*os.File, error) { return dupFile(h.f) })
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	h.fl.mu.Lock()
	defer h.fl.mu.Unlock()
	if err := h.dirtyLocked(); err != nil {
		return 0, fs.ToErrno(err)
	}
	h.fl.st.write(off, data)
	return uint32(len(data)), 0
}

func (h *handle) truncate(size int64) syscall.Errno {
	var st syscall.Stat_t
	if err := fstat(h.f, &st); err != nil {
		return fs.ToErrno(err)
	}
	return fs.ToErrno(h.fsys.truncate(h.fl, size, st.Size, func() (*os.File, error) { return dupFile(h.f) }))
}

// Fsync (and fdatasync) makes the file's unsynced data durable, whatever
// descriptor it comes through.
func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	// Asked before fl.mu is taken: fakes takes the FS's lock, which Drop
	// and Stats hold while they take each file's.
	fake := h.fsys.fakes(h.name())
	h.fl.mu.Lock()
	defer h.fl.mu.Unlock()
	if h.fl.st == nil {
		return 0
	}
	if fake {
		h.fsys.fakeFsyncs.Add(1)
		return 0
	}
	if err := h.fl.apply(h.fsys); err != nil {
		h.fsys.log.Error("lazyfs: fsync", "file", h.f.Name(), "err", err)
		return fs.ToErrno(err)
	}
	h.fsys.fsyncs.Add(1)
	return 0
}

// Flush (each close) persists nothing: only fsync does.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	err := h.f.Close()
	h.fsys.release(h.fl)
	return fs.ToErrno(err)
}

// Lseek answers SEEK_DATA and SEEK_HOLE (the kernel does the others) as
// if a file with unsynced data had no holes.
func (h *handle) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	h.fl.mu.RLock()
	defer h.fl.mu.RUnlock()
	if h.fl.st == nil {
		n, err := h.f.Seek(int64(off), int(whence))
		return uint64(n), fs.ToErrno(err)
	}
	size := uint64(h.fl.st.size)
	if off >= size {
		return 0, syscall.ENXIO
	}
	switch whence {
	case unix.SEEK_DATA:
		return off, 0
	case unix.SEEK_HOLE:
		return size, 0
	}
	return 0, syscall.EINVAL
}

// Allocate passes space reservations (FALLOC_FL_KEEP_SIZE) through and
// records a size-changing allocation as a truncation; the other modes
// (punching holes, zeroing ranges) are refused.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	switch mode {
	case unix.FALLOC_FL_KEEP_SIZE:
		sc, err := h.f.SyscallConn()
		if err != nil {
			return fs.ToErrno(err)
		}
		var ferr error
		if err := sc.Control(func(fd uintptr) { ferr = unix.Fallocate(int(fd), mode, int64(off), int64(size)) }); err != nil {
			return fs.ToErrno(err)
		}
		return fs.ToErrno(ferr)
	case 0:
		h.fl.mu.Lock()
		defer h.fl.mu.Unlock()
		end := int64(off + size)
		cur := int64(-1)
		if h.fl.st != nil {
			cur = h.fl.st.size
		} else if fi, err := h.f.Stat(); err == nil {
			cur = fi.Size()
		}
		if end <= cur {
			return 0
		}
		if err := h.dirtyLocked(); err != nil {
			return fs.ToErrno(err)
		}
		h.fl.st.truncate(end)
		return 0
	}
	return syscall.EOPNOTSUPP
}
