package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestWatchReport: the watchers' lag after the last acknowledged write,
// as text or, with --json, as a JSON line of its own after the bench's.
func TestWatchReport(t *testing.T) {
	last := time.Unix(1000, 0)
	w := &benchWatchers{value: []int64{7, 7, 7}, at: []time.Time{last.Add(30 * time.Millisecond), last.Add(10 * time.Millisecond), last.Add(90 * time.Millisecond)}}
	w.lastAck.Store(last.UnixNano())
	var text, js bytes.Buffer
	w.report(&text, 7, time.Second, false)
	if want := "watchers: 3 saw the final value 7, median 30ms and at most 90ms after the last acknowledged write\n"; text.String() != want {
		t.Fatalf("text %q, want %q", text.String(), want)
	}
	w.report(&js, 7, time.Second, true)
	var got struct{ Watch watchReport }
	if err := json.Unmarshal(js.Bytes(), &got); err != nil || got.Watch.Watchers != 3 || got.Watch.MedianMS != 30 || got.Watch.MaxMS != 90 || got.Watch.Behind != 0 {
		t.Fatalf("json %s: %+v %v", js.String(), got, err)
	}
	text.Reset()
	w.report(&text, 8, 20*time.Millisecond, false)
	if !strings.Contains(text.String(), "3 of 3 did not show the final value 8") {
		t.Fatalf("behind: %q", text.String())
	}
}
