package node

import "testing"

// TestWatchStateMovesOnWithTheSameValue: a later read with the value
// unchanged is no event for a watcher that has it, but a watcher resuming
// above the earlier index gets it; an older read is never taken.
func TestWatchStateMovesOnWithTheSameValue(t *testing.T) {
	sub := newWatchSub(watchKey{name: "c", linear: true})
	sub.offer(1, 400)
	seen := &Watch{sub: sub}
	if ev, ok := seen.Next(0); !ok || ev.Value != 1 || ev.Index != 400 {
		t.Fatalf("first: %+v %v", ev, ok)
	}
	changed := seen.Changed()
	sub.offer(1, 600)
	select {
	case <-changed:
		t.Fatal("an unchanged value woke the watchers")
	default:
	}
	if _, ok := seen.Next(400); ok {
		t.Fatal("an unchanged value is an event")
	}
	resumed := &Watch{sub: sub}
	if ev, ok := resumed.Next(500); !ok || ev.Index != 600 || string(ev.JSON) != `{"name":"c","value":1,"index":600}` {
		t.Fatalf("resuming above 500: %+v %v", ev, ok)
	}
	sub.offer(7, 550) // older than a read taken: ignored
	if ev, ok := (&Watch{sub: sub}).Next(0); !ok || ev.Value != 1 {
		t.Fatalf("after an older read: %+v %v", ev, ok)
	}
	sub.offer(2, 700)
	select {
	case <-changed:
	default:
		t.Fatal("a change did not wake the watchers")
	}
	if ev, ok := seen.Next(400); !ok || ev.Value != 2 || ev.Index != 700 {
		t.Fatalf("after a change: %+v %v", ev, ok)
	}
}
