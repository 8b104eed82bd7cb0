package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"tally/node"
)

// changesPoll is how long a feed waits before it reads the shards this
// node holds no replica of again (those it holds wake it at once), growing
// to changesIdlePoll while nothing changes.
// changesPace is the least time between reads of a busy feed: under load
// a read then carries many entries' changes rather than one's.
const (
	changesPoll     = 50 * time.Millisecond
	changesIdlePoll = 500 * time.Millisecond
	changesPace     = 20 * time.Millisecond
)

type counterChangeJSON struct {
	Name  string `json:"name"`
	Part  int    `json:"part"`
	Value int64  `json:"value"`
	Delta int64  `json:"delta"`
}

type changeEventJSON struct {
	Shard   int                 `json:"shard"`
	Index   uint64              `json:"index"`
	Time    string              `json:"time"`
	Changes []counterChangeJSON `json:"changes"`
}

// feedCursor reads ?cursor=: shard:index pairs, "now", or nothing (every
// shard from its beginning).
func (a *api) feedCursor(ctx context.Context, s string) (node.Cursor, error) {
	if s == "now" {
		return a.core.NowCursor(ctx)
	}
	return node.ParseCursor(s, a.core.ShardCount())
}

// handleChanges streams every committed change after ?cursor= as
// newline-delimited JSON: a line per entry that changed counters (in raft
// order per shard), then a {"cursor":…} line saying how far those lines
// bring a consumer. A consumer applies what comes before a cursor line
// together with that cursor, and resumes from the last one it applied.
// ?follow=false ends the answer after the changes there are now.
func (a *api) handleChanges(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	follow := true
	if s := q.Get("follow"); s != "" {
		v, err := strconv.ParseBool(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_follow", "follow "+strconv.Quote(s)+": want true or false", nil)
			return
		}
		follow = v
	}
	ctx := r.Context()
	cursor, err := a.feedCursor(ctx, q.Get("cursor"))
	if err != nil {
		writeCoreError(w, err)
		return
	}
	events, next, err := a.core.ReadChanges(ctx, cursor)
	if err != nil {
		writeCoreError(w, err) // before the stream: a plain error answer, 410 for an expired cursor
		return
	}
	rc := http.NewResponseController(w)
	if follow {
		rc.SetReadDeadline(time.Time{})
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(v any) bool {
		rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
		return enc.Encode(v) == nil
	}
	var lastSent time.Time // the first round always says where it is
	poll := changesPoll
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		round := time.Now()
		for _, ev := range events {
			if !send(eventJSON(ev)) {
				return
			}
		}
		if len(events) > 0 || next.String() != cursor.String() || time.Since(lastSent) >= keepAlive {
			// The cursor line; idle, it doubles as the keep-alive.
			if !send(struct {
				Cursor string `json:"cursor"`
			}{next.String()}) {
				return
			}
			lastSent = time.Now()
		}
		if rc.Flush() != nil || !follow {
			return
		}
		if len(events) > 0 {
			pace.Reset(time.Until(round.Add(changesPace)))
			select {
			case <-pace.C:
			case <-ctx.Done():
				return
			}
		}
		// An idle feed reads the shards it holds no replica of less and
		// less often (those it holds wake it at once).
		if len(events) > 0 {
			poll = changesPoll
		} else {
			poll = min(2*poll, changesIdlePoll)
		}
		cursor = next
		wctx, cancel := context.WithTimeout(ctx, poll)
		alive := a.core.WaitChanges(wctx, cursor)
		cancel()
		if !alive || ctx.Err() != nil {
			return
		}
		events, next, err = a.core.ReadChanges(ctx, cursor)
		if err != nil {
			send(errorLine{Error: toAPIError(asCoreError(err))})
			rc.Flush()
			return
		}
	}
}

type errorLine struct {
	Error *apiError `json:"error"`
}

func eventJSON(ev node.ChangeEvent) changeEventJSON {
	out := changeEventJSON{Shard: ev.Shard, Index: ev.Index, Time: time.Unix(0, ev.Time).UTC().Format(time.RFC3339Nano), Changes: make([]counterChangeJSON, len(ev.Changes))}
	for i, c := range ev.Changes {
		out.Changes[i] = counterChangeJSON(c)
	}
	return out
}

// handleDump streams every counter part with a non-zero value as
// newline-delimited JSON, {"shard","name","part","value"} a line, then
// the {"cursor":…} of that state: where a consumer that loaded the dump
// follows the changes from. Without the final cursor line, the dump was
// cut short and must not be used.
func (a *api) handleDump(w http.ResponseWriter, r *http.Request) {
	type line struct {
		Shard int    `json:"shard"`
		Name  string `json:"name"`
		Part  int    `json:"part"`
		Value int64  `json:"value"`
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-cache")
	enc := json.NewEncoder(w)
	started := false
	// A dump may take longer than the server's write timeout, but a
	// client that stops reading must not hold it: the deadline moves on
	// with the writes.
	const writeWithin = 30 * time.Second
	var deadline time.Time
	cursor, err := a.core.Dump(r.Context(), func(s int, c node.DumpedCounter) error {
		if now := time.Now(); deadline.Sub(now) < writeWithin/2 {
			deadline = now.Add(writeWithin)
			rc.SetWriteDeadline(deadline)
		}
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
		}
		return enc.Encode(line{Shard: s, Name: c.Name, Part: c.Part, Value: c.Value})
	})
	if err != nil {
		if !started {
			writeCoreError(w, err)
		}
		return // cut short: no cursor line
	}
	if !started {
		w.WriteHeader(http.StatusOK)
	}
	enc.Encode(struct {
		Cursor string `json:"cursor"`
	}{cursor.String()})
}
