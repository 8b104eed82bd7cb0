#!/usr/bin/env bash
# bench.sh: tally side by side with Redis, PostgreSQL, etcd and a bare
# in-memory HTTP server, on this machine, in one run, one table.
#
# Every system runs alone (the others are stopped), on loopback, with its
# data in a temporary directory and durable settings, and gets the same
# workloads from the same client loop (loadgen): `tally bench` for tally
# and the HTTP ceiling, `peerbench` (the bench/ module) for the peers.
# Each run reads every counter before and after and checks the increase
# against the acknowledged increments.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-20s}
warmup=${BENCH_WARMUP:-2s}
clients=${BENCH_CLIENTS:-64}
counters=${BENCH_COUNTERS:-10000}
batch=${BENCH_BATCH:-16}
systems=${BENCH_SYSTEMS:-ceiling tally redis-always redis-everysec postgres etcd}
workloads=${BENCH_WORKLOADS:-hot uniform batch}
out=${BENCH_OUT:-$repo/.bench-out}
wait_secs=60

usage() {
	cat <<EOF
Usage: scripts/bench.sh

Installs what is missing (redis-server, postgresql, etcd-server,
etcd-client and jq from Debian's packages), then runs the same workloads
against each system, one at a time on 127.0.0.1, and prints one table,
then tally's node CPU per increment.

Workloads ($clients clients, $duration each):
  hot      one counter, one increment per request
  uniform  $counters counters, uniformly chosen, one increment per request
  batch    one counter, $batch increments per request (Redis: a pipeline of
           $batch INCRBY; PostgreSQL: $batch UPDATEs in one transaction;
           etcd: one CAS transaction; tally: POST /v1/batch)

Systems: ceiling (in-memory HTTP server), tally (3 nodes), redis-always
(appendfsync always), redis-everysec, postgres (synchronous_commit on),
etcd (3 members).

Environment:
  BENCH_DURATION   per workload (default 20s)      BENCH_WARMUP   per system (default 2s)
  BENCH_CLIENTS    concurrent clients (default 64) BENCH_COUNTERS uniform's counters (10000)
  BENCH_BATCH      increments per batch (16)       BENCH_SYSTEMS  subset, in order
  BENCH_WORKLOADS  subset of: hot uniform batch    BENCH_OUT      results dir (<repo>/.bench-out)
  BENCH_BASE_PORT  first of 50 loopback ports (default: the first free block from 20000)
  BENCH_KEEP=1     keep the temporary directory (data and server logs)
EOF
}

case ${1:-} in
-h | --help | help)
	usage
	exit 0
	;;
"") ;;
*)
	usage >&2
	exit 2
	;;
esac

