#!/usr/bin/env bash
# secure-bench.sh: what TLS everywhere, an encrypted gossip ring and tokens
# cost. Runs a fresh 3-node cluster plain, then one with `cluster.sh up
# --secure`, alternately, RUNS times each, and drives each with the same
# load: tally bench on one hot counter (64 clients over HTTP, keep-alive
# connections, 10 s) and, when redis-benchmark is installed, INCR over RESP
# (50 clients). Prints every run, then the medians and secure ÷ plain.
# Needs jq.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${RUNS:-3}
duration=${DURATION:-10s}
clients=${CLIENTS:-64}
base=${SECURE_BASE_PORT:-17600}
run_dir=$(mktemp -d)
tally=$repo/bin/tally
trap 'TALLY_RUN_DIR=$run_dir TALLY_BASE_PORT=$base "$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true; rm -rf "$run_dir"' EXIT

command -v jq >/dev/null || { echo "secure-bench.sh: needs jq" >&2; exit 1; }
make -C "$repo" build >/dev/null

cluster() { TALLY_RUN_DIR=$run_dir TALLY_BASE_PORT=$base "$repo/scripts/cluster.sh" "$@"; }
addrs() { echo "127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A http_ops http_cpu resp_ops
for ((r = 1; r <= runs; r++)); do
	for mode in plain secure; do
		flags=()
		[[ $mode == secure ]] && flags=(--secure)
		cluster up 3 "${flags[@]}" >/dev/null
		env=()
		redis_flags=()
		if [[ $mode == secure ]]; then
			token=$(awk '$2 == "write" { print $1 }' "$run_dir/certs/tokens")
			admin=$(awk '$2 == "admin" { print $1 }' "$run_dir/certs/tokens")
			env=(TALLY_CACERT="$run_dir/certs/ca.crt" TALLY_TOKEN="$admin")
			redis_flags=(--tls --cacert "$run_dir/certs/ca.crt" -a "$token")
		fi
		json=$(env "${env[@]}" "$tally" --addr "$(addrs)" --json bench --clients "$clients" --duration "$duration" --counters 1)
		ops=$(jq -r .ops_per_sec <<<"$json")
		cpu=$(jq -r '.node_cost.cpu_us_per_op // "nan"' <<<"$json")
		verified=$(jq -r '.verified // "n/a"' <<<"$json")
		http_ops[$mode]+="$ops "
		http_cpu[$mode]+="$cpu "
		line=$(printf 'run %d %-6s HTTP  %8.0f incr/s  %6.1f µs CPU/incr  counts verified: %s' "$r" "$mode" "$ops" "$cpu" "$verified")
		if command -v redis-benchmark >/dev/null; then
			rps=$(redis-benchmark -p $((base + 3)) "${redis_flags[@]}" -t incr -n 60000 -c 50 -q 2>/dev/null | tr '\r' '\n' | grep -o 'INCR: [0-9.]* requests per second' | tail -n 1 | awk '{ print $2 }')
			resp_ops[$mode]+="${rps:-nan} "
			line+=$(printf '   RESP %8.0f incr/s' "${rps:-0}")
		fi
		echo "$line"
		cluster down >/dev/null
	done
done

echo
for mode in plain secure; do
	printf '%-6s median: HTTP %8.0f incr/s, %6.1f µs CPU/incr' "$mode" \
		"$(tr ' ' '\n' <<<"${http_ops[$mode]}" | grep . | median)" "$(tr ' ' '\n' <<<"${http_cpu[$mode]}" | grep . | median)"
	[[ -n ${resp_ops[$mode]:-} ]] && printf '; RESP %8.0f incr/s' "$(tr ' ' '\n' <<<"${resp_ops[$mode]}" | grep . | median)"
	echo
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
hp=$(tr ' ' '\n' <<<"${http_ops[plain]}" | grep . | median)
hs=$(tr ' ' '\n' <<<"${http_ops[secure]}" | grep . | median)
echo "secure ÷ plain: HTTP $(ratio "$hs" "$hp")×"
if [[ -n ${resp_ops[plain]:-} ]]; then
	rp=$(tr ' ' '\n' <<<"${resp_ops[plain]}" | grep . | median)
	rs=$(tr ' ' '\n' <<<"${resp_ops[secure]}" | grep . | median)
	echo "secure ÷ plain: RESP $(ratio "$rs" "$rp")×"
fi
