// Package placement says where things live in a tally cluster: a counter
// name's home shard, the shards of a split counter's sub-counters, and
// which nodes host each shard's replicas. It is a leaf: pure functions,
// no raft, no I/O, so the CLI, the client and the chaos checker can place
// counters without linking the cluster's storage.
package placement

import (
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
)

// MaxSplit is the largest split factor (and shard count) a split can use;
// it bounds the sub-counter index a stored name may carry.
const MaxSplit = 64

// Home returns the shard a counter name lives on. The hash is fixed
// forever: changing it would move every counter.
func Home(name string, shards int) uint32 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return uint32(h.Sum64() % uint64(shards))
}

// SubShard returns the shard sub-counter i of the counter name lives on:
// i shards after its home, so a counter split n ways (n <= shards) has its
// sub-counters on n different shards.
func SubShard(name string, i, shards int) uint32 {
	return (Home(name, shards) + uint32(i)) % uint32(shards)
}

// Of returns the shard a stored name (a counter, or a sub-counter's
// SubName) lives on.
func Of(stored string, shards int) uint32 {
	name, i := ParseSubName(stored)
	return SubShard(name, i, shards)
}

// SubShards lists the shards of the sub-counters of name split k ways.
func SubShards(name string, k, shards int) []uint32 {
	out := make([]uint32, k)
	for i := range out {
		out[i] = SubShard(name, i, shards)
	}
	return out
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
