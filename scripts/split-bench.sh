#!/usr/bin/env bash
# split-bench.sh: what splitting a hot counter buys, measured on this
# machine. A fresh cluster per case, 64 clients spread over all nodes, one
# increment per request on one hot counter:
#
#   off    --auto-split=false: every write goes to one shard leader
#   split  --auto-split=false, the counter split --split ways by hand
#          (default: one sub-counter per node)
#   auto   the default: the counter is split automatically (the load runs
#          until it is, then the measured run starts)
#   reads  the counter split 8 ways by hand; the same write load plus 8
#          clients reading it linearizably: their latency is the figure
#
# With --cpu C every node runs in its own cgroup capped at C of a core
# (cgroup v2 cpu.max or v1 cpu.cfs_quota_us), as if on its own small
# machine, so a split can reach capacity that one leader cannot use.
#
# Each case prints ops/s and latency (tally bench, which also checks the
# count rose by exactly the acknowledged increments), the nodes' CPU per
# increment, ops per raft entry, fsyncs per increment and the share of
# increments forwarded between nodes (from every node's /metrics before
# and after), then the split ÷ off ratio. Needs jq.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
nodes=3
cpu=""
split=""
duration=${SPLIT_DURATION:-20s}
clients=${SPLIT_CLIENTS:-64}
runs=${SPLIT_RUNS:-1}
cases="off split auto reads"
base=${SPLIT_BASE_PORT:-17400}
shards=${TALLY_SHARDS:-8}
tally=$repo/bin/tally

usage() {
	cat <<EOF
Usage: scripts/split-bench.sh [--nodes N] [--cpu C] [--split K] [--duration D]
                              [--clients K] [--runs R] [--cases LIST]

  --nodes N     nodes of each cluster (default 3)
  --cpu C       cap every node at C of one core, e.g. 0.25, each in its own
                cgroup (needs root and a writable cgroup v2 cpu.max or v1
                cpu.cfs_quota_us); default: no cap
  --split K     sub-counters of the split case (default: N)
  --duration D  per case (default 20s; env SPLIT_DURATION)
  --clients K   concurrent clients over all nodes (default 64; SPLIT_CLIENTS)
  --runs R      repeat every case R times; medians at the end (default 1; SPLIT_RUNS)
  --cases LIST  comma-separated subset of: off split auto reads (default all)

Node i listens on SPLIT_BASE_PORT (default 17400) + 10(i-1), raft +1,
gossip +2, RESP +3.
EOF
}

die() {
	echo "split-bench.sh: $*" >&2
	exit 1
}

usage_error() {
	echo "split-bench.sh: $*" >&2
	echo "Run 'scripts/split-bench.sh --help' for usage." >&2
	exit 2
}

while (($# > 0)); do
	case $1 in
	--nodes | --cpu | --split | --duration | --clients | --runs | --cases)
		(($# >= 2)) || usage_error "$1 needs a value"
		case $1 in
		--nodes) nodes=$2 ;;
		--cpu) cpu=$2 ;;
		--split) split=$2 ;;
		--duration) duration=$2 ;;
		--clients) clients=$2 ;;
		--runs) runs=$2 ;;
		--cases) cases=${2//,/ } ;;
		esac
		shift 2
		;;
	-h | --help | help)
		usage
		exit 0
		;;
	*) usage_error "unknown argument '$1'" ;;
	esac
done
[[ $nodes =~ ^[1-9][0-9]*$ ]] || usage_error "--nodes must be a positive number, not '$nodes'"
[[ $runs =~ ^[1-9][0-9]*$ ]] || usage_error "--runs must be a positive number, not '$runs'"
[[ $clients =~ ^[1-9][0-9]*$ ]] || usage_error "--clients must be a positive number, not '$clients'"
split=${split:-$nodes}
[[ $split =~ ^[1-9][0-9]*$ ]] || usage_error "--split must be a positive number, not '$split'"
quota="" # --cpu in µs per 100 ms period
if [[ -n $cpu ]]; then
	quota=$(awk -v c="$cpu" 'BEGIN { if (c ~ /^[0-9]*\.?[0-9]+$/ && c + 0 > 0) printf "%d", c * 100000; else print "bad" }')
	[[ $quota != bad ]] || usage_error "--cpu must be a positive fraction of a core such as 0.25, not '$cpu'"
	((quota >= 1000)) || usage_error "--cpu $cpu is below the kernel's smallest quota (0.01 of a core)"
fi
for c in $cases; do
	[[ $c =~ ^(off|split|auto|reads)$ ]] || usage_error "unknown case '$c' (want off, split, auto or reads)"
done
command -v jq >/dev/null || die "needs jq (apt-get install jq)"
[[ -x $tally && -x $repo/bin/tallyd ]] || make -C "$repo" build >/dev/null

# --- CPU caps: one cgroup per node under cg_dir, removed on exit.

cg_dir=""     # this run's parent cgroup, empty without --cpu
cg_version="" # 1 or 2
cg_root=""    # the hierarchy's root, where a leftover process is moved back to

