package transport

import (
	"net"
	"sync"
	"time"
)

// heartbeatLinger is how long a heartbeat may wait for more frames to
// share its write. Every raft group of a node heartbeats a peer at the
// same moments, so the heartbeats of all groups leave in one write.
const heartbeatLinger = time.Millisecond

// maxPendingWrite is how many encoded bytes may wait for a connection's
// writer before senders block: enough for many full AppendEntries, small
// enough that a stalled peer cannot make a node buffer without bound.
const maxPendingWrite = 32 << 20

// keepWriteBuffer is the largest buffer the writer keeps for reuse; a
// rare huge write does not pin its memory for the connection's life.
const keepWriteBuffer = 4 << 20

// coalescer owns the writing side of one connection. Senders encode their
// frames straight into its pending buffer, and everything that accumulates
// while a Write is in flight (heartbeats, appends and responses of every
// shard) leaves in the next single Write.
//
// There is one writer at a time. A sender that finds no write in flight
// writes itself, sparing a goroutine hand-off on an idle connection; if
// more frames arrived meanwhile, it passes the writing on to the
// connection's writer goroutine (run) and returns, so no sender is kept
// writing other senders' frames for long.
type coalescer struct {
	conn    net.Conn
	timeout time.Duration // write deadline per Write; 0 = none
	onError func(error)   // called once, without locks held, when a Write fails

	mu      sync.Mutex
	pending []byte
	spare   []byte
	writing bool          // a writer (a sender, or run) owns the connection
	err     error         // set once the connection is unusable; sticky
	drained chan struct{} // closed after the next Write; nil until a sender waits for room
	handoff chan struct{} // cap 1: run now owns the writing
	stop    chan struct{} // closed by close
	once    sync.Once

	linger *time.Timer // flushes lazy frames nobody else has written
	armed  bool        // linger is set to fire
}

func newCoalescer(c net.Conn, timeout time.Duration, onError func(error)) *coalescer {
	return &coalescer{
		conn:    c,
		timeout: timeout,
		onError: onError,
		handoff: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
}

// frame appends one frame, encoded by enc, to the pending buffer. enc
// appends a body to b and returns it; frame adds the length. It blocks
// while more than maxPendingWrite bytes are waiting, until room is made or
// the deadline passes. A lazy frame (a heartbeat or its answer) is not
// written at once: it leaves with the next frame that is, or after
// heartbeatLinger.
func (w *coalescer) frame(limit int, deadline time.Time, lazy bool, enc func(b []byte) ([]byte, error)) error {
	w.mu.Lock()
	for w.err == nil && len(w.pending) > maxPendingWrite {
		if w.drained == nil {
			w.drained = make(chan struct{})
		}
		ch := w.drained
		w.mu.Unlock()
		wait := time.Until(deadline)
		if wait <= 0 {
			return errTimeout
		}
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-w.stop:
		case <-t.C:
		}
		t.Stop()
		w.mu.Lock()
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	b, off := beginFrame(w.pending)
	b, err := enc(b)
	if err == nil {
		b, err = endFrame(b, off, limit)
	} else {
		b = b[:off]
	}
	w.pending = b
	if err != nil || w.writing {
		w.mu.Unlock()
		return err // a write in flight takes the new frame with the next one
	}
	if lazy {
		if !w.armed {
			w.armed = true
			if w.linger == nil {
				w.linger = time.AfterFunc(heartbeatLinger, w.flushLazy)
			} else {
				w.linger.Reset(heartbeatLinger)
			}
		}
		w.mu.Unlock()
		return nil
	}
	w.writing = true
	out, drained := w.takeLocked()
	w.mu.Unlock()

	if err := w.write(out, drained); err != nil {
		return err
	}
	w.mu.Lock()
	if len(w.pending) > 0 && w.err == nil {
		w.mu.Unlock()
		w.handoff <- struct{}{} // cannot block: only the owner sends, once
		return nil
	}
	w.writing = false
	w.mu.Unlock()
	return nil
}

// flushLazy hands lazy frames that no other write took to the writer.
func (w *coalescer) flushLazy() {
	w.mu.Lock()
	w.armed = false
	if w.writing || len(w.pending) == 0 || w.err != nil {
		w.mu.Unlock()
		return
	}
	w.writing = true
	w.mu.Unlock()
	w.handoff <- struct{}{} // cannot block: only the owner sends, once
}

// takeLocked swaps out the pending bytes for writing.
func (w *coalescer) takeLocked() ([]byte, chan struct{}) {
	out := w.pending
	w.pending = w.spare[:0]
	w.spare = nil
	drained := w.drained
	w.drained = nil
	return out, drained
}

// write does one Write of out, by the current owner.
func (w *coalescer) write(out []byte, drained chan struct{}) error {
	if w.timeout > 0 {
		w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	}
	_, err := w.conn.Write(out)
	if drained != nil {
		close(drained)
	}
	if err != nil {
		w.fail(err)
		w.onError(err)
		return err
	}
	if cap(out) <= keepWriteBuffer {
		w.mu.Lock()
		if w.spare == nil {
			w.spare = out[:0]
		}
		w.mu.Unlock()
	}
	return nil
}

// run writes whatever is pending each time a sender hands the writing
// over, until the connection fails or close is called.
func (w *coalescer) run() {
	for {
		select {
		case <-w.handoff:
		case <-w.stop:
			return
		}
		for {
			w.mu.Lock()
			if len(w.pending) == 0 || w.err != nil {
				w.writing = false
				w.mu.Unlock()
				break
			}
			out, drained := w.takeLocked()
			w.mu.Unlock()
			if w.write(out, drained) != nil {
				return
			}
		}
	}
}

// fail makes every later frame call return err and wakes blocked senders.
func (w *coalescer) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.pending = nil
	if w.drained != nil {
		close(w.drained)
		w.drained = nil
	}
	w.mu.Unlock()
}

// close stops the writer goroutine; frames not yet written are dropped.
func (w *coalescer) close(err error) {
	w.fail(err)
	w.mu.Lock()
	if w.linger != nil {
		w.linger.Stop()
	}
	w.mu.Unlock()
	w.once.Do(func() { close(w.stop) })
}
