package placement

import "testing"

// The slots Redis Cluster gives these keys (CLUSTER KEYSLOT on a Redis
// server), so a cluster client's routing agrees with tally's.
func TestSlotMatchesRedis(t *testing.T) {
	for key, want := range map[string]int{
		"":                     0,
		"foo":                  12182,
		"bar":                  5061,
		"123456789":            12739, // CRC16/XMODEM check value 0x31C3
		"{user1000}.following": 3443,
		"{user1000}.followers": 3443,
		"user1000":             3443,
		"foo{}{bar}":           8363, // an empty first tag: the whole key
		"foo{{bar}}zap":        4015, // the tag is "{bar"
		"foo{bar}{zap}":        5061, // only the first tag counts
	} {
		if got := Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestSlotRangesCoverEverySlotOnce(t *testing.T) {
	for _, shards := range []int{1, 3, 7, 8, 64, 1000} {
		next := 0
		for s := range shards {
			first, last := SlotRange(uint32(s), shards)
			if first != next || last < first {
				t.Fatalf("%d shards: shard %d owns %d-%d, want it to start at %d", shards, s, first, last, next)
			}
			for _, slot := range []int{first, last} {
				if got := SlotShard(slot, shards); got != uint32(s) {
					t.Fatalf("%d shards: slot %d maps to shard %d, its range says %d", shards, slot, got, s)
				}
			}
			next = last + 1
		}
		if next != NumSlots {
			t.Fatalf("%d shards: ranges end at %d", shards, next)
		}
	}
}
