#!/usr/bin/env bash
# bench.sh: tally side by side with Redis, PostgreSQL, etcd and a bare
# in-memory HTTP server, on this machine, in one run, two tables.
#
# Every system runs alone (the others are stopped), on loopback, with its
# data in a temporary directory and durable settings. The first table
# ("peers") gives every system the same workloads from the same client
# loop (loadgen): `tally bench` for tally and the HTTP ceiling,
# `peerbench` (the bench/ module) for the peers. Each run reads every
# counter before and after and checks the increase against the
# acknowledged increments. The second ("resp") drives Redis and tally
# over the Redis protocol with Redis's own client, redis-benchmark, and
# checks the counter against the INCRs it sent.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${BENCH_DURATION:-20s}
warmup=${BENCH_WARMUP:-2s}
clients=${BENCH_CLIENTS:-64}
counters=${BENCH_COUNTERS:-10000}
batch=${BENCH_BATCH:-16}
systems=${BENCH_SYSTEMS:-ceiling tally redis-always redis-everysec postgres etcd}
workloads=${BENCH_WORKLOADS:-hot uniform batch}
tables=${BENCH_TABLES:-peers resp}
resp_systems=${BENCH_RESP_SYSTEMS:-redis-always tally-resp tally-resp-cluster}
resp_workloads=${BENCH_RESP_WORKLOADS:-incr incr-P16}
resp_clients=${BENCH_RESP_CLIENTS:-50}
resp_n=${BENCH_RESP_N:-}   # requests per plain run; empty: calibrate
resp_pn=${BENCH_RESP_PN:-} # requests per -P 16 run; empty: calibrate
out=${BENCH_OUT:-$repo/.bench-out}
wait_secs=60

