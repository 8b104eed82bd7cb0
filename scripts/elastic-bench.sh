#!/usr/bin/env bash
# elastic-bench.sh: membership changes under load, measured. A 3-node
# cluster takes a keyed write load (tally bench --keys: every increment
# has an Idempotency-Key of its own, 10,000 counters, requests routed to
# shard leaders) while:
#
#   1. three nodes join at once (3 -> 6): time from the last join until
#      every shard has its replicas spread evenly (+-1) over the six;
#   2. the node leading the most shards is decommissioned: time until it
#      has left, then it is stopped;
#   3. a node is SIGKILLed, removed, and a replacement started under a
#      new id on an empty data dir (a machine whose disk died): time from
#      the kill until the replacement holds its share, caught up.
#
# At the end tally bench checks that every counter rose by exactly the
# acknowledged increments, and reports its longest request (no write
# stalled longer) and the slowest second of the run. Needs jq.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
clients=${ELASTIC_CLIENTS:-64}
duration=${ELASTIC_DURATION:-150s}
base=${ELASTIC_BASE_PORT:-17700}
run_dir=${ELASTIC_RUN_DIR:-$(mktemp -d)}
bin=$repo/bin

command -v jq >/dev/null || {
	echo "elastic-bench.sh: needs jq" >&2
	exit 1
}
[[ -x $bin/tally && -x $bin/tallyd ]] || make -C "$repo" build >/dev/null

export TALLY_RUN_DIR=$run_dir TALLY_BASE_PORT=$base TALLY_WAIT=120
cluster() { "$repo/scripts/cluster.sh" "$@"; }
http() { echo "127.0.0.1:$((base + 10 * ($1 - 1)))"; }
now_ms() { date +%s%3N; }
trap 'cluster down >/dev/null 2>&1 || true' EXIT

# even IDS...: true once every shard has three voters, no learner, only on
# IDS, each holding its share +-1 (as node 1 sees it).
even() {
	local json
	json=$("$bin/tally" --addr "$(live)" --json --timeout 5s cluster 2>/dev/null) || return 1
	jq -e --argjson ids "$(printf '%s\n' "$@" | jq -R . | jq -s .)" '
		(.shards | length) as $s
		| ([.shards[] | (.replicas | length) == 3 and ((.learners // []) | length) == 0
		   and all(.replicas[]; . as $r | $ids | index($r) != null)] | all)
		and ([.shards[].replicas[]] | group_by(.) | map(length)) as $c
		| ($c | length) == ($ids | length)
		and (($c | max) - ($c | min)) <= 1
	' <<<"$json" >/dev/null
}

# live: the HTTP address of a node that answers.
live() {
	local i
	for i in 1 2 3 4 5 6 7; do
		if curl -sf -m 1 "http://$(http "$i")/healthz" >/dev/null 2>&1; then
			http "$i"
			return
		fi
	done
	return 1
}

wait_even() {
	local t0=$1
	shift
	for ((try = 0; try < 1800; try++)); do
		if even "$@"; then
			echo $(($(now_ms) - t0))
			return
		fi
		sleep 0.1
	done
	echo "not within 180 s"
}

echo "elastic-bench.sh: $clients clients, keyed, $duration (run dir $run_dir)"
cluster up 3 >/dev/null
"$bin/tally" --addr "$(http 1),$(http 2),$(http 3)" --json bench --clients "$clients" --counters 10000 --keys \
	--duration "$duration" --node-metrics=false --timeline "$run_dir/timeline.svg" >"$run_dir/bench.json" 2>"$run_dir/bench.err" &
bench=$!
sleep 15

# 1. 3 -> 6.
cluster add 3 >/dev/null
t0=$(now_ms)
grow=$(wait_even "$t0" n1 n2 n3 n4 n5 n6)
echo "3 -> 6 nodes: replicas even ${grow} ms after the last join"

# 2. Decommission the busiest leader.
busiest=$("$bin/tally" --addr "$(live)" --json cluster | jq -r '[.shards[].leader] | group_by(.) | max_by(length) | .[0]')
leads=$("$bin/tally" --addr "$(live)" --json cluster | jq --arg b "$busiest" '[.shards[] | select(.leader == $b)] | length')
t0=$(now_ms)
cluster decommission "$busiest" >/dev/null
left=$(($(now_ms) - t0))
echo "decommission of $busiest (leading $leads shards): left after $left ms"

# 3. Kill, remove, replace.
mapfile -t rest < <(printf 'n%s\n' 1 2 3 4 5 6 | grep -vx "$busiest")
victim=${rest[0]}
t0=$(now_ms)
cluster kill "$victim" >/dev/null
cluster remove "$victim" >/dev/null
removed=$(($(now_ms) - t0))
cluster add >/dev/null
mapfile -t now < <(printf '%s\n' "${rest[@]:1}" n7)
replace=$(wait_even "$t0" "${now[@]}")
echo "replace $victim: removed after $removed ms (gossip must see it dead first); the new n7 holds its share, caught up, $replace ms after the kill"

wait "$bench" || true
jq -r '"load: \(.ops) ops, \(.ops_per_sec | floor) ops/s, errors \(.errors), maybe applied \(.maybe_applied // 0), max request \(.max_ms) ms, counts verified: \(.verified)"' "$run_dir/bench.json"
jq -r '[.timeline[] | select(.span_s >= 1) | .ops_per_sec] | "slowest second: \(min | floor) ops/s (median second \(sort | .[length/2|floor] | floor))"' "$run_dir/bench.json"
