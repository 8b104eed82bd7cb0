package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
)

// Digest returns a hash of the counters: their names, values, expiries and
// actor sets, in name order. Two replicas that applied the same log prefix
// have the same Digest, so comparing digests at equal applied indexes
// detects replicas that diverged. The dedup table and the clock are left
// out: they only decide how future entries apply, and a replica restored
// from a snapshot may hold them in another layout. Counters already
// expired as of LastTime() are left out too (they read as absent).
//
// Digest reads the whole state: it is meant for tests and debugging, not
// for a request path. It is read-only, like Get.
func (m *Machine) Digest() string {
	t := m.ctrs
	ids := slices.DeleteFunc(t.sorted(t.n, t.live), func(r uint32) bool {
		c := ctrOf(t.rec(r), t.actors, r)
		return c.expired(m.lastTime)
	})
	h := sha256.New()
	var buf [binary.MaxVarintLen64]byte
	putU := func(v uint64) { h.Write(buf[:binary.PutUvarint(buf[:], v)]) }
	putS := func(s string) { putU(uint64(len(s))); h.Write([]byte(s)) }
	putU(uint64(len(ids)))
	for _, r := range ids {
		c := ctrOf(t.rec(r), t.actors, r)
		name := t.name(t.rec(r).name)
		putU(uint64(len(name)))
		h.Write(name)
		h.Write(buf[:binary.PutVarint(buf[:], c.value)])
		h.Write(buf[:binary.PutVarint(buf[:], c.expiry)])
		if c.actors == nil {
			putU(0)
			continue
		}
		actors := c.actors.sorted()
		putU(uint64(len(actors)))
		for _, a := range actors {
			putS(a)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
