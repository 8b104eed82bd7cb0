// Package logbridge routes the logs of hashicorp/raft (hclog) and
// hashicorp/memberlist (the standard log package) into log/slog, so a node
// writes one structured line per event whatever library produced it.
package logbridge

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// Raft returns an hclog.Logger that writes to l. Raft is chatty at Info
// (every heartbeat failure, every pipeline start), so its Info lines are
// demoted to Debug unless they carry a leadership or election event, which
// operators do want to see.
func Raft(l *slog.Logger, name string) hclog.Logger {
	return &hcAdapter{l: l.With("component", name), name: name}
}

type hcAdapter struct {
	l       *slog.Logger
	name    string
	implied []interface{}
}

func (h *hcAdapter) level(lv hclog.Level, msg string) slog.Level {
	switch lv {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		if strings.Contains(msg, "leader") || strings.Contains(msg, "election") ||
			strings.Contains(msg, "snapshot") {
			return slog.LevelInfo
		}
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *hcAdapter) Log(lv hclog.Level, msg string, args ...interface{}) {
	sl := h.level(lv, msg)
	if !h.l.Enabled(context.Background(), sl) {
		return
	}
	all := append(append([]interface{}{}, h.implied...), args...)
	h.l.Log(context.Background(), sl, msg, all...)
}

func (h *hcAdapter) Trace(msg string, args ...interface{}) { h.Log(hclog.Trace, msg, args...) }
func (h *hcAdapter) Debug(msg string, args ...interface{}) { h.Log(hclog.Debug, msg, args...) }
func (h *hcAdapter) Info(msg string, args ...interface{})  { h.Log(hclog.Info, msg, args...) }
func (h *hcAdapter) Warn(msg string, args ...interface{})  { h.Log(hclog.Warn, msg, args...) }
func (h *hcAdapter) Error(msg string, args ...interface{}) { h.Log(hclog.Error, msg, args...) }

func (h *hcAdapter) IsTrace() bool { return false }
func (h *hcAdapter) IsDebug() bool { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hcAdapter) IsInfo() bool  { return h.l.Enabled(context.Background(), slog.LevelInfo) }
func (h *hcAdapter) IsWarn() bool  { return h.l.Enabled(context.Background(), slog.LevelWarn) }
func (h *hcAdapter) IsError() bool { return true }

func (h *hcAdapter) ImpliedArgs() []interface{} { return h.implied }

func (h *hcAdapter) With(args ...interface{}) hclog.Logger {
	return &hcAdapter{l: h.l, name: h.name, implied: append(append([]interface{}{}, h.implied...), args...)}
}

func (h *hcAdapter) Name() string { return h.name }

func (h *hcAdapter) Named(name string) hclog.Logger {
	if h.name != "" {
		name = h.name + "." + name
	}
	return h.ResetNamed(name)
}

func (h *hcAdapter) ResetNamed(name string) hclog.Logger {
	return &hcAdapter{l: h.l.With("component", name), name: name, implied: h.implied}
}

// SetLevel is a no-op: the slog handler's level is the one source of truth.
func (h *hcAdapter) SetLevel(hclog.Level) {}

func (h *hcAdapter) GetLevel() hclog.Level {
	if h.IsDebug() {
		return hclog.Debug
	}
	return hclog.Info
}

func (h *hcAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(nil), "", 0)
}

func (h *hcAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &stdWriter{l: h.l}
}

// Std returns a *log.Logger (what memberlist takes) whose lines, written as
// "[LEVEL] component: message", become slog records at that level.
func Std(l *slog.Logger, name string) *log.Logger {
	return log.New(&stdWriter{l: l.With("component", name)}, "", 0)
}

type stdWriter struct{ l *slog.Logger }

func (w *stdWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, "\r\n"))
	lv := slog.LevelInfo
	for _, c := range []struct {
		tag string
		lv  slog.Level
	}{{"[TRACE]", slog.LevelDebug}, {"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}} {
		if i := strings.Index(line, c.tag); i >= 0 {
			lv = c.lv
			line = strings.TrimSpace(line[i+len(c.tag):])
			break
		}
	}
	// memberlist's own component prefix ("memberlist: ") adds nothing.
	line = strings.TrimPrefix(line, "memberlist: ")
	w.l.Log(context.Background(), lv, line)
	return len(p), nil
}
