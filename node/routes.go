package node

import (
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/memberlist"

	"tally/internal/codec"
)

// Routing state: which shards a node hosts and which it leads, with the
// term of each claim. It grows with the shard count (64 shards' claims
// and a long peer list overflow memberlist's 512-byte node meta), so it
// travels apart from the meta: every change is broadcast through
// memberlist's gossip (retransmitted a few times, newest version wins),
// and every push/pull exchange (each 5 s between two random members)
// carries the whole table a node knows, so one that missed broadcasts or
// just joined converges. Versions are the publishing node's clock at the
// change, strictly increasing, so a restarted node's claims replace those
// of its earlier life.

// routing is one node's claims at one version.
type routing struct {
	version uint64
	hosted  []uint32
	leading map[uint32]uint64 // shard → term
}

const (
	msgRouting = 1 // one node's routing state (a broadcast)
	msgTable   = 2 // every routing state the sender knows (push/pull)
)

func appendRouting(e *codec.Encoder, id string, r routing) {
	e.Str(id)
	e.Uv(r.version)
	e.Uv(uint64(len(r.hosted)))
	for _, s := range r.hosted {
		e.Uv(uint64(s))
	}
	shards := slices.Sorted(maps.Keys(r.leading))
	e.Uv(uint64(len(shards)))
	for _, s := range shards {
		e.Uv(uint64(s))
		e.Uv(r.leading[s])
	}
}

func readRouting(d *codec.Decoder) (string, routing) {
	id := d.Str()
	r := routing{version: d.Uv(), leading: map[uint32]uint64{}}
	for n := d.Count(); n > 0 && d.Err == nil; n-- {
		r.hosted = append(r.hosted, uint32(d.Uv()))
	}
	for n := d.Count(); n > 0 && d.Err == nil; n-- {
		s := uint32(d.Uv())
		r.leading[s] = d.Uv()
	}
	return id, r
}

// publishRoutingLocked records this node's claims at a new version and
// queues their broadcast. The caller holds mu.
func (ms *membership) publishRoutingLocked() {
	ms.selfVersion++
	r := routing{version: ms.selfVersion, hosted: slices.Clone(ms.self.Hosted), leading: maps.Clone(ms.self.Leading)}
	ms.claims[ms.self.ID] = r
	var e codec.Encoder
	e.U8(msgRouting)
	appendRouting(&e, ms.self.ID, r)
	ms.bcast.QueueBroadcast(&routeBroadcast{id: ms.self.ID, msg: e.B})
}

// routingState is the push/pull payload: every routing state known.
func (ms *membership) routingState() []byte {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	var e codec.Encoder
	e.U8(msgTable)
	ids := slices.Sorted(maps.Keys(ms.claims))
	e.Uv(uint64(len(ids)))
	for _, id := range ids {
		appendRouting(&e, id, ms.claims[id])
	}
	return e.B
}

// mergeRouting takes in a broadcast or a push/pull payload, keeping for
// each node the newest version; a node's own claims are its own.
func (ms *membership) mergeRouting(b []byte) {
	if len(b) == 0 {
		return
	}
	d := codec.Decoder{B: b[1:]}
	var got map[string]routing
	switch b[0] {
	case msgRouting:
		id, r := readRouting(&d)
		got = map[string]routing{id: r}
	case msgTable:
		n := d.Count()
		got = make(map[string]routing, n)
		for ; n > 0 && d.Err == nil; n-- {
			id, r := readRouting(&d)
			got[id] = r
		}
	default:
		d.Err = fmt.Errorf("unknown message type %d", b[0])
	}
	if d.Err != nil {
		ms.log.Warn("bad routing state from gossip", "err", d.Err)
		return
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	changed := false
	for id, r := range got {
		if id == ms.self.ID {
			continue
		}
		if old, ok := ms.claims[id]; ok && old.version >= r.version {
			continue
		}
		ms.claims[id] = r
		if m := ms.members[id]; m != nil {
			m.Hosted, m.Leading = r.hosted, r.leading
		}
		changed = true
	}
	if changed {
		ms.rebuildRoutesLocked()
	}
}

func (ms *membership) numNodes() int {
	if ms.ml == nil {
		return 1
	}
	return ms.ml.NumMembers()
}

// routeBroadcast is one node's routing state on its way through gossip;
// a newer one of the same node replaces it in the queue.
type routeBroadcast struct {
	id  string
	msg []byte
}

func (b *routeBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*routeBroadcast)
	return ok && o.id == b.id
}
func (b *routeBroadcast) Message() []byte { return b.msg }
func (b *routeBroadcast) Finished()       {}
