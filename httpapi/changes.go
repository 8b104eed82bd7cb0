package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
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

// stepJSON is one event of the feed: the entries that changed counters
// since the last one, and the cursor they bring a consumer to (also the
// event's id).
type stepJSON struct {
	Cursor  string            `json:"cursor"`
	Entries []changeEventJSON `json:"entries"`
}

// handleChanges streams every committed change after ?cursor= (or the
// Last-Event-ID a reconnecting client sends, which wins) as server-sent
// events, one per step: the entries that changed counters since the last
// step, in raft order per shard, with the cursor they reach as the
// event's id. A consumer applies a step's entries together with its
// cursor, and resumes from the last cursor it applied. A step with no
// entries only moves the cursor; a quiet feed sends a keep-alive comment
// every 15 s. ?follow=false ends the answer after the first step.
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
	from := q.Get("cursor")
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		from = id
	}
	cursor, err := a.feedCursor(ctx, from)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	events, next, err := a.core.ReadChanges(ctx, cursor)
	if err != nil {
		writeCoreError(w, err) // before the stream: a plain error answer, 410 for an expired cursor
		return
	}
	st := startStream(w, "text/event-stream", follow)
	w.WriteHeader(http.StatusOK)
	send := st.send
	var buf []byte
	if !send([]byte("retry: 1000\n\n")) {
		return
	}
	first := true // the first step always says where the feed is
	lastSent := time.Now()
	poll := changesPoll
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		round := time.Now()
		switch {
		case first || len(events) > 0 || !slices.Equal(next, cursor):
			st := stepJSON{Cursor: next.String(), Entries: make([]changeEventJSON, len(events))}
			for i, ev := range events {
				st.Entries[i] = eventJSON(ev)
			}
			data, _ := json.Marshal(st)
			buf = append(append(append(append(buf[:0], "id: "...), st.Cursor...), "\ndata: "...), data...)
			if !send(buf, eventEnd) {
				return
			}
			first, lastSent = false, time.Now()
		case time.Since(lastSent) >= keepAlive:
			if !send(keepAliveLine) {
				return
			}
			lastSent = time.Now()
		}
		if !follow {
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
			data, _ := json.Marshal(errorLine{Error: toAPIError(asCoreError(err))})
			send([]byte("event: error\ndata: "), data, eventEnd)
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
	// A dump may take longer than the server's write timeout, but a
	// client that stops reading must not hold it: the deadline moves on
	// with the writes.
	st := startStream(w, "application/x-ndjson", true)
	enc := json.NewEncoder(w)
	started := false
	cursor, err := a.core.Dump(r.Context(), func(s int, c node.DumpedCounter) error {
		st.extend()
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