log() { echo "bench.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

as_root() {
	if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

pg_bindir() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	[[ -n $d && -x $d/initdb && -x $d/pg_ctl ]] && echo "$d"
}

# install_missing: only the Debian packages whose programs are missing.
install_missing() {
	local -a pkgs=()
	command -v redis-server >/dev/null && command -v redis-cli >/dev/null || pkgs+=(redis-server)
	pg_bindir >/dev/null || pkgs+=(postgresql)
	command -v etcd >/dev/null || pkgs+=(etcd-server)
	# etcdctl checks the etcd members' health; Debian ships it apart.
	command -v etcdctl >/dev/null || pkgs+=(etcd-client)
	command -v jq >/dev/null || pkgs+=(jq) # reads the node cost out of the reports
	((${#pkgs[@]} > 0)) || return 0
	log "installing ${pkgs[*]}"
	local t0=$SECONDS
	as_root apt-get update -qq
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
	log "installed ${pkgs[*]} in $((SECONDS - t0))s"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_base: the first block of 50 free ports from 20000, in steps of 100.
pick_base() {
	local b p free
	for ((b = 20000; b < 60000; b += 100)); do
		free=1
		for ((p = b; p < b + 50; p++)); do
			if port_in_use "$p"; then
				free=0
				break
			fi
		done
		((free)) && echo "$b" && return 0
	done
	return 1
}

# wait_until WHAT CMD...: poll CMD until it succeeds, for at most wait_secs.
wait_until() {
	local what=$1 deadline=$((SECONDS + wait_secs))
	shift
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "$what not ready after ${wait_secs}s"
		sleep 0.2
	done
}

# stop_pid PID: SIGTERM, then wait (SIGKILL after 30 s).
stop_pid() {
	local pid=$1 deadline=$((SECONDS + 30))
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
}

declare -a pids=() # servers this script started and has not stopped yet

# forget PID: drop a stopped server from pids.
forget() {
	local p
	local -a keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}
tally_up=0
pg_up=0
work=""

cleanup() {
	local pid
	for pid in "${pids[@]}"; do stop_pid "$pid"; done
	pids=()
	if ((tally_up)); then
		TALLY_RUN_DIR=$work/tally TALLY_BASE_PORT=$tally_port "$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true
		tally_up=0
	fi
	if ((pg_up)); then
		pg_as "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
		pg_up=0
	fi
	if [[ -n $work && -d $work ]]; then
		if [[ -n ${BENCH_KEEP:-} ]]; then
			log "kept $work"
		else
			rm -rf "$work"
		fi
	fi
}

# --- the workloads

workload_flags() {
	case $1 in
	hot) echo "--counter bench:hot --counters 1" ;;
	uniform) echo "--counter bench:u --counters $counters --dist uniform" ;;
	batch) echo "--counter bench:batch --counters 1 --batch $batch" ;;
	*) die "unknown workload '$1' (want hot, uniform or batch)" ;;
	esac
}

# run_workloads SYSTEM CMD...: warm up, then run every workload with CMD
# (a bench command that takes the workload flags), appending its JSON
# report to the results and saving its timeline.
run_workloads() {
	local sys=$1 w
	shift
	local -a flags
	log "$sys: warming up for $warmup"
	"$@" --system "$sys" --clients "$clients" --duration "$warmup" --counter bench:warmup --verify=false >/dev/null
	for w in $workloads; do
		read -ra flags <<<"$(workload_flags "$w")"
		log "$sys: $w for $duration"
		if ! "$@" --system "$sys" --workload "$w" --clients "$clients" --duration "$duration" "${flags[@]}" \
			--timeline "$out/$sys-$w.svg" --json >>"$results"; then
			log "$sys $w failed (see above); its row may be missing"
			failed+=("$sys/$w")
		fi
		tail -n 1 "$results" | cut -c1-200 >&2
	done
}

tally_cmd() { "$repo/bin/tally" --addr "$1" --timeout 30s bench "${@:2}"; }

# The ceiling is one process with no /metrics: nothing to scrape.
ceiling_cmd() { tally_cmd "$1" --node-metrics=false "${@:2}"; }

# --- the systems

run_ceiling() {
	rm -f "$work/ceiling.addr"
	"$peerbench" serve --listen "127.0.0.1:$base" --addr-file "$work/ceiling.addr" 2>>"$work/ceiling.log" &
	local pid=$!
	pids+=("$pid")
	wait_until "the HTTP ceiling" test -s "$work/ceiling.addr"
	run_workloads ceiling ceiling_cmd "$(<"$work/ceiling.addr")"
	stop_pid "$pid"
	forget "$pid"
}

# balanced ADDRS: true once no node leads more than its share of the
# shards. A new cluster starts with one node leading every shard; the
# balancer hands them out one every few seconds, and a run measured
# before then measures one leader and leadership moving under load.
balanced() {
	local json most shards nodes
	json=$("$repo/bin/tally" --addr "$1" --json --timeout 5s cluster) || return 1
	shards=$(grep -o '"replicas"' <<<"$json" | wc -l)
	nodes=$(grep -o '"state":"alive"' <<<"$json" | wc -l)
	((shards > 0 && nodes > 0)) || return 1
	# Every shard has a leader ...
	(($(grep -o '"leader":"[^"]\+"' <<<"$json" | wc -l) == shards)) || return 1
	# ... and the busiest node leads at most ceil(shards / nodes).
	most=$(grep -o '"leader":"[^"]*"' <<<"$json" | sort | uniq -c | sort -rn | awk 'NR == 1 { print $1 }')
	((most <= (shards + nodes - 1) / nodes))
}

wait_balanced() {
	local deadline=$((SECONDS + 120))
	log "tally: waiting for shard leaders to spread over the nodes"
	until balanced "$1"; do
		if ((SECONDS >= deadline)); then
			log "tally: leaders still unbalanced after 120s; measuring anyway"
			return 0
		fi
		sleep 1
	done
	log "tally: leaders balanced"
}

run_tally() {
	tally_port=$((base + 20))
	tally_up=1
	TALLY_RUN_DIR=$work/tally TALLY_BASE_PORT=$tally_port "$repo/scripts/cluster.sh" up 3 >&2
	local addrs
	addrs=$(TALLY_RUN_DIR=$work/tally TALLY_BASE_PORT=$tally_port "$repo/scripts/cluster.sh" addrs)
	wait_balanced "$addrs"
	run_workloads tally tally_cmd "$addrs"
	TALLY_RUN_DIR=$work/tally TALLY_BASE_PORT=$tally_port "$repo/scripts/cluster.sh" down >&2
	tally_up=0
}

run_redis() {
	local mode=$1 port=$((base + 1)) dir=$work/redis-$1
	mkdir -p "$dir"
	redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" \
		--appendonly yes --appendfsync "$mode" --protected-mode no --daemonize no \
		--logfile "$dir/redis.log" &
	local pid=$!
	pids+=("$pid")
	wait_until "redis ($mode)" redis-cli -p "$port" ping
	run_workloads "redis-$mode" "$peerbench" redis --addr "127.0.0.1:$port"
	stop_pid "$pid"
	forget "$pid"
}

# pg_as CMD...: PostgreSQL refuses to run as root; run it as postgres then.
pg_as() {
	if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

run_postgres() {
	local port=$((base + 2)) dir=$work/pg
	mkdir -p "$dir"
	((EUID != 0)) || chown postgres: "$dir"
	pg_as "$pgbin/initdb" -D "$dir/data" -U bench --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 ||
		die "initdb failed: $(tail -n 5 "$dir/initdb.log")"
	pg_up=1
	# Durable: fsync and synchronous_commit on (the defaults, spelled out).
	pg_as "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$wait_secs" \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=on -c synchronous_commit=on -c max_connections=$((clients + 20))" \
		start >/dev/null || die "postgres did not start: $(tail -n 5 "$dir/postgres.log")"
	run_workloads postgres "$peerbench" postgres --addr "postgres://bench@127.0.0.1:$port/postgres?sslmode=disable"
	pg_as "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
	pg_up=0
}

run_etcd() {
	local i cluster="" eps="" c p
	local -a mine=()
	for i in 1 2 3; do
		p=$((base + 9 + 2 * i))
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$p"
	done
	for i in 1 2 3; do
		c=$((base + 8 + 2 * i)) p=$((base + 9 + 2 * i))
		mkdir -p "$work/etcd"
		etcd --name "e$i" --data-dir "$work/etcd/e$i" \
			--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
			--listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token tally-bench \
			>"$work/etcd/e$i.log" 2>&1 &
		pids+=("$!")
		mine+=("$!")
		eps+="${eps:+,}127.0.0.1:$c"
	done
	wait_until "etcd" env ETCDCTL_API=3 etcdctl --endpoints "$eps" --command-timeout 2s endpoint health
	run_workloads etcd "$peerbench" etcd --addr "$eps"
	for i in "${mine[@]}"; do
		stop_pid "$i"
		forget "$i"
	done
}

# node_cost_table: what the tally nodes spent per increment in each run,
# from the node_cost of tally bench's reports (every node's /metrics
# before and after the run).
node_cost_table() {
	grep -q '"system":"tally".*"node_cost"' "$results" || return 0
	echo
	echo "tally's nodes, all together: CPU (user + system) per acknowledged op, ops per raft entry, fsyncs per increment"
	jq -r 'select(.system == "tally" and .node_cost != null) | .node_cost as $c |
		[.workload, $c.cpu_us_per_op, $c.ops_per_entry, $c.fsyncs_per_increment, ($c.fsyncs_estimated // false),
		 (if $c.measured < ($c.nodes | length) then "only \($c.measured) of \($c.nodes | length) nodes measured: " +
			([$c.nodes[] | select(.error) | .addr + " " + .error] | join("; ")) else "" end)] | @tsv' "$results" |
		awk -F'\t' '
			function f(v, fmt) { return v == "" ? "-" : sprintf(fmt, v) }
			BEGIN { printf "%10s  %13s  %9s  %s\n", "workload", "node CPU/op", "ops/entry", "fsyncs/increment" }
			{
				printf "%10s  %10s us  %9s  %s%s%s\n", $1, f($2, "%.1f"), f($3, "%.2f"), f($4, "%.3f"),
					($5 == "true" ? " (counted as 2 per log commit)" : ""), ($6 == "" ? "" : "  " $6)
			}'
}

# --- main

install_missing
pgbin=$(pg_bindir) || die "no PostgreSQL binaries under /usr/lib/postgresql"

log "building"
(cd "$repo" && go build -o bin/tallyd ./cmd/tallyd && go build -o bin/tally ./cmd/tally)
(cd "$repo/bench" && go build -o bin/peerbench ./cmd/peerbench)
peerbench=$repo/bench/bin/peerbench

base=${BENCH_BASE_PORT:-$(pick_base)} || die "no 50 free ports from 20000"
work=$(mktemp -d -t tally-bench.XXXXXX)
chmod 755 "$work" # PostgreSQL's own user must reach its directory in it
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
declare -a failed=()
# The load average before and after says whether something else shared
# the machine during the runs (their timelines show when).
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
log "ports $base–$((base + 49)), work dir $work, results in $out"
log "$clients clients, $duration per workload, workloads: $workloads"

for sys in $systems; do
	case $sys in
	ceiling) run_ceiling ;;
	tally) run_tally ;;
	redis-always) run_redis always ;;
	redis-everysec) run_redis everysec ;;
	postgres) run_postgres ;;
	etcd) run_etcd ;;
	*) die "unknown system '$sys'" ;;
	esac
done

echo
{
	echo "$(nproc) cores, $clients clients, $duration per run; ratio = tally ops/s ÷ the row's ops/s"
	echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
	"$peerbench" table "$results"
	node_cost_table
} | tee "$out/table.txt"
if ((${#failed[@]} > 0)); then
	die "failed runs: ${failed[*]}"
fi
