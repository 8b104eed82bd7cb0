package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestChangesResumeFromTheLastCursor: a step is printed only once its
// event is complete, and a dropped stream resumes at the next --addr
// node from that cursor, so the change cut off with the stream comes once.
func TestChangesResumeFromTheLastCursor(t *testing.T) {
	var mu sync.Mutex
	var cursors []string
	feed := func(lines ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			cursors = append(cursors, r.URL.Query().Get("cursor"))
			mu.Unlock()
			if r.URL.Path != "/v1/changes" {
				w.WriteHeader(404)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			for _, l := range lines {
				fmt.Fprintln(w, l)
			}
		}
	}
	a := httptest.NewServer(feed(
		"retry: 1000\n",
		`id: 0:5,1:2`,
		`data: {"cursor":"0:5,1:2","entries":[{"shard":0,"index":5,"time":"2026-12-04T10:00:00Z","changes":[{"name":"likes","part":0,"value":3,"delta":1}]}]}`,
		"",
		": keep-alive\n",
		`id: 0:5,1:3`,
		`data: {"cursor":"0:5,1:3","entries":[{"shard":1,"index":3,"time":"2026-12-04T10:00:00Z","changes":[{"name":"views","part":2,"value":9,"delta":9}]}]}`, // the stream ends before the event does
	))
	defer a.Close()
	b := httptest.NewServer(feed(
		`id: 0:5,1:3`,
		`data: {"cursor":"0:5,1:3","entries":[{"shard":1,"index":3,"time":"2026-12-04T10:00:00Z","changes":[{"name":"views","part":2,"value":9,"delta":9}]}]}`,
		"",
	))
	defer b.Close()
	var out, errOut bytes.Buffer
	addr := strings.TrimPrefix(a.URL, "http://") + "," + strings.TrimPrefix(b.URL, "http://")
	code := run([]string{"--addr", addr, "changes", "--cursor", "", "--count", "2"}, &out, &errOut, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if want := "likes = 3 (+1, shard 0 index 5)\nviews (part 2) = 9 (+9, shard 1 index 3)\n"; out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
	if !strings.Contains(errOut.String(), "cursor 0:5,1:3") {
		t.Fatalf("stderr %q: no resume cursor", errOut.String())
	}
	if len(cursors) != 2 || cursors[0] != "" || cursors[1] != "0:5,1:2" {
		t.Fatalf("cursors asked for: %q, want \"\" then 0:5,1:2", cursors)
	}
}
