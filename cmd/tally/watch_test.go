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

// TestWatchResumesOnAnotherNode: when a node ends the stream, watch goes
// on at the next --addr node from the last event it printed.
func TestWatchResumesOnAnotherNode(t *testing.T) {
	var mu sync.Mutex
	var resumedFrom []string
	stream := func(events ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			resumedFrom = append(resumedFrom, r.Header.Get("Last-Event-ID"))
			mu.Unlock()
			if !strings.HasSuffix(r.URL.Path, "/v1/counters/likes/watch") || r.URL.Query().Get("interval") != "250ms" {
				w.WriteHeader(404)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 1000\n\n")
			for _, ev := range events {
				fmt.Fprint(w, ev)
			}
		}
	}
	a := httptest.NewServer(stream("id: 7\ndata: {\"name\":\"likes\",\"value\":1,\"index\":7}\n\n", ": keep-alive\n\n", "id: 9\ndata: {\"name\":\"likes\",\"value\":2,\"index\":9}\n\n"))
	defer a.Close()
	b := httptest.NewServer(stream("id: 12\ndata: {\"name\":\"likes\",\"value\":5,\"index\":12}\n\n"))
	defer b.Close()
	var out, errOut bytes.Buffer
	addr := strings.TrimPrefix(a.URL, "http://") + "," + strings.TrimPrefix(b.URL, "http://")
	code := run([]string{"--addr", addr, "watch", "likes", "--interval", "250ms", "--count", "3"}, &out, &errOut, func(string) string { return "" })
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if want := "likes = 1 (index 7)\nlikes = 2 (index 9)\nlikes = 5 (index 12)\n"; out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
	if len(resumedFrom) != 2 || resumedFrom[0] != "" || resumedFrom[1] != "9" {
		t.Fatalf("Last-Event-ID of the requests: %q, want \"\" then 9", resumedFrom)
	}
}

// TestWatchBadInputIsFinal: an error answer other than a 503 ends the
// watch at once with the server's words, without retrying.
func TestWatchBadInputIsFinal(t *testing.T) {
	calls := 0
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":{"code":"bad_interval","message":"interval too short"}}`)
	}))
	defer s.Close()
	var out, errOut bytes.Buffer
	code := run([]string{"--addr", strings.TrimPrefix(s.URL, "http://"), "watch", "likes", "--interval", "1ms"}, &out, &errOut, func(string) string { return "" })
	if code == 0 || !strings.Contains(errOut.String(), "bad_interval") || calls != 1 {
		t.Fatalf("exit %d, %d calls, stderr %q", code, calls, errOut.String())
	}
}