# mount_of TYPE [OPTION]: the first mount point of a cgroup filesystem
# of TYPE (cgroup or cgroup2) whose options include OPTION.
mount_of() {
	local _dev dir type opts _rest
	while read -r _dev dir type opts _rest; do
		[[ $type == "$1" ]] || continue
		[[ -z ${2:-} || ,$opts, == *,"$2",* ]] || continue
		echo "$dir"
		return 0
	done </proc/mounts
	return 1
}

# cg_setup: make cg_dir/n1..nN, each capped at $cpu of a core, or exit
# saying why not.
cg_setup() {
	local period=100000 i dir tried=""
	if dir=$(mount_of cgroup2) && ! [[ ,$(tr ' ' , <"$dir/cgroup.controllers" 2>/dev/null), == *,cpu,* ]]; then
		tried+=" cgroup v2 at $dir: no cpu controller;"
	elif [[ -n $dir ]]; then
		tried+=" cgroup v2 at $dir:"
		if { grep -qw cpu "$dir/cgroup.subtree_control" || echo +cpu >"$dir/cgroup.subtree_control"; } 2>/dev/null &&
			mkdir "$dir/tally-split-$$" 2>/dev/null; then
			cg_version=2 cg_root=$dir cg_dir=$dir/tally-split-$$
			echo +cpu >"$cg_dir/cgroup.subtree_control"
			for ((i = 1; i <= nodes; i++)); do
				mkdir "$cg_dir/n$i"
				echo "$quota $period" >"$cg_dir/n$i/cpu.max"
			done
			return 0
		fi
		tried+=" not writable;"
	fi
	if dir=$(mount_of cgroup cpu); then
		tried+=" cgroup v1 cpu at $dir:"
		if mkdir "$dir/tally-split-$$" 2>/dev/null; then
			cg_version=1 cg_root=$dir cg_dir=$dir/tally-split-$$
			for ((i = 1; i <= nodes; i++)); do
				mkdir "$cg_dir/n$i"
				echo "$period" >"$cg_dir/n$i/cpu.cfs_period_us"
				echo "$quota" >"$cg_dir/n$i/cpu.cfs_quota_us"
			done
			return 0
		fi
		tried+=" not writable;"
	fi
	[[ -n $tried ]] || tried=" no cgroup filesystem is mounted;"
	die "--cpu needs a writable cgroup with the cpu controller (v2 cpu.max or v1 cpu.cfs_quota_us), usually as root;${tried%;}"
}

# cg_cleanup: move any process left in our cgroups back to the root and
# remove them.
cg_cleanup() {
	[[ -n $cg_dir && -d $cg_dir ]] || return 0
	local d pid
	for d in "$cg_dir"/n*/; do
		[[ -d $d ]] || continue
		while read -r pid; do
			echo "$pid" >"$cg_root/cgroup.procs" 2>/dev/null || true
		done <"$d/cgroup.procs"
		rmdir "$d" 2>/dev/null || echo "split-bench.sh: could not remove cgroup $d" >&2
	done
	rmdir "$cg_dir" 2>/dev/null || echo "split-bench.sh: could not remove cgroup $cg_dir" >&2
}

# cg_cap: move every node's process into its own capped cgroup.
cg_cap() {
	[[ -n $cg_dir ]] || return 0
	local i pid
	for ((i = 1; i <= nodes; i++)); do
		pid=$(<"$run_dir/n$i.pid")
		echo "$pid" >"$cg_dir/n$i/cgroup.procs"
	done
}

# --- the cluster

