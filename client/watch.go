package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// WatchEvent is one state of a watched counter: its value (the sum of its
// sub-counters when split) and the raft index that state is at, which
// only grows.
type WatchEvent struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Index uint64 `json:"index"`
}

// WatchOptions are the optional parts of a watch.
type WatchOptions struct {
	// Stale reads the nodes' own replicas (faster; may lag) instead of
	// linearizably.
	Stale bool
	// Interval is the most events come per (default 100 ms, at least
	// 50 ms): changes in between are coalesced into the latest value.
	Interval time.Duration
}

// Watch streams the value of name to fn: first its value now, then each
// change, until ctx ends (Watch then returns nil) or fn returns false.
// When a node ends the stream, Watch resumes on the client's next address
// from the last event fn saw (Last-Event-ID), so no state older than one
// already seen comes again; it gives up once no node has answered for the
// retry deadline. An error answer other than a 503 (a bad name, say) is
// returned as an *APIError at once.
func (c *Client) Watch(ctx context.Context, name string, opts WatchOptions, fn func(WatchEvent) bool) error {
	q := url.Values{}
	if opts.Interval > 0 {
		q.Set("interval", opts.Interval.String())
	}
	if opts.Stale {
		q.Set("consistency", string(Stale))
	}
	path := "/v1/counters/" + url.PathEscape(name) + "/watch"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var last uint64
	return c.follow(ctx, func(hc *http.Client, base string) (got, done bool, err error) {
		done, err = c.stream(ctx, hc, base+path, &last, func(ev WatchEvent) bool {
			got = true
			return fn(ev)
		})
		return got, done, err
	})
}

// follow runs one stream after another until one ends the follow:
// attempt reads a stream from base, saying whether it delivered anything
// (which restarts the retry deadline) and whether its end is final (done:
// follow returns its err). Each attempt goes to the client's next address,
// with backoff between them; an error answer other than a 503 is final at
// once; the follow gives up once no node has delivered for the retry
// deadline, and returns nil when ctx ends.
func (c *Client) follow(ctx context.Context, attempt func(hc *http.Client, base string) (got, done bool, err error)) error {
	hc := *c.hc
	hc.Timeout = 0 // a stream has no end to wait for
	var failingSince time.Time
	backoff := c.minBackoff
	start := c.next.Add(1) - 1
	for n := uint64(0); ; n++ {
		got, done, err := attempt(&hc, c.bases[(start+n)%uint64(len(c.bases))])
		var apiErr *APIError
		switch {
		case ctx.Err() != nil:
			return nil
		case done:
			return err
		case errors.As(err, &apiErr) && apiErr.Status != http.StatusServiceUnavailable:
			return apiErr
		case got:
			failingSince, backoff = time.Time{}, c.minBackoff
		case failingSince.IsZero():
			failingSince = time.Now()
		case time.Since(failingSince) > c.retryDeadline:
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, c.maxBackoff)
	}
}

// stream reads one watch stream from u, resuming after *last; done is
// true when fn asked to stop.
func (c *Client) stream(ctx context.Context, hc *http.Client, u string, last *uint64, fn func(WatchEvent) bool) (done bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("User-Agent", "tally-go-client")
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*last, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, apiError(resp, data)
	}
	sc := bufio.NewScanner(resp.Body)
	var ev WatchEvent
	var have bool
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			have = json.Unmarshal([]byte(line[len("data: "):]), &ev) == nil
		case line == "" && have:
			*last, have = ev.Index, false
			if !fn(ev) {
				return true, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	return false, io.ErrUnexpectedEOF // the node ended the stream
}
