package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"tally/node"
)

const (
	defaultWatchInterval = 100 * time.Millisecond
	maxWatchInterval     = time.Hour
	// keepAlive is how often an idle stream carries a comment line, so
	// proxies and clients can tell a quiet counter from a dead connection.
	keepAlive = 15 * time.Second
)

var (
	keepAliveLine = []byte(": keep-alive\n\n")
	dataPrefix    = []byte("\ndata: ")
	eventEnd      = []byte("\n\n")
)

// handleWatch streams a counter's value as server-sent events: the first
// event is its value now, then one for each change, at most one per
// ?interval= (the latest value then: changes in between are coalesced).
// Each event's id is the raft index its value is at; a client that
// reconnects with Last-Event-ID gets no state older than that.
func (a *api) handleWatch(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	c, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	interval := defaultWatchInterval
	if s := r.URL.Query().Get("interval"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < node.MinWatchInterval || d > maxWatchInterval {
			writeError(w, http.StatusBadRequest, "bad_interval", fmt.Sprintf("interval %q: want a duration from %v to %v, e.g. 250ms", s, node.MinWatchInterval, maxWatchInterval), nil)
			return
		}
		interval = d
	}
	var after uint64
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_event_id", fmt.Sprintf("Last-Event-ID %q: want the id of an event this API sent", s), nil)
			return
		}
		after = v
	}
	watch, err := a.core.Watch(r.Context(), name, c)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	defer watch.Close()

	st := startStream(w, "text/event-stream", true)
	w.WriteHeader(http.StatusOK)
	send := st.send
	if !send([]byte("retry: 1000\n\n")) {
		return
	}
	ctx := r.Context()
	quiet := time.NewTicker(keepAlive)
	defer quiet.Stop()
	// await blocks until the counter changes or the timer fires (the
	// other one nil), writing a keep-alive comment on a quiet stream
	// meanwhile; false when the stream must end.
	await := func(changed <-chan struct{}, timer <-chan time.Time) bool {
		for {
			select {
			case <-changed:
				return true
			case <-timer:
				return true
			case <-quiet.C:
				if !send(keepAliveLine) {
					return false
				}
			case <-watch.Ended():
				return false
			case <-ctx.Done():
				return false
			}
		}
	}
	pause := time.NewTimer(interval)
	defer pause.Stop()
	var id []byte
	for {
		// Changed before Next: a change between the two is not missed.
		changed := watch.Changed()
		ev, ok := watch.Next(after)
		if !ok {
			if !await(changed, nil) {
				return
			}
			continue
		}
		id = strconv.AppendUint(append(id[:0], "id: "...), ev.Index, 10)
		if !send(id, dataPrefix, ev.JSON, eventEnd) {
			return
		}
		after = ev.Index
		// At most one event per interval: wait it out before the next.
		pause.Reset(interval)
		if !await(nil, pause.C) {
			return
		}
	}
}
