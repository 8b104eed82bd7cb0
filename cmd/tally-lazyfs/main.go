// Command tally-lazyfs mounts a lazyfs (see tally/internal/lazyfs): a
// FUSE pass-through of --dir at --mount that keeps written file data in
// memory until the file is fsynced, and drops every unsynced write on a
// power loss. Process-level tests run their nodes' data dirs on it.
//
// Control: the unix socket --control takes one command a line (drop,
// sync, stats, fake-fsync [GLOB]) and answers each with one JSON line;
// it exists once the file system is mounted, so a caller can wait for it.
// SIGUSR1 is a power loss too (for shells). SIGTERM or SIGINT writes the
// unsynced data back and unmounts. Mounting needs /dev/fuse and root (it
// calls mount(2) itself; without root it falls back to fusermount).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"tally/internal/lazyfs"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("tally-lazyfs", flag.ContinueOnError)
	var (
		dir       = fs.String("dir", "", "the directory passed through (where synced data lands); required")
		mnt       = fs.String("mount", "", "the mountpoint, an existing directory; required")
		control   = fs.String("control", "", "unix socket for control commands (drop, sync, stats, fake-fsync [GLOB]); empty: none")
		fakeFsync = fs.String("fake-fsync", "", "TESTING ONLY: fsyncs of files whose base name matches this glob succeed without persisting")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		debug     = fs.Bool("debug", false, "log every FUSE request")
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tally-lazyfs --dir DIR --mount MOUNTPOINT [--control SOCKET] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tally-lazyfs: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *dir == "" || *mnt == "" {
		fmt.Fprintln(os.Stderr, "tally-lazyfs: --dir and --mount are required")
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "tally-lazyfs: --log-level:", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// Signals first: one arriving while mounting must not kill the
	// process with the mount left behind.
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)

	fsys, err := lazyfs.Mount(*dir, *mnt, lazyfs.Options{FakeFsync: *fakeFsync, Logger: logger, Debug: *debug})
	if err != nil {
		logger.Error("mount failed", "err", err)
		return 1
	}
	if *fakeFsync != "" {
		logger.Warn("fake fsync: fsyncs of matching files persist nothing", "pattern", *fakeFsync)
	}
	var l net.Listener
	if *control != "" {
		os.Remove(*control) // a socket left by an earlier run
		if l, err = net.Listen("unix", *control); err != nil {
			logger.Error("control socket", "err", err)
			unmount(fsys, logger)
			return 1
		}
		defer l.Close()
		go fsys.ServeControl(l)
	}
	logger.Info("mounted", "dir", *dir, "mount", *mnt, "control", *control)

	unmounted := make(chan struct{})
	go func() { fsys.Wait(); close(unmounted) }()
	for {
		select {
		case <-unmounted:
			logger.Info("unmounted from outside")
			return 0
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				fsys.Drop()
				continue
			}
			logger.Info("signal received; writing back and unmounting", "signal", s.String())
			if !unmount(fsys, logger) {
				return 1
			}
			return 0
		}
	}
}

// unmount unmounts, or detaches a busy mount (it goes once its files are
// closed) so none is left behind; it reports whether the clean unmount
// worked.
func unmount(fsys *lazyfs.FS, logger *slog.Logger) bool {
	err := fsys.Unmount()
	if err == nil {
		return true
	}
	logger.Error("unmount", "err", err)
	if errors.Is(err, syscall.EBUSY) {
		if derr := syscall.Unmount(fsys.Dir(), syscall.MNT_DETACH); derr != nil {
			logger.Error("detach", "err", derr)
		}
	}
	return false
}
