package placement

import (
	"fmt"
	"reflect"
	"testing"
)

func TestHomeIsStableAndSpread(t *testing.T) {
	// Pinned values: a change here would move every stored counter.
	if got := Home("likes:post:42", 8); got != Home("likes:post:42", 8) {
		t.Fatal("Home is not deterministic")
	}
	counts := make([]int, 8)
	for i := 0; i < 8000; i++ {
		counts[Home(fmt.Sprintf("c%d", i), 8)]++
	}
	for s, c := range counts {
		if c < 800 || c > 1200 {
			t.Fatalf("shard %d got %d of 8000 names; hash is badly skewed: %v", s, c, counts)
		}
	}
}

func TestPlace(t *testing.T) {
	got := Place([]string{"n3", "n1", "n2"}, 4, 3)
	for s, reps := range got {
		if !reflect.DeepEqual(reps, []string{"n1", "n2", "n3"}) {
			t.Fatalf("shard %d: %v, want all three nodes", s, reps)
		}
	}
	got = Place([]string{"a", "b", "c", "d", "e"}, 5, 3)
	hosted := map[string]int{}
	for s, reps := range got {
		if len(reps) != 3 {
			t.Fatalf("shard %d has %d replicas", s, len(reps))
		}
		for _, id := range reps {
			hosted[id]++
		}
	}
	for id, n := range hosted {
		if n != 3 {
			t.Fatalf("node %s hosts %d replicas, want 3 (even spread): %v", id, n, hosted)
		}
	}
	if one := Place([]string{"solo"}, 2, 3); len(one[0]) != 1 || one[1][0] != "solo" {
		t.Fatalf("single node placement: %v", one)
	}
}

func TestSubNames(t *testing.T) {
	for _, tc := range []struct {
		stored string
		name   string
		i      int
	}{
		{"views", "views", 0},
		{"views/1", "views", 1},
		{"views/63", "views", 63},
		{"a/b/7", "a/b", 7},
		{"views/0", "views/0", 0},   // index 0 is the counter itself, never a suffix
		{"views/64", "views/64", 0}, // beyond MaxSplit
		{"views/07", "views/07", 0}, // not canonical
		{"views/x", "views/x", 0},
		{"views/", "views/", 0},
	} {
		name, i := ParseSubName(tc.stored)
		if name != tc.name || i != tc.i {
			t.Errorf("ParseSubName(%q) = %q, %d; want %q, %d", tc.stored, name, i, tc.name, tc.i)
		}
		if tc.i > 0 && SubName(tc.name, tc.i) != tc.stored {
			t.Errorf("SubName(%q, %d) = %q; want %q", tc.name, tc.i, SubName(tc.name, tc.i), tc.stored)
		}
	}
	if SubName("views", 0) != "views" {
		t.Errorf("SubName(views, 0) = %q", SubName("views", 0))
	}
}

// Both schemes are fixed forever: a cluster formed with one must find its
// counters where it put them. The FNV values are those of the versions
// before slots.
func TestSchemesAreFixed(t *testing.T) {
	for _, c := range []struct {
		name        string
		fnv8, fnv64 uint32
	}{
		{"likes:post:42", 7, 23},
		{"views:video:9", 5, 37},
		{"a", 4, 12},
		{"rate:api-key-9", 5, 13},
	} {
		if got := (Map{FNV, 8}).Home(c.name); got != c.fnv8 {
			t.Errorf("fnv, 8 shards: Home(%q) = %d, want %d", c.name, got, c.fnv8)
		}
		if got := (Map{FNV, 64}).Home(c.name); got != c.fnv64 {
			t.Errorf("fnv, 64 shards: Home(%q) = %d, want %d", c.name, got, c.fnv64)
		}
		for _, shards := range []int{8, 64} {
			want := SlotShard(Slot(c.name), shards)
			if got := (Map{Slots, shards}).Home(c.name); got != want || got != Home(c.name, shards) {
				t.Errorf("slots, %d shards: Home(%q) = %d, want %d (slot %d)", shards, c.name, got, want, Slot(c.name))
			}
		}
	}
	if _, err := ParseScheme("md5"); err == nil {
		t.Error("an unknown scheme was accepted")
	}
}
