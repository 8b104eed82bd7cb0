package raftstore

import (
	"fmt"
	"log/slog"
	"os"
)

// pebbleLogger sends pebble's messages to slog, one line each (its
// routine notes at debug level). Fatalf is
// how pebble stops on an error it cannot go on past (a failed WAL write or
// sync): the process ends there, so nothing that error covers is ever
// acknowledged, and the restart recovers from what is on disk.
type pebbleLogger struct {
	log   *slog.Logger
	fatal func(msg string) // ends the process, but in tests
}

func newPebbleLogger() pebbleLogger {
	return pebbleLogger{
		log:   slog.Default().With("component", "raftstore"),
		fatal: func(string) { os.Exit(1) },
	}
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("fatal storage error, exiting", "err", msg)
	l.fatal(msg)
}
