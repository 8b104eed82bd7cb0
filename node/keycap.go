package node

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// The dedup cap. Each remembered idempotency key costs memory on every
// replica of its shard until the dedup TTL passes, and a node holds a
// replica of most shards, so the keys a node remembers grow with the whole
// cluster's keyed write rate. Past the cap, a shard leader on this node
// refuses ops with keys its tables do not hold (retries of remembered keys
// still answer), before proposing them, so a burst of keys costs a clear
// error rather than the node: the state machine itself must apply whatever
// the log says.

// keyBytes is what the cap reckons a remembered key costs a node in all
// (the table's record and index, and its share of the raft log and of the
// collector's headroom on the rest).
const keyBytes = 100

// defaultKeyCap is the cap when --dedup-max-keys is 0: a quarter of the
// memory this process may use, at keyBytes a key.
func defaultKeyCap() int64 {
	mem := memoryLimit()
	if mem <= 0 {
		return 10_000_000
	}
	return mem / 4 / keyBytes
}

// memoryLimit returns the memory this process may use, in bytes: the
// machine's, or its cgroup's limit if lower; 0 if unknown.
func memoryLimit() int64 {
	mem := memTotal()
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (mem == 0 || v < mem) {
			mem = v
		}
	}
	return mem
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// dedupKeys returns the idempotency keys this node's replicas remember, in
// all: leader and follower replicas alike, since a follower's table is as
// large as its leader's.
func (n *Node) dedupKeys() int64 {
	n.mu.RLock()
	defer n.mu.RUnlock()
	var total int64
	for _, sh := range n.shards {
		total += sh.DedupKeys()
	}
	return total
}

// admitKeys reports whether this node's replicas may remember more keys.
// Ops already in flight may take the total a little past the cap: by at
// most what the proposers hold at once.
func (n *Node) admitKeys() bool { return n.dedupKeys() < n.cfg.DedupMaxKeys }

// DedupKeys returns the idempotency keys this node remembers and the cap.
func (n *Node) DedupKeys() (keys, limit int64) { return n.dedupKeys(), n.cfg.DedupMaxKeys }