run_dir=$(mktemp -d)
cleanup() {
	TALLY_RUN_DIR=$run_dir "$repo/scripts/cluster.sh" down >/dev/null 2>&1 || true
	cg_cleanup
	rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
[[ -z $cpu ]] || cg_setup

cluster() { TALLY_RUN_DIR=$run_dir TALLY_BASE_PORT=$base TALLY_SHARDS=$shards "$repo/scripts/cluster.sh" "$@"; }

# balanced: every shard has a leader and no node leads more than its
# share, ceil(shards / nodes).
balanced() {
	local json most
	json=$("$tally" --addr "$addrs" --json --timeout 5s cluster 2>/dev/null) || return 1
	(($(grep -o '"leader":"[^"]\+"' <<<"$json" | wc -l) == shards)) || return 1
	most=$(grep -o '"leader":"[^"]*"' <<<"$json" | sort | uniq -c | sort -rn | awk 'NR == 1 { print $1 }')
	((most <= (shards + nodes - 1) / nodes))
}

up() { # tallyd flags
	rm -rf "${run_dir:?}"/*
	TALLY_EXTRA_FLAGS="$1" cluster up "$nodes" >/dev/null
	addrs=$(cluster addrs)
	cg_cap
	for _ in $(seq 1 120); do balanced && return 0; sleep 1; done
	die "shard leaders never spread over the nodes"
}

# --- the measurements

declare -A rates=() # case → ops/s of each run, space-separated
declare -A last=()  # case → ops/s of this run
declare -a failed=()

# num VALUE FORMAT: VALUE in printf FORMAT, or "-" when it is empty.
# shellcheck disable=SC2059 # the format is the caller's, a constant
num() { if [[ -n $1 ]]; then printf "$2" "$1"; else echo -; fi; }

# measure CASE COUNTER: one verified run of tally bench; prints its
# figures and the nodes' cost from its JSON report.
measure() {
	local rep ops p50 p99 errs ver cpu meas total ope fpi est fwd incr share
	rep=$("$tally" --addr "$addrs" --timeout 30s --json bench --duration "$duration" --clients "$clients" --counter "$2") ||
		failed+=("$1 in run $run")
	if [[ $rep != "{"* ]]; then
		echo "$1: tally bench gave no report"
		return 0
	fi
	IFS='|' read -r ops p50 p99 errs ver cpu meas total ope fpi est fwd incr <<<"$(jq -r '[.ops_per_sec, .p50_ms, .p99_ms,
		.errors, .verified, .node_cost.cpu_us_per_op, .node_cost.measured, (.node_cost.nodes | length),
		.node_cost.ops_per_entry, .node_cost.fsyncs_per_increment, .node_cost.fsyncs_estimated,
		.node_cost.forwarded, .increments] | map(if . == null then "" else tostring end) | join("|")' <<<"$rep")"
	last[$1]=$ops
	rates[$1]+="$ops "
	share=""
	[[ -z $fwd || $incr == 0 ]] || share=$(awk -v f="$fwd" -v n="$incr" 'BEGIN { printf "%.1f%%", 100 * f / n }')
	printf '%-6s %.0f ops/s, p50 %.2f ms, p99 %.2f ms, errors %s, verified %s\n' "$1" "$ops" "$p50" "$p99" "$errs" "${ver:--}"
	printf '       node CPU %s µs per increment (%s of %s nodes); ops per raft entry %s; fsyncs per increment %s%s; forwarded %s\n' \
		"$(num "$cpu" %.1f)" "$meas" "$total" "$(num "$ope" %.2f)" "$(num "$fpi" %.3f)" \
		"$([[ $est != true ]] || echo " (2 per log commit)")" "$(num "$share" %s)"
	jq -r '.node_cost.nodes[] | select(.error) | "       not measured: \(.addr): \(.error)"' <<<"$rep"
}

# median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

has_case() { [[ " $cases " == *" $1 "* ]]; }

cap_note="uncapped"
[[ -z $cpu ]] || cap_note="each capped at $cpu of a core (cgroup v$cg_version)"
for run in $(seq 1 "$runs"); do
	echo "== run $run of $runs: $nodes nodes $cap_note, $clients clients, $duration per case"
	if has_case off; then
		up "--auto-split=false"
		measure off hot
		cluster down >/dev/null
	fi
	if has_case split; then
		up "--auto-split=false"
		"$tally" --addr "$addrs" split hot "$split" >/dev/null
		echo "       split by hand: $split ways"
		measure split hot
		cluster down >/dev/null
	fi
	if has_case auto; then
		up ""
		# Warm up until the auto-splitter has split the counter.
		"$tally" --addr "$addrs" bench --duration 60s --clients "$clients" --counter hot --verify=false --node-metrics=false >/dev/null &
		warm=$!
		for _ in $(seq 1 60); do
			"$tally" --addr "$addrs" --json get hot | grep -q '"split":[2-9]' && break
			sleep 1
		done
		kill "$warm" 2>/dev/null || true
		wait "$warm" 2>/dev/null || true
		echo "       $("$tally" --addr "$addrs" --json get hot | sed 's/.*"split":\([0-9]*\).*/split automatically: \1 ways/')"
		measure auto hot
		cluster down >/dev/null
	fi
	if has_case reads; then
		up ""
		"$tally" --addr "$addrs" split read8 8 >/dev/null
		"$tally" --addr "$addrs" bench --duration "$duration" --clients "$clients" --counter read8 --verify=false --node-metrics=false >/dev/null &
		writers=$!
		echo "reads  $("$tally" --addr "$addrs" bench --duration "$duration" --clients 8 --counter read8 --reads 1 --verify=false --node-metrics=false | sed -n 1p)"
		wait "$writers"
		cluster down >/dev/null
	fi
	for c in split auto; do
		[[ -n ${last[$c]:-} && -n ${last[off]:-} ]] || continue
		echo "       $c ÷ off: $(ratio "${last[$c]}" "${last[off]}")"
	done
	last=()
done

if ((runs > 1)); then
	echo "== medians of $runs runs"
	for c in off split auto; do
		[[ -n ${rates[$c]:-} ]] || continue
		# shellcheck disable=SC2086
		m=$(median ${rates[$c]})
		line="$c: $(printf '%.0f' "$m") ops/s (runs: ${rates[$c]% })"
		if [[ $c != off && -n ${rates[off]:-} ]]; then
			# shellcheck disable=SC2086
			line+="; ÷ off: $(ratio "$m" "$(median ${rates[off]})")"
		fi
		echo "$line"
	done
fi
if ((${#failed[@]} > 0)); then
	die "tally bench failed (verification or errors, see above): ${failed[*]}"
fi
