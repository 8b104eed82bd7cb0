package shard

import (
	"hash/fnv"
	"sort"

	"tally/fsm"
)

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
// fsm.SubName) lives on.
func Of(stored string, shards int) uint32 {
	name, i := fsm.ParseSubName(stored)
	return SubShard(name, i, shards)
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
