package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Change is one counter part moved by a committed entry. An unsplit
// counter has one part, 0; a split counter's value is the sum of its
// parts' values.
type Change struct {
	Name  string `json:"name"`
	Part  int    `json:"part"`
	Value int64  `json:"value"` // the part's value after the entry
	Delta int64  `json:"delta"` // how far the entry moved it
}

// ChangeEvent is what one committed entry of a shard changed.
type ChangeEvent struct {
	Shard   int       `json:"shard"`
	Index   uint64    `json:"index"`
	Time    time.Time `json:"time"` // the leader's clock when it proposed the entry
	Changes []Change  `json:"changes"`
}

// ErrCursorExpired: the cluster no longer holds the changes after the
// cursor (a consumer fell further behind than the nodes'
// --changes-retention). Resynchronize from Dump.
var ErrCursorExpired = errors.New("changefeed cursor expired")

// CursorNow starts a changefeed at the changes still to come.
const CursorNow = "now"

// feedLine is a line of a dump (or the data of a feed's error event).
type feedLine struct {
	Shard  int     `json:"shard"`
	Cursor *string `json:"cursor"`
	Error  *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Name  string `json:"name"` // dump lines
	Part  int    `json:"part"`
	Value int64  `json:"value"`
}

// Changes follows the changefeed from cursor ("" for the very beginning,
// CursorNow for what is still to come): fn gets the events of each step
// in raft order per shard, with the cursor they bring the consumer to; a
// consumer stores what it makes of the events together with that cursor,
// and resumes from it. Steps with no events move the cursor too. When a
// node ends the stream, Changes resumes on the client's next address from
// the last cursor fn accepted, giving up once no node has answered for
// the retry deadline. It returns fn's error, ctx's end (nil), or an error
// wrapping ErrCursorExpired when the history is gone.
func (c *Client) Changes(ctx context.Context, cursor string, fn func(events []ChangeEvent, cursor string) error) error {
	return c.follow(ctx, func(hc *http.Client, base string) (got, done bool, err error) {
		err = c.followFeed(ctx, hc, base+"/v1/changes?cursor="+url.QueryEscape(cursor), func(evs []ChangeEvent, next string) error {
			got = true
			if err := fn(evs, next); err != nil {
				return &fnError{err}
			}
			cursor = next
			return nil
		})
		var fe *fnError
		switch {
		case errors.As(err, &fe):
			return got, true, fe.err
		case errors.Is(err, ErrCursorExpired):
			return got, true, err
		}
		return got, false, err
	})
}

type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// feedIdle is how long a feed may stay silent before the client takes
// its node for stuck and moves on: the node sends a line at least every
// 15 s.
const feedIdle = 45 * time.Second

// followFeed reads one changefeed stream from u.
func (c *Client) followFeed(ctx context.Context, hc *http.Client, u string, step func([]ChangeEvent, string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(feedIdle, cancel)
	defer idle.Stop()
	body, err := c.openStream(ctx, hc, u)
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	// An event is a step's entries: an entry that expired very many
	// counters at once makes a long one.
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	var data []byte
	event := ""
	for sc.Scan() {
		idle.Reset(feedIdle)
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if data != nil {
				if err := feedEvent(event, data, step); err != nil {
					return err
				}
			}
			data, event = nil, ""
		case bytes.HasPrefix(line, []byte("data: ")):
			data = append(data, line[len("data: "):]...)
		case bytes.HasPrefix(line, []byte("event: ")):
			event = string(line[len("event: "):])
		}
		// id: repeats the cursor the data holds; retry: and comments
		// (keep-alives) need nothing.
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF // the node ended the stream
}

// feedEvent hands one server-sent event of the feed to step.
func feedEvent(event string, data []byte, step func([]ChangeEvent, string) error) error {
	if event == "error" {
		var l feedLine
		if err := json.Unmarshal(data, &l); err != nil || l.Error == nil {
			return fmt.Errorf("changefeed: bad error event %q", data)
		}
		if l.Error.Code == "cursor_expired" {
			return fmt.Errorf("%w: %s", ErrCursorExpired, l.Error.Message)
		}
		return &APIError{Status: http.StatusServiceUnavailable, Code: l.Error.Code, Message: l.Error.Message}
	}
	var st struct {
		Cursor  string        `json:"cursor"`
		Entries []ChangeEvent `json:"entries"`
	}
	if err := json.Unmarshal(data, &st); err != nil || st.Cursor == "" {
		return fmt.Errorf("changefeed: bad event %q", data)
	}
	return step(st.Entries, st.Cursor)
}

// openStream GETs u and returns the body of a 200 answer.
func (c *Client) openStream(ctx context.Context, hc *http.Client, u string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "tally-go-client")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		e := apiError(resp, data)
		if e.Code == "cursor_expired" {
			return nil, fmt.Errorf("%w: %s", ErrCursorExpired, e.Message)
		}
		return nil, e
	}
	return resp.Body, nil
}

// scanLines decodes newline-delimited JSON lines (a dump) from r into fn.
func scanLines(r io.Reader, fn func(*feedLine) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l feedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("changefeed: bad line: %w", err)
		}
		if err := fn(&l); err != nil {
			return err
		}
	}
	return sc.Err()
}

// DumpedCounter is one counter part of a dump.
type DumpedCounter struct {
	Shard int
	Name  string
	Part  int
	Value int64
}

// Dump reads every counter part with a non-zero value and the cursor of
// that state: load the dump, then follow Changes from the cursor, and
// nothing is missed or counted twice. A dump cut short is retried whole
// on the next address.
func (c *Client) Dump(ctx context.Context) ([]DumpedCounter, string, error) {
	hc := *c.hc
	hc.Timeout = 0
	var lastErr error
	start := c.next.Add(1) - 1
	deadline := time.Now().Add(c.retryDeadline)
	backoff := c.minBackoff
	for n := uint64(0); ; n++ {
		base := c.bases[(start+n)%uint64(len(c.bases))]
		out, cursor, err := c.dumpFrom(ctx, &hc, base+"/v1/changes/dump")
		if err == nil {
			return out, cursor, nil
		}
		lastErr = err
		var apiErr *APIError
		if ctx.Err() != nil || (errors.As(err, &apiErr) && apiErr.Status != http.StatusServiceUnavailable) || time.Now().After(deadline) {
			return nil, "", lastErr
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

func (c *Client) dumpFrom(ctx context.Context, hc *http.Client, u string) ([]DumpedCounter, string, error) {
	body, err := c.openStream(ctx, hc, u)
	if err != nil {
		return nil, "", err
	}
	defer body.Close()
	var out []DumpedCounter
	var cursor *string
	err = scanLines(body, func(l *feedLine) error {
		if l.Cursor != nil {
			cursor = l.Cursor
			return nil
		}
		out = append(out, DumpedCounter{Shard: l.Shard, Name: l.Name, Part: l.Part, Value: l.Value})
		return nil
	})
	if err == nil && cursor == nil {
		err = io.ErrUnexpectedEOF // cut short: unusable
	}
	if err != nil {
		return nil, "", err
	}
	return out, *cursor, nil
}
