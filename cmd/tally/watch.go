package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
)

func init() {
	register(&command{
		name: "watch",
		args: "NAME [--stale] [--interval D] [--count N]",
		summary: "print a counter's value, then each change (at most one per --interval), until interrupted; " +
			"a dropped connection is resumed on the next --addr node from the last event seen",
		run: runWatch,
	})
}

type watchEvent struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Index uint64 `json:"index"`
}

func runWatch(e *env, args []string) error {
	fs := e.flagSet()
	stale := fs.Bool("stale", false, "read the nodes' own replicas (faster; may lag)")
	interval := fs.Duration("interval", 100*time.Millisecond, "at most one event per this long (changes in between are coalesced)")
	count := fs.Int("count", 0, "stop after this many events (0: run until interrupted)")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("watch takes one NAME")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	q := url.Values{"interval": {interval.String()}}
	if *stale {
		q.Set("consistency", "stale")
	}
	path := "/v1/counters/" + url.PathEscape(pos[0]) + "/watch?" + q.Encode()
	hc := e.httpClient(0) // a stream: no overall timeout
	addrs := e.addrs()
	var last uint64
	seen := 0
	failedSince := time.Time{}
	for try := 0; ; try++ {
		err := e.stream(ctx, hc, addrs[try%len(addrs)]+path, &last, func(ev watchEvent) bool {
			failedSince = time.Time{}
			seen++
			if e.json {
				e.printJSON(ev)
			} else {
				fmt.Fprintf(e.stdout, "%s = %d (index %d)\n", ev.Name, ev.Value, ev.Index)
			}
			return *count == 0 || seen < *count
		})
		if err == nil || ctx.Err() != nil {
			return nil // done, or interrupted
		}
		var apiErr *apiError
		if errors.As(err, &apiErr) && apiErr.status < 500 {
			return apiErr // bad input: retrying cannot help
		}
		if failedSince.IsZero() {
			failedSince = time.Now()
		} else if time.Since(failedSince) > e.timeout {
			return fmt.Errorf("watch: no node answers: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// apiError is an error answer to a watch request.
type apiError struct {
	status int
	body   string
}

func (a *apiError) Error() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal([]byte(a.body), &e) == nil && e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	return fmt.Sprintf("HTTP %d: %s", a.status, strings.TrimSpace(a.body))
}

// stream reads one watch stream, resuming after *last, and hands each
// event to on until it returns false (then stream returns nil).
func (e *env) stream(ctx context.Context, hc *http.Client, u string, last *uint64, on func(watchEvent) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if *last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(*last, 10))
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &apiError{status: resp.StatusCode, body: string(b)}
	}
	sc := bufio.NewScanner(resp.Body)
	var ev watchEvent
	var data bool
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			data = json.Unmarshal([]byte(line[len("data: "):]), &ev) == nil
		case line == "" && data:
			*last, data = ev.Index, false
			if !on(ev) {
				return nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF // the node closed the stream
}