usage() {
	cat <<EOF
Usage: scripts/bench.sh

Installs what is missing (redis-server, redis-tools, postgresql,
etcd-server, etcd-client and jq from Debian's packages), then runs each
system, one at a time on 127.0.0.1, and prints two tables.

peers: the same workloads against each system from one client loop,
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

resp: Redis's redis-benchmark, INCR of its one key counter:__rand_int__
with $resp_clients clients, plain (incr) and 16 to a pipeline (incr-P16),
each run sized to last about $duration; ops/s, p50 and p99 as
redis-benchmark reports them, the servers' CPU per INCR, and whether
the counter rose by exactly the INCRs sent.

Systems: redis-always (as above); tally-resp (3 nodes, one
redis-benchmark per node at once, the clients split between them);
tally-resp-cluster (one redis-benchmark --cluster, which sends each
node's clients to a key of a slot that node leads: one key per node).

Environment:
  BENCH_DURATION   per workload (default 20s)      BENCH_WARMUP   per system (default 2s)
  BENCH_CLIENTS    concurrent clients (default 64) BENCH_COUNTERS uniform's counters (10000)
  BENCH_BATCH      increments per batch (16)       BENCH_SYSTEMS  subset, in order
  BENCH_WORKLOADS  subset of: hot uniform batch    BENCH_OUT      results dir (<repo>/.bench-out)
  BENCH_BASE_PORT  first of 50 loopback ports (default: the first free block from 20000)
  BENCH_KEEP=1     keep the temporary directory (data and server logs)
  BENCH_TABLES     subset of: peers resp (default both)
  BENCH_RESP_SYSTEMS    subset, in order, of: redis-always tally-resp tally-resp-cluster
  BENCH_RESP_WORKLOADS  subset of: incr incr-P16
  BENCH_RESP_CLIENTS    redis-benchmark clients (default 50)
  BENCH_RESP_N, BENCH_RESP_PN  requests per incr / incr-P16 run (default:
                   calibrated to BENCH_DURATION by short growing runs, which
                   also warm the servers up; with these, no warm-up)
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

# has WORD LIST: true if WORD is one of LIST's space-separated words.
has() { [[ " $2 " == *" $1 "* ]]; }

# words LIST: LIST with its words separated by single spaces.
words() {
	local -a w
	read -ra w <<<"$1"
	echo "${w[*]}"
}

# peer SYSTEM: true if the peers table runs SYSTEM.
peer() { has peers "$tables" && has "$1" "$systems"; }

# install_missing: only the Debian packages whose programs are missing,
# for the systems this run measures.
install_missing() {
	local -a pkgs=()
	if peer redis-always || peer redis-everysec || { has resp "$tables" && has redis-always "$resp_systems"; }; then
		command -v redis-server >/dev/null && command -v redis-cli >/dev/null || pkgs+=(redis-server)
	fi
	# redis-benchmark and redis-cli drive and read the resp table's servers.
	if has resp "$tables"; then
		command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || pkgs+=(redis-tools)
	fi
	peer postgres && ! pg_bindir >/dev/null && pkgs+=(postgresql)
	peer etcd && ! command -v etcd >/dev/null && pkgs+=(etcd-server)
	# etcdctl checks the etcd members' health; Debian ships it apart.
	peer etcd && ! command -v etcdctl >/dev/null && pkgs+=(etcd-client)
	command -v jq >/dev/null || pkgs+=(jq) # reads the reports
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
	nodes=$(grep -o '"health":"alive"' <<<"$json" | wc -l)
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

cluster_sh() { TALLY_RUN_DIR=$work/tally TALLY_BASE_PORT=$tally_port "$repo/scripts/cluster.sh" "$@"; }

# tally_start: a new 3-node cluster, its leaders spread; sets tally_addrs.
tally_start() {
	tally_port=$((base + 20))
	tally_up=1
	cluster_sh up 3 >&2
	tally_addrs=$(cluster_sh addrs)
	wait_balanced "$tally_addrs"
}

tally_stop() {
	cluster_sh down >&2
	tally_up=0
}

run_tally() {
	tally_start
	run_workloads tally tally_cmd "$tally_addrs"
	tally_stop
}

# redis_start MODE DIR: a new Redis with appendfsync MODE on redis_port,
# its data and log in DIR under the work dir; sets redis_pid.
redis_start() {
	local mode=$1 dir=$work/$2
	redis_port=$((base + 1))
	mkdir -p "$dir"
	redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir" --save "" \
		--appendonly yes --appendfsync "$mode" --protected-mode no --daemonize no \
		--logfile "$dir/redis.log" &
	redis_pid=$!
	pids+=("$redis_pid")
	wait_until "redis ($mode)" redis-cli -p "$redis_port" ping
}

redis_stop() {
	stop_pid "$redis_pid"
	forget "$redis_pid"
}

run_redis() {
	redis_start "$1" "redis-$1"
	run_workloads "redis-$1" "$peerbench" redis --addr "127.0.0.1:$redis_port"
	redis_stop
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

# --- the Redis-protocol table (redis-benchmark)

# dur_secs DURATION: BENCH_DURATION (Go's form: 20s, 1m30s, 500ms) in seconds.
dur_secs() {
	local rest=$1 total=0 num unit
	if [[ $rest =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
		echo "$rest"
		return
	fi
	while [[ -n $rest ]]; do
		[[ $rest =~ ^([0-9]+(\.[0-9]+)?)(ms|s|m|h)(.*)$ ]] || die "cannot read the duration '$1'"
		num=${BASH_REMATCH[1]} unit=${BASH_REMATCH[3]} rest=${BASH_REMATCH[4]}
		total=$(awk -v t="$total" -v n="$num" -v u="$unit" \
			'BEGIN { print t + n * (u == "ms" ? 0.001 : u == "s" ? 1 : u == "m" ? 60 : 3600) }')
	done
	echo "$total"
}

now_ns() { date +%s%N; }

# rb_run PREFIX PIPELINE TOTAL [FLAG...]: redis-benchmark's INCR against
# every one of resp_targets (PORT:CLIENTS each) at once, TOTAL requests
# split evenly between them, each process's share a multiple of its
# clients × PIPELINE (redis-benchmark sends whole pipelines, so it would
# overshoot any other count). Prints one JSON object: the requests sent,
# the slowest process's seconds and the total over them, the median p50
# and the worst p99 of the processes, the wall time, and each process.
rb_run() {
	local prefix=$1 pipeline=$2 total=$3 i t port c n unit rc=0 t0 t1 line
	shift 3
	local k=${#resp_targets[@]} procs="" rps p50 p99
	local -a running=() sent=()
	t0=$(now_ns)
	for i in "${!resp_targets[@]}"; do
		t=${resp_targets[$i]} port=${t%%:*} c=${t##*:}
		unit=$((c * pipeline))
		n=$(((total / k + unit / 2) / unit * unit))
		((n >= unit)) || n=$unit
		sent+=("$n")
		timeout "$rb_timeout" redis-benchmark -h 127.0.0.1 -p "$port" -t incr -c "$c" -n "$n" -P "$pipeline" --csv "$@" \
			>"$prefix.$i.out" 2>&1 &
		running+=("$!")
	done
	for i in "${!running[@]}"; do
		if ! wait "${running[$i]}"; then
			log "redis-benchmark on port ${resp_targets[$i]%%:*} failed; last lines of $prefix.$i.out:"
			tail -n 5 "$prefix.$i.out" | sed 's/^/  /' >&2
			rc=1
		fi
	done
	t1=$(now_ns)
	((rc == 0)) || return 1
	for i in "${!resp_targets[@]}"; do
		# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
		line=$(grep '^"INCR"' "$prefix.$i.out" | tail -n 1 | tr -d '"') ||
			{
				log "no INCR result in $prefix.$i.out"
				return 1
			}
		IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
		# A run of a few milliseconds reports an infinite rate: no rate then.
		[[ $rps =~ ^[0-9]+(\.[0-9]+)?$ ]] || rps=0
		procs+="${procs:+,}{\"port\":${resp_targets[$i]%%:*},\"clients\":${resp_targets[$i]##*:},\"requests\":${sent[$i]},\"rps\":$rps,\"p50_ms\":$p50,\"p99_ms\":$p99}"
	done
	jq -c -n --argjson p "[$procs]" --argjson wall "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print (b - a) / 1e9 }')" '
		($p | map(.requests) | add) as $n |
		($p | map(if .rps > 0 then .requests / .rps else $wall end) | max) as $secs |
		{requests: $n, seconds: $secs, ops_per_sec: (if $secs > 0 then $n / $secs else 0 end),
		 p50_ms: ($p | map(.p50_ms) | sort | .[(length - 1) / 2 | floor]),
		 p99_ms: ($p | map(.p99_ms) | max), wall_seconds: $wall, processes: $p}'
}

# resp_calibrate PREFIX PIPELINE [FLAG...]: the request count that keeps
# the system busy for about BENCH_DURATION, from runs that grow until one
# lasts a second or a quarter of BENCH_DURATION, whichever is shorter
# (they also warm the servers up). The rate is redis-benchmark's own,
# without its start-up (which for --cluster asks every node first).
resp_calibrate() {
	local prefix=$1 pipeline=$2 n json i next
	shift 2
	n=$((resp_clients * pipeline * 4))
	for ((i = 1; ; i++)); do
		json=$(rb_run "$prefix.cal$i" "$pipeline" "$n" "$@") || return 1
		read -r n next < <(jq -r --argjson d "$resp_secs" '.requests as $n | ([.seconds, 0.001] | max) as $s |
			([1, $d / 4] | min) as $enough |
			if $s >= $enough then "\($n / $s * $d | floor) done"
			else "\($n * ([16, ([2, ($enough * 1.5 / $s | ceil)] | max)] | min)) more" end' <<<"$json")
		[[ $next == more && $i -lt 10 ]] || break
	done
	log "  calibrated: $n requests for about $duration"
	echo "$n"
}

# resp_key_total PORT: the sum of the counters this row's redis-benchmark
# increments, read through PORT: its one key, or for --cluster the keys
# of resp_slots (see run_resp_row).
resp_key_total() {
	if [[ -z ${resp_slots:-} ]]; then
		local v
		v=$(redis-cli -h 127.0.0.1 -p "$1" GET counter:__rand_int__) || return 1
		[[ $v =~ ^-?[0-9]*$ ]] || return 1
		echo "${v:-0}"
		return
	fi
	local -a keys slots
	read -ra slots <<<"$resp_slots"
	mapfile -t keys < <("$peerbench" slotkeys "${slots[@]}")
	((${#keys[@]} > 0)) || return 1
	redis-cli -h 127.0.0.1 -p "$1" MGET "${keys[@]}" | awk '
		/^-?[0-9]*$/ { s += $1; next }
		{ bad = 1 }
		END { if (bad) exit 1; print s + 0 }'
}

# first_slots PORT: the first slot of every range in CLUSTER NODES: one of
# them is each node's first slot, whose tag redis-benchmark --cluster puts
# into the keys that node's clients increment.
first_slots() {
	redis-cli -h 127.0.0.1 -p "$1" CLUSTER NODES |
		awk '{ for (i = 9; i <= NF; i++) { split($i, r, "-"); print r[1] } }' | sort -n | paste -sd' ' -
}

# metric_value ADDR NAME: a sample of /metrics on ADDR (host:port), in
# plain bash, as curl may be missing.
metric_value() {
	(
		exec 2>/dev/null
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
		printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
		while IFS= read -r -t 5 line <&3; do
			line=${line%$'\r'}
			if [[ $line == "$2 "* ]]; then
				echo "${line#* }"
				exit 0
			fi
		done
		exit 1
	)
}

# server_cpu: the CPU seconds (user + system) the servers of this row
# have used: Redis from /proc, tally's nodes from process_cpu_seconds_total.
server_cpu() {
	if [[ $resp_kind == redis ]]; then
		local stat
		local -a f
		stat=$(<"/proc/$redis_pid/stat") || return 1
		read -ra f <<<"${stat##*) }" # fields from the 3rd (state) on
		awk -v t=$((f[11] + f[12])) -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }'
		return
	fi
	local a v sum=0
	local -a addrs
	IFS=, read -ra addrs <<<"$tally_addrs"
	for a in "${addrs[@]}"; do
		v=$(metric_value "$a" process_cpu_seconds_total) || return 1
		sum=$(awk -v s="$sum" -v v="$v" 'BEGIN { print s + v }')
	done
	echo "$sum"
}

# run_resp_row SYSTEM WORKLOAD: one row, appended to resp_results.
run_resp_row() {
	local sys=$1 wl=$2 pipeline n json before="" after="" cpu0="" cpu1="" slots_after
	local prefix=$work/resp/$sys-$wl read_port=${resp_targets[0]%%:*}
	local -a flags=()
	case $wl in
	incr) pipeline=1 n=$resp_n ;;
	incr-P16) pipeline=16 n=$resp_pn ;;
	*) die "unknown resp workload '$wl' (want incr or incr-P16)" ;;
	esac
	resp_slots=""
	if [[ $sys == tally-resp-cluster ]]; then
		flags=(--cluster)
		resp_slots=$(first_slots "$read_port") || resp_slots=""
		if [[ -z $resp_slots ]]; then
			log "$sys: no slot ranges in CLUSTER NODES"
			return 1
		fi
	fi
	log "$sys: $wl"
	if [[ -z $n ]]; then
		n=$(resp_calibrate "$prefix" "$pipeline" "${flags[@]}") || return 1
	fi
	before=$(resp_key_total "$read_port") || before=""
	cpu0=$(server_cpu) || cpu0=""
	json=$(rb_run "$prefix" "$pipeline" "$n" "${flags[@]}") || return 1
	cpu1=$(server_cpu) || cpu1=""
	after=$(resp_key_total "$read_port") || after=""
	if [[ -n $resp_slots ]]; then
		slots_after=$(first_slots "$read_port")
		if [[ $slots_after != "$resp_slots" ]]; then
			log "$sys $wl: the slot ranges changed during the run ($resp_slots -> $slots_after); counter not checked"
			before=""
		fi
	fi
	[[ -n $before && -n $after ]] || log "$sys $wl: could not read the counter before and after"
	[[ -n $cpu0 && -n $cpu1 ]] || log "$sys $wl: could not read the servers' CPU before and after"
	jq -c --arg sys "$sys" --arg wl "$wl" --argjson pipeline "$pipeline" \
		--arg before "$before" --arg after "$after" --arg cpu0 "$cpu0" --arg cpu1 "$cpu1" '
		def num: if . == "" then null else tonumber end;
		{table: "resp", system: $sys, workload: $wl, clients: [.processes[].clients], pipeline: $pipeline} + . +
		{counter_before: ($before | num), counter_after: ($after | num),
		 counter_delta: (if $before == "" or $after == "" then null else ($after | num) - ($before | num) end),
		 server_cpu_seconds: (if $cpu0 == "" or $cpu1 == "" then null else ($cpu1 | num) - ($cpu0 | num) end)} |
		.cpu_us_per_op = (if .server_cpu_seconds == null or .requests == 0 then null
			else .server_cpu_seconds / .requests * 1e6 end)' <<<"$json" | tee -a "$resp_results" | cut -c1-200 >&2
	if [[ -n $before && -n $after ]] && ! tail -n 1 "$resp_results" | jq -e '.counter_delta == .requests' >/dev/null; then
		log "$sys $wl: the counter rose by $((after - before)), not by the $(jq -r .requests <<<"$json") INCRs sent"
		failed+=("$sys/$wl(counter)")
	fi
}

# resp_rows SYSTEM: every resp workload against SYSTEM; failures noted.
resp_rows() {
	local wl
	for wl in $resp_workloads; do
		if ! run_resp_row "$1" "$wl"; then
			log "$1 $wl failed (see above); its row is missing"
			failed+=("$1/$wl")
		fi
	done
}

# resp_targets_for SYSTEM: the redis-benchmark processes of SYSTEM's rows.
resp_targets_for() {
	local i c port
	resp_targets=()
	case $1 in
	redis-always) resp_targets=("$redis_port:$resp_clients") ;;
	tally-resp)
		# One process per node, the clients dealt out (50: 17, 17, 16).
		for i in 1 2 3; do
			port=$(resp_port "n$i") || die "no RESP port for n$i in $work/tally/n$i.cmd"
			c=$((resp_clients / 3 + (i <= resp_clients % 3 ? 1 : 0)))
			resp_targets+=("$port:$c")
		done
		;;
	tally-resp-cluster)
		port=$(resp_port n1) || die "no RESP port for n1 in $work/tally/n1.cmd"
		resp_targets=("$port:$resp_clients")
		;;
	esac
}

# resp_port NODE: the RESP port on the node's saved command line.
resp_port() {
	local line
	line=$(<"$work/tally/$1.cmd") || return 1
	[[ $line =~ --resp[[:space:]=]+[^[:space:]]*:([0-9]+) ]] || return 1
	echo "${BASH_REMATCH[1]}"
}

run_resp() {
	local sys
	mkdir -p "$work/resp"
	resp_secs=$(dur_secs "$duration") || exit 1
	# A redis-benchmark that hangs is ended: after ten times the time a run
	# is sized for, or an hour for fixed request counts.
	rb_timeout=$(awk -v d="$resp_secs" 'BEGIN { printf "%d", d * 10 + 60 }')
	[[ -z $resp_n && -z $resp_pn ]] || rb_timeout=3600
	for sys in $resp_systems; do
		case $sys in
		redis-always)
			((tally_up == 0)) || tally_stop
			redis_start always resp-redis-always
			resp_kind=redis
			resp_targets_for "$sys"
			resp_rows "$sys"
			redis_stop
			;;
		tally-resp | tally-resp-cluster)
			# Both run on one cluster, started the way the peers table's is.
			((tally_up)) || tally_start
			resp_kind=tally
			resp_targets_for "$sys"
			resp_rows "$sys"
			;;
		*) die "unknown resp system '$sys' (want redis-always, tally-resp or tally-resp-cluster)" ;;
		esac
	done
	((tally_up == 0)) || tally_stop
}

resp_table() {
	[[ -s $resp_results ]] || return 0
	echo
	echo "Redis protocol (redis-benchmark): INCR of one key, $resp_clients clients, -P 16 for incr-P16"
	echo "tally-resp: one redis-benchmark per node at once; ops/s = all INCRs ÷ the slowest's seconds,"
	echo "p50 the median and p99 the worst of the three. tally-resp-cluster: --cluster, one key per node."
	echo "server CPU/op: user + system CPU of redis-server, or of all three tally nodes, per INCR sent."
	"$peerbench" resptable --baseline redis-always --ratios "$out/resp-ratios.jsonl" "$resp_results"
}

# --- main

tables=$(words "$tables")
resp_systems=$(words "$resp_systems")
resp_workloads=$(words "$resp_workloads")
for t in $tables; do
	case $t in peers | resp) ;; *) die "unknown table '$t' (want peers or resp)" ;; esac
done
for t in $resp_workloads; do
	case $t in incr | incr-P16) ;; *) die "unknown resp workload '$t' (want incr or incr-P16)" ;; esac
