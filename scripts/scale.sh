#!/usr/bin/env bash
# scale.sh: what counters and remembered idempotency keys cost a node, and
# how long a node with them takes to snapshot, restart and catch up.
#
# Starts a 3-node cluster of its own (scripts/cluster.sh, in a temporary run
# dir), stores COUNTERS counters and then KEYS increments with an
# idempotency key each (`tally fill`), and reports per node, as medians over
# the three nodes:
#   - RSS and live Go heap (after a forced collection) per counter and per
#     key, as the growth over a warmed-up cluster;
#   - the size of the newest snapshot of every shard, and the longest
#     snapshot write and the longest restore the nodes logged;
#   - the time from starting every node again to all being ready;
#   - the time a node that was down while COUNTERS/10 more counters were
#     written takes, once restarted, to apply what its shards' leaders had;
#   - the time from SIGKILLing a node for good (its disk lost) until every
#     shard has three live voters again: it is removed, and a new node
#     joins on an empty data dir and is given its replicas by snapshot.
#
# Usage: scripts/scale.sh [COUNTERS [KEYS]]   (default 1000000 300000)
# Environment: TALLY_BIN (default <repo>/bin), TALLY_SCALE_PORT (node 1's
# HTTP port, default 7470), TALLY_SCALE_FLAGS (extra tallyd flags).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
counters=${1:-1000000}
keys=${2:-300000}
[[ $counters =~ ^[0-9]+$ && $keys =~ ^[0-9]+$ ]] || {
	echo "usage: scripts/scale.sh [COUNTERS [KEYS]]" >&2
	exit 2
}
bin=${TALLY_BIN:-$repo/bin}
[[ $bin == /* ]] || bin=$PWD/$bin
base=${TALLY_SCALE_PORT:-7470}
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-scale.XXXXXX")
export TALLY_RUN_DIR=$run_dir TALLY_BIN=$bin TALLY_BASE_PORT=$base TALLY_WAIT=${TALLY_WAIT:-600}
# Keys must outlive the run to be counted; profiles give a forced GC.
export TALLY_EXTRA_FLAGS="--pprof --dedup-ttl 24h ${TALLY_SCALE_FLAGS:-}"

cluster() { "$repo/scripts/cluster.sh" "$@" >>"$run_dir/cluster.out"; }
cleanup() {
	"$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true
	rm -rf "$run_dir"
}
trap cleanup EXIT

http() { echo "127.0.0.1:$((base + 10 * ($1 - 1)))"; }
addrs="$(http 1),$(http 2),$(http 3)"

# metric NODE NAME: a metric's value on node NODE (1..3), as an integer.
metric() {
	curl -sf "http://$(http "$1")/metrics" | awk -v m="$2" '$1 == m { printf "%.0f\n", $2 }'
}

# mem NODE: "rss heap" of node NODE, the heap after a forced collection.
mem() {
	curl -sf -o /dev/null "http://$(http "$1")/debug/pprof/heap?gc=1"
	echo "$(metric "$1" process_resident_memory_bytes) $(metric "$1" go_memstats_heap_alloc_bytes)"
}

median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

# per BEFORE AFTER N: bytes per item, one decimal.
per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "-" }'; }

now_ms() { date +%s%3N; }

echo "scale.sh: $counters counters, $keys keyed increments, 3 nodes (run dir $run_dir)"
cluster up 3
# Warm up first, so that what is fixed (the raft log store's memtables and
# cache, batch buffers) has reached its working size and the measures are
# what one more counter or key costs.
"$bin/tally" --addr "$addrs" --timeout 60s fill --counters 300000 --prefix warm >/dev/null

declare -a rss0 heap0 rss1 heap1 rss2 heap2
for i in 1 2 3; do read -r rss0[i] heap0[i] < <(mem "$i"); done

t0=$(now_ms)
"$bin/tally" --addr "$addrs" --timeout 60s fill --counters "$counters" --prefix scale
fill_ms=$(($(now_ms) - t0))
for i in 1 2 3; do read -r rss1[i] heap1[i] < <(mem "$i"); done

key_ms=0
if ((keys > 0)); then
	t0=$(now_ms)
	"$bin/tally" --addr "$addrs" --timeout 60s fill --keys "$keys" --prefix scalekeys
	key_ms=$(($(now_ms) - t0))
fi
for i in 1 2 3; do read -r rss2[i] heap2[i] < <(mem "$i"); done
dedup=$(metric 1 tally_dedup_keys)

declare -a rc hc rk hk
for i in 1 2 3; do
	rc[i]=$(per "${rss0[i]}" "${rss1[i]}" "$counters")
	hc[i]=$(per "${heap0[i]}" "${heap1[i]}" "$counters")
	rk[i]=$(per "${rss1[i]}" "${rss2[i]}" "$keys")
	hk[i]=$(per "${heap1[i]}" "${heap2[i]}" "$keys")
done

# The newest snapshot of each shard on node 1.
snap_bytes=0
for d in "$run_dir"/n1/data/shard-*/snapshots; do
	[[ -d $d ]] || continue
	newest=$(ls -1 "$d" | sort | tail -n 1)
	[[ -n $newest && -f $d/$newest/state.bin ]] || continue
	snap_bytes=$((snap_bytes + $(stat -c %s "$d/$newest/state.bin")))
done

# Restart every node.
cluster down
t0=$(now_ms)
cluster start n1 n2 n3
restart_ms=$(($(now_ms) - t0))

# A node down while more is written catches up when it comes back.
cluster stop n3
"$bin/tally" --addr "$(http 1),$(http 2)" --timeout 60s fill --counters $((counters / 10 + 1)) --prefix scalelate >/dev/null
# What every shard's leader has applied (node 1 or 2 leads all of them now).
declare -A want
for i in 1 2; do
	st=$(curl -sf "http://$(http "$i")/v1/cluster")
	while read -r s idx; do
		[[ -n ${want[$s]:-} && ${want[$s]} -ge $idx ]] || want[$s]=$idx
	done < <(grep -o '"id":[0-9]*,"leader":"[^"]*","replicas":\[[^]]*\],\("learners":\[[^]]*\],\)\?"applied_index":[0-9]*' <<<"$st" |
		sed 's/"id":\([0-9]*\),.*"applied_index":\([0-9]*\)/\1 \2/')
done
t0=$(now_ms)
cluster start n3
caught=""
for ((try = 0; try < 6000; try++)); do
	st=$(curl -sf "http://$(http 3)/v1/cluster" || true)
	behind=0
	while read -r s idx; do
		((idx >= ${want[$s]:-0})) || behind=1
	done < <(grep -o '"id":[0-9]*,"leader":"[^"]*","replicas":\[[^]]*\],\("learners":\[[^]]*\],\)\?"applied_index":[0-9]*' <<<"$st" |
		sed 's/"id":\([0-9]*\),.*"applied_index":\([0-9]*\)/\1 \2/')
	if [[ -n $st ]] && ((behind == 0)); then
		caught=$(($(now_ms) - t0))
		break
	fi
	sleep 0.1
done
installs=$(grep -c '"msg":"snapshot restored"' "$run_dir/n3.log" || true)

# A node lost for good: SIGKILL n3, remove it, and start a new node (n4,
# empty data dir); every shard is back on three live voters once n4 holds
# a caught-up replica of each (a learner is promoted within 256 entries
# of its leader's commit index).
t0=$(now_ms)
cluster kill n3
cluster remove n3
removed_ms=$(($(now_ms) - t0))
cluster add
added_ms=$(($(now_ms) - t0))
replaced=""
for ((try = 0; try < 6000; try++)); do
	st=$(curl -sf "http://$(http 1)/v1/cluster" || true)
	want_n=$(grep -o '"replicas":\[[^]]*\],"learners":\[\]' <<<"$st" | grep '"n4"' | grep '"n1"' | grep -c '"n2"' || true)
	if [[ -n $st ]] && ((want_n == $(grep -o '"replicas":' <<<"$st" | wc -l))) && ! grep -q '"n3"' <<<"$(grep -o '"replicas":\[[^]]*\]' <<<"$st")"; then
		replaced=$(($(now_ms) - t0))
		break
	fi
	sleep 0.1
done

# Longest snapshot write and restore any node logged.
longest() { { cat "$run_dir"/n?.log | grep "\"msg\":\"$1\"" | grep -o '"ms":[0-9]*' || true; } | cut -d: -f2 | sort -n | tail -n 1; }
persist_ms=$(longest "snapshot persisted")
restore_ms=$(longest "snapshot restored")

cat <<EOF

| measure ($counters counters, $keys keyed increments, 3 nodes) | value |
|---|---|
| fill: counters | $((counters * 1000 / (fill_ms + 1)))/s |
| fill: keyed increments | $( ((keys > 0)) && echo "$((keys * 1000 / (key_ms + 1)))/s" || echo -) |
| RSS per counter per node | $(median3 "${rc[@]:1}") B |
| live heap per counter per node | $(median3 "${hc[@]:1}") B |
| RSS per remembered key per node | $(median3 "${rk[@]:1}") B |
| live heap per remembered key per node | $(median3 "${hk[@]:1}") B |
| keys remembered (node 1) | $dedup |
| newest snapshots, all shards (node 1) | $((snap_bytes / 1024 / 1024)) MiB |
| longest snapshot write | ${persist_ms:--} ms |
| longest snapshot restore | ${restore_ms:--} ms |
| restart of every node to ready | $restart_ms ms |
| node down during $((counters / 10 + 1)) writes: back to its leaders' index | ${caught:-not within 600 s} ms ($installs snapshot installs) |
| node lost for good: SIGKILL to removed / to replacement ready / to every shard on 3 live voters again | $removed_ms / $added_ms / ${replaced:-not within 600 s} ms |
EOF
