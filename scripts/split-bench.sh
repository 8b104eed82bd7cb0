#!/usr/bin/env bash
# split-bench.sh: what splitting a hot counter buys, measured in one run on
# this machine. A fresh 3-node cluster per case, 64 clients spread over the
# nodes, one increment per request on one hot counter:
#
#   off    --auto-split=false: every write goes to one shard leader
#   auto   the default: the counter is split automatically (the load runs
#          until it is, then the measured run starts)
#   reads  the counter split 8 ways by hand; the same write load plus 8
#          clients reading it linearizably: their latency is the figure
#
# Each case prints ops/s and latency (tally bench, which also checks the
# count rose by exactly the acknowledged increments) and the share of
# increments forwarded between nodes (tally_forwarded_out_total over the
# HTTP increments, from /metrics) and the fsyncs per increment over all
# nodes (two per raft log commit, tally_log_commits_total). Needs curl.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${SPLIT_DURATION:-20s}
clients=${SPLIT_CLIENTS:-64}
runs=${SPLIT_RUNS:-1}
base=${SPLIT_BASE_PORT:-17400}
tally=$repo/bin/tally
run_dir=$(mktemp -d)
trap 'TALLY_RUN_DIR=$run_dir "$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true; rm -rf "$run_dir"' EXIT

cluster() { TALLY_RUN_DIR=$run_dir TALLY_BASE_PORT=$base "$repo/scripts/cluster.sh" "$@"; }

# metric NAME: the sum of a counter over the three nodes.
metric() {
	local sum=0 v
	for i in 0 1 2; do
		v=$(curl -fs "127.0.0.1:$((base + 10 * i))/metrics" | sed -n "s/^$1 \([0-9.e+]*\)$/\1/p" | sed -n 1p)
		sum=$(awk -v a="$sum" -v b="${v:-0}" 'BEGIN { printf "%.0f", a + b }')
	done
	echo "$sum"
}

increments() {
	local sum=0 v
	for i in 0 1 2; do
		v=$(curl -fs "127.0.0.1:$((base + 10 * i))/metrics" |
			sed -n 's/^tally_http_requests_total{code="200",route="\/v1\/counters\/{name}\/incr"} \([0-9.e+]*\)$/\1/p')
		sum=$(awk -v a="$sum" -v b="${v:-0}" 'BEGIN { printf "%.0f", a + b }')
	done
	echo "$sum"
}

# balanced: every shard has a leader and no node leads more than 3 of 8.
balanced() {
	local c
	c=$(curl -fs "127.0.0.1:$base/v1/cluster" | tr '{' '\n' | sed -n 's/.*"leader":"\([^"]*\)".*/\1/p')
	[ "$(echo "$c" | grep -c .)" -eq 8 ] && [ "$(echo "$c" | sort | uniq -c | sort -rn | sed -n 1p | awk '{print $1}')" -le 3 ]
}

up() {
	rm -rf "$run_dir"/*
	TALLY_EXTRA_FLAGS="$1" cluster up 3 >/dev/null
	for _ in $(seq 1 120); do balanced && return 0; sleep 1; done
	echo "shard leaders never spread" >&2
	return 1
}

measure() { # name counter
	local f0 i0 c0 line f1 i1 c1
	f0=$(metric tally_forwarded_out_total)
	c0=$(metric tally_log_commits_total)
	i0=$(increments)
	line=$("$tally" --addr "$addrs" bench --duration "$duration" --clients "$clients" --counter "$2" | sed -n 1p)
	f1=$(metric tally_forwarded_out_total)
	c1=$(metric tally_log_commits_total)
	i1=$(increments)
	printf '%-6s %s\n       forwarded: %s of %s increments (%s%%); fsyncs per increment, all nodes: %s\n' "$1" "$line" \
		$((f1 - f0)) $((i1 - i0)) \
		"$(awk -v f=$((f1 - f0)) -v n=$((i1 - i0)) 'BEGIN { printf "%.1f", n ? 100 * f / n : 0 }')" \
		"$(awk -v c=$((c1 - c0)) -v n=$((i1 - i0)) 'BEGIN { printf "%.2f", n ? 2 * c / n : 0 }')"
}

for run in $(seq 1 "$runs"); do
	echo "== run $run of $runs ($clients clients, $duration per case)"
	up "--auto-split=false"
	addrs=$(cluster addrs)
	measure off hot
	cluster down >/dev/null

	up ""
	addrs=$(cluster addrs)
	# Warm up until the auto-splitter has split the counter.
	"$tally" --addr "$addrs" bench --duration 60s --clients "$clients" --counter hot --verify=false >/dev/null &
	warm=$!
	for _ in $(seq 1 60); do
		"$tally" --addr "$addrs" --json get hot | grep -q '"split":[2-9]' && break
		sleep 1
	done
	kill $warm 2>/dev/null || true
	wait $warm 2>/dev/null || true
	echo "       $("$tally" --addr "$addrs" --json get hot | sed 's/.*"split":\([0-9]*\).*/split automatically: \1 ways/')"
	measure auto hot

	"$tally" --addr "$addrs" split read8 8 >/dev/null
	"$tally" --addr "$addrs" bench --duration "$duration" --clients "$clients" --counter read8 --verify=false >/dev/null &
	writers=$!
	echo "reads  $("$tally" --addr "$addrs" bench --duration "$duration" --clients 8 --counter read8 --reads 1 --verify=false | sed -n 1p)"
	wait $writers
	cluster down >/dev/null
done
