package lazyfs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// The control channel: a unix socket, one command a line, one JSON
// answer (an Answer) a line:
//
//	drop               the power loss: forget every unsynced write
//	sync               write every unsynced change back (sync(1))
//	stats              the counters
//	fake-fsync GLOB    from now on, fsyncs of files whose base name matches
//	                   GLOB succeed without persisting (a testing hook)
//	fake-fsync         turn that off
//
// Anything else is answered with an error and changes nothing.

// Answer is the control channel's answer to one command.
type Answer struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Files int    `json:"files,omitempty"` // drop, sync: files whose unsynced data was dropped or written
	Bytes int64  `json:"bytes,omitempty"` // ... and their bytes
	Stats *Stats `json:"stats,omitempty"`
}

// Do runs one control command.
func (f *FS) Do(cmd string) Answer {
	verb, arg, _ := strings.Cut(strings.TrimSpace(cmd), " ")
	arg = strings.TrimSpace(arg)
	switch {
	case verb == "drop" && arg == "":
		files, bytes := f.Drop()
		return Answer{OK: true, Files: files, Bytes: bytes}
	case verb == "sync" && arg == "":
		files, bytes, err := f.Sync()
		if err != nil {
			return Answer{Error: err.Error(), Files: files, Bytes: bytes}
		}
		return Answer{OK: true, Files: files, Bytes: bytes}
	case verb == "stats" && arg == "":
		s := f.Stats()
		return Answer{OK: true, Stats: &s}
	case verb == "fake-fsync":
		if err := f.SetFakeFsync(arg); err != nil {
			return Answer{Error: err.Error()}
		}
		f.log.Warn("lazyfs: fake fsync", "pattern", arg)
		return Answer{OK: true}
	case verb == "drop" || verb == "sync" || verb == "stats":
		return Answer{Error: fmt.Sprintf("%s takes no argument", verb)}
	}
	return Answer{Error: fmt.Sprintf("unknown command %q (want drop, sync, stats or fake-fsync [GLOB])", cmd)}
}

// ServeControl answers control commands on l until l is closed.
func (f *FS) ServeControl(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go f.serveConn(c)
	}
}

func (f *FS) serveConn(c net.Conn) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	enc := json.NewEncoder(c)
	for sc.Scan() {
		if err := enc.Encode(f.Do(sc.Text())); err != nil {
			return
		}
	}
}

// Command sends one command to the control socket at path and returns
// the answer; a command the file system refused is an error too.
func Command(ctx context.Context, path, cmd string) (Answer, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return Answer{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(time.Minute))
	}
	if _, err := fmt.Fprintln(c, cmd); err != nil {
		return Answer{}, err
	}
	var a Answer
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&a); err != nil {
		return Answer{}, fmt.Errorf("lazyfs control %s: %w", path, err)
	}
	if !a.OK {
		return a, fmt.Errorf("lazyfs control %s: %s: %s", path, cmd, a.Error)
	}
	return a, nil
}
