package placement

// Redis Cluster's key → slot mapping, so that cluster-aware Redis clients
// compute the same slot for a key as tally does and send it straight to
// the node that leads it.

// NumSlots is the number of hash slots, as in Redis Cluster.
const NumSlots = 16384

// Slot returns the hash slot of a key: CRC16 (XMODEM) of the key modulo
// 16384, or of its hash tag, the part between the first '{' and the next
// '}' when that part is not empty, so that keys sharing a tag share a slot.
func Slot(key string) int {
	if i := indexByte(key, '{'); i >= 0 {
		if j := indexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % NumSlots)
}

// SlotShard returns the shard that owns a slot: shards own equal,
// contiguous slot ranges (see SlotRange).
func SlotShard(slot, shards int) uint32 {
	return uint32(slot * shards / NumSlots)
}

// SlotRange returns the first and last slot shard s owns.
func SlotRange(s uint32, shards int) (first, last int) {
	// The smallest slot k with k*shards/NumSlots >= s is ceil(s*NumSlots/shards).
	first = (int(s)*NumSlots + shards - 1) / shards
	last = ((int(s)+1)*NumSlots+shards-1)/shards - 1
	return first, last
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the
// checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
