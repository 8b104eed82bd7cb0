package raft

import (
	"sync"
	"sync/atomic"
)

// leaderLogWriter writes a leader's new entries to its own log store in the
// background, in index order, so that replication to the followers runs
// while the leader's write (and its fsync) is in progress (Raft
// dissertation §10.2.1). Until an entry's write returns it stays staged
// here, and the replicators read it from here instead of the log store.
// The leader counts itself toward the commit quorum only up to durable().
type leaderLogWriter struct {
	logs   LogStore
	wakeCh chan struct{} // new entries are staged, or stop was called
	doneCh chan struct{} // a write returned: durable() or err() moved
	exitCh chan struct{} // the writer goroutine returned

	mu       sync.Mutex
	staged   []*Log // dispatched, not yet written; contiguous, index order
	writing  int    // staged[:writing] are being written now
	durableI uint64 // last index this writer stored
	failure  error  // first failed write; nothing is written after it
	stopping bool

	flushWaits atomic.Uint64 // flushes that waited for a write (for tests)
}

func newLeaderLogWriter(logs LogStore) *leaderLogWriter {
	return &leaderLogWriter{
		logs:   logs,
		wakeCh: make(chan struct{}, 1),
		doneCh: make(chan struct{}, 1),
		exitCh: make(chan struct{}),
	}
}

// stage queues entries for writing. They must follow the staged ones.
func (w *leaderLogWriter) stage(logs []*Log) {
	w.mu.Lock()
	w.staged = append(w.staged, logs...)
	w.mu.Unlock()
	asyncNotifyCh(w.wakeCh)
}

// getLog reads a staged entry, then the log store: an entry leaves the
// staging area only after its write returned.
func (w *leaderLogWriter) getLog(index uint64, out *Log) error {
	w.mu.Lock()
	if n := len(w.staged); n > 0 {
		first := w.staged[0].Index
		if index >= first && index < first+uint64(n) {
			*out = *w.staged[index-first]
			w.mu.Unlock()
			return nil
		}
	}
	w.mu.Unlock()
	return w.logs.GetLog(index, out)
}

// durable returns the last index written by this writer (0 before the
// first write) and the error of a failed write.
func (w *leaderLogWriter) durable() (uint64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durableI, w.failure
}

// run writes staged entries until stop. Every write takes all that is
// staged, so entries dispatched while a write is in progress share the
// next one.
func (w *leaderLogWriter) run() {
	defer close(w.exitCh)
	for {
		w.mu.Lock()
		for len(w.staged) == 0 || w.failure != nil {
			if w.stopping {
				w.mu.Unlock()
				return
			}
			w.mu.Unlock()
			<-w.wakeCh
			w.mu.Lock()
		}
		batch := w.staged
		w.writing = len(batch)
		w.mu.Unlock()

		err := w.logs.StoreLogs(batch)

		w.mu.Lock()
		if err != nil {
			w.failure = err
		} else {
			w.durableI = batch[len(batch)-1].Index
			// Appends after the batch may have reallocated the slice;
			// drop the written prefix of whatever is staged now.
			w.staged = w.staged[w.writing:]
		}
		w.writing = 0
		w.mu.Unlock()
		asyncNotifyCh(w.doneCh)
	}
}

// stop waits until everything staged is written (or a write failed) and
// the writer has returned.
func (w *leaderLogWriter) stop() {
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	asyncNotifyCh(w.wakeCh)
	<-w.exitCh
}

// unwritten returns whether entries were staged and never written (a
// write failed).
func (w *leaderLogWriter) unwritten() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.staged) > 0
}

// flush waits until everything staged so far is written, and returns the
// error of a failed write. Only the leader loop may call it: it takes the
// write notification the loop would otherwise get, and gives it back.
func (w *leaderLogWriter) flush() error {
	defer asyncNotifyCh(w.doneCh)
	for {
		w.mu.Lock()
		pending, err := len(w.staged), w.failure
		w.mu.Unlock()
		if pending == 0 || err != nil {
			return err
		}
		w.flushWaits.Add(1)
		<-w.doneCh
	}
}