done
for t in $resp_systems; do
	case $t in redis-always | tally-resp | tally-resp-cluster) ;;
	*) die "unknown resp system '$t' (want redis-always, tally-resp or tally-resp-cluster)" ;;
	esac
done
if ! [[ $resp_clients =~ ^[1-9][0-9]*$ ]] || ((resp_clients < 3)); then
	die "BENCH_RESP_CLIENTS must be a number of at least 3 (one a node)"
fi
for t in "$resp_n" "$resp_pn"; do
	[[ -z $t || $t =~ ^[1-9][0-9]*$ ]] || die "BENCH_RESP_N and BENCH_RESP_PN must be positive numbers, not '$t'"
done

install_missing
if peer postgres; then
	pgbin=$(pg_bindir) || die "no PostgreSQL binaries under /usr/lib/postgresql"
fi

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
resp_results=$out/resp.jsonl
: >"$results"
: >"$resp_results"
: >"$out/resp-ratios.jsonl"
declare -a failed=()
# The load average before and after says whether something else shared
# the machine during the runs (their timelines show when).
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
log "ports $base–$((base + 49)), work dir $work, results in $out"
log "tables: $tables; $duration per workload"

if has peers "$tables"; then
	log "peers: $clients clients, workloads: $workloads"
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
fi
if has resp "$tables"; then
	log "resp: redis-benchmark, $resp_clients clients, systems: $resp_systems, workloads: $resp_workloads"
	run_resp
fi

echo
{
	echo "$(nproc) cores, $duration per run"
	echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
	if has peers "$tables"; then
		echo
		echo "$clients clients; ratio = tally ops/s ÷ the row's ops/s"
		"$peerbench" table "$results"
		node_cost_table
	fi
	resp_table
} | tee "$out/table.txt"
if ((${#failed[@]} > 0)); then
	die "failed runs: ${failed[*]}"
fi
