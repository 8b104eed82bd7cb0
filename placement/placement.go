// Package placement says where things live in a tally cluster: a counter
// name's home shard, the shards of a split counter's sub-counters, and
// which nodes host each shard's replicas. It is a leaf: pure functions,
// no raft, no I/O, so the CLI, the client and the chaos checker can place
// counters without linking the cluster's storage.
package placement

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
)

// MaxSplit is the largest split factor (and shard count) a split can use;
// it bounds the sub-counter index a stored name may carry.
const MaxSplit = 64

// Scheme is how a cluster maps counter names to home shards. It is fixed
// when the cluster forms and recorded in every node's cluster.json:
// changing it would move every counter.
type Scheme string

const (
	// Slots maps a name to its Redis Cluster hash slot (see Slot) and the
	// slot to the shard owning its range, so cluster-aware Redis clients
	// route keys as tally does. Clusters form with it.
	Slots Scheme = "slots"
	// FNV is the hash of the name (FNV-1a, 64 bits) modulo the shard
	// count: the scheme of clusters formed before slots.
	FNV Scheme = "fnv64a"
)

// ParseScheme accepts the schemes this version knows.
func ParseScheme(s string) (Scheme, error) {
	switch Scheme(s) {
	case Slots, FNV:
		return Scheme(s), nil
	}
	return "", fmt.Errorf("unknown key placement %q (this version knows %q and %q)", s, Slots, FNV)
}

// Map places the counters of a cluster of Shards shards by Scheme.
type Map struct {
	Scheme Scheme
	Shards int
}

// Home returns the shard a counter name lives on.
func (m Map) Home(name string) uint32 {
	if m.Scheme == FNV {
		return uint32(Hash(name) % uint64(m.Shards))
	}
	return SlotShard(Slot(name), m.Shards)
}

// SubShard returns the shard sub-counter i of the counter name lives on:
// i shards after its home, so a counter split n ways (n <= shards) has its
// sub-counters on n different shards.
func (m Map) SubShard(name string, i int) uint32 {
	return (m.Home(name) + uint32(i)) % uint32(m.Shards)
}

// Of returns the shard a stored name (a counter, or a sub-counter's
// SubName) lives on.
func (m Map) Of(stored string) uint32 {
	name, i := ParseSubName(stored)
	return m.SubShard(name, i)
}

// SubShards lists the shards of the sub-counters of name split k ways.
func (m Map) SubShards(name string, k int) []uint32 {
	out := make([]uint32, k)
	for i := range out {
		out[i] = m.SubShard(name, i)
	}
	return out
}

// Home, SubShard, Of and SubShards place by Slots, the scheme new
// clusters form with.
func Home(name string, shards int) uint32 { return Map{Slots, shards}.Home(name) }

// SubShard is Map.SubShard under Slots.
func SubShard(name string, i, shards int) uint32 { return Map{Slots, shards}.SubShard(name, i) }

// Of is Map.Of under Slots.
func Of(stored string, shards int) uint32 { return Map{Slots, shards}.Of(stored) }

// SubShards is Map.SubShards under Slots.
func SubShards(name string, k, shards int) []uint32 { return Map{Slots, shards}.SubShards(name, k) }

// Hash is FNV-1a (64 bits) of s: the FNV scheme's hash, and a stable hash
// for choices that must not depend on the key placement.
func Hash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// SubName returns the name sub-counter i of the counter name is stored
// under: name itself for i = 0, "name/i" otherwise. User names cannot
// hold a '/', so a sub-counter's name never collides with a counter's.
func SubName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "/" + strconv.Itoa(i)
}

// ParseSubName splits a stored name into the counter's name and the
// sub-counter index: (name, 0) for a name without a '/'.
func ParseSubName(stored string) (name string, i int) {
	j := strings.LastIndexByte(stored, '/')
	if j < 0 {
		return stored, 0
	}
	suffix := stored[j+1:]
	i, err := strconv.Atoi(suffix)
	if err != nil || i <= 0 || i >= MaxSplit || strconv.Itoa(i) != suffix {
		return stored, 0
	}
	return stored[:j], i
}

// Place assigns each shard's replicas: shard s goes to the min(replicas,
// len(nodes)) nodes that follow position s in the sorted id list, so
// every node hosts about the same number of replicas and every node of
// the cluster computes the same answer from the same members.
func Place(nodes []string, shards, replicas int) [][]string {
	ids := append([]string(nil), nodes...)
	sort.Strings(ids)
	r := min(replicas, len(ids))
	out := make([][]string, shards)
	for s := range out {
		for j := 0; j < r; j++ {
			out[s] = append(out[s], ids[(s+j)%len(ids)])
		}
		sort.Strings(out[s])
	}
	return out
}
