#!/usr/bin/env bash
# cluster.sh: run a local tally cluster of tallyd processes on 127.0.0.1.
#
# Node i (1-based) is n<i>, listening on http BASE+10(i-1), raft +1,
# gossip +2 and RESP +3, so n1 has tallyd's default ports and `tally`,
# `curl 127.0.0.1:7070/...` or `redis-cli -p 7073` need no flags. A node's state lives in the run
# dir: nI/data, nI.log, nI.pid, nI.http (its HTTP address) and nI.cmd (its
# exact command line, which `start` reuses so a restarted node rejoins).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run_dir=${TALLY_RUN_DIR:-$repo/.tally-run}
bin=${TALLY_BIN:-$repo/bin}
# Absolute, because the saved command lines must work from any directory.
[[ $run_dir == /* ]] || run_dir=$PWD/$run_dir
[[ $bin == /* ]] || bin=$PWD/$bin
base_port=${TALLY_BASE_PORT:-7070}
shards=${TALLY_SHARDS:-8}
extra_flags=${TALLY_EXTRA_FLAGS:-}
wait_secs=${TALLY_WAIT:-60}
stop_secs=30
# up --secure writes a CA, certificates, a gossip key and tokens here;
# while it holds a CA, every node and every tally call of this script
# uses TLS, the gossip key and the admin token.
certs_dir=$run_dir/certs

usage() {
	cat <<EOF
Usage: scripts/cluster.sh <command> [args]

Runs a local tally cluster on 127.0.0.1 (run dir: $run_dir).

Commands:
  up [N] [--secure]  start N nodes (default 3) and wait until all are ready;
                     --secure: TLS everywhere, encrypted gossip and tokens
                     (tally certs init into RUN_DIR/certs); prints the token
  status             members and shard leaders, and which local nodes run
  stop NODE          SIGTERM a node and wait (up to ${stop_secs}s) for it to exit
  kill NODE          SIGKILL a node
  start NODE...      restart nodes with their saved command lines; wait until ready
  kill-leader SHARD  SIGKILL the leader of shard SHARD; print its id
  add [N]            start N more nodes (default 1) that join the running
                     cluster; the cluster moves replicas onto them
  decommission NODE  move every replica off NODE, wait until it has left,
                     then stop it
  remove NODE        drop a dead (killed or stopped) NODE from every shard;
                     its replicas are placed on the live nodes
  down               SIGTERM every node and wait for all to exit
  logs NODE [ARGS]   tail a node's log (ARGS go to tail, e.g. -f)
  addrs              print the nodes' HTTP addresses, comma-separated
  ports [N]          print the ports nodes 1..N (default 3) use
  clean              delete the run dir's node state (the cluster must be down)

NODE is a node id such as n2, or just 2. Node i listens on 127.0.0.1 at
BASE+10(i-1) (http), +1 (raft), +2 (gossip) and +3 (RESP).

Environment:
  TALLY_RUN_DIR      run dir (default <repo>/.tally-run)
  TALLY_BASE_PORT    BASE, node 1's http port (default 7070)
  TALLY_SHARDS       shards of a new cluster (default 8)
  TALLY_EXTRA_FLAGS  appended to every tallyd command line, e.g. --enable-faults
  TALLY_BIN          directory holding tallyd and tally (default <repo>/bin)
  TALLY_WAIT         seconds to wait for readiness (default 60)
EOF
}

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

usage_error() {
	echo "cluster.sh: $*" >&2
	echo "Run 'scripts/cluster.sh help' for usage." >&2
	exit 2
}

# ports I: print node I's http, raft, gossip and RESP ports.
ports() {
	local p=$((base_port + 10 * ($1 - 1)))
	echo "$p $((p + 1)) $((p + 2)) $((p + 3))"
}

# node_id ARG: the id for "n2" or "2".
node_id() {
	if ! [[ $1 =~ ^n?([0-9]+)$ ]] || ((10#${BASH_REMATCH[1]} == 0)); then
		usage_error "not a node id: '$1' (want n1, n2, ... or 1, 2, ...)"
	fi
	echo "n$((10#${BASH_REMATCH[1]}))"
}

# nodes: the ids of the nodes in the run dir, in order.
nodes() {
	local f
	for f in "$run_dir"/n*.cmd; do
		[[ -e $f ]] || continue
		f=${f##*/}
		echo "${f%.cmd}"
	done | sort -k1.2n
}

# known ID: fail unless the run dir has node ID.
known() {
	local all
	[[ -f $run_dir/$1.cmd ]] && return
	all=$(nodes | paste -sd' ' -)
	[[ -n $all ]] || die "no cluster in $run_dir; start one with 'up'"
	die "no node $1 in $run_dir (nodes: $all)"
}

pid_of() { cat "$run_dir/$1.pid" 2>/dev/null || true; }
http_of() { cat "$run_dir/$1.http"; }

# is_tallyd PID: true while PID is a live tallyd. The name check guards
# against a recycled pid; a zombie (state Z) counts as exited. A process in
# the middle of exec (setsid and nohup exec tallyd) briefly shows an empty
# cmdline, so an empty one on a live process is not taken for an exit.
is_tallyd() {
	local args stat
	kill -0 "$1" 2>/dev/null || return 1
	if [[ -r /proc/$1/stat ]]; then
		stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
		stat=${stat##*) }
		[[ ${stat%% *} != Z ]] || return 1
		args=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)
		[[ -z $args || $args == *tallyd* ]]
		return
	fi
	args=$(ps -p "$1" -o stat=,args= 2>/dev/null || true)
	[[ $args != Z* && $args == *tallyd* ]]
}

running() {
	local pid
	pid=$(pid_of "$1")
	[[ -n $pid ]] && is_tallyd "$pid"
}

# http_status HOST:PORT PATH: print the status code of GET PATH, or 000 if
# nothing answers. Plain bash (/dev/tcp) because curl may be missing. The
# read gives up after 2 s, which covers a stopped node: on loopback the
# connect itself is accepted or refused at once.
http_status() {
	if secure; then
		"$bin/tally" --addr "$1" --timeout 2s probe "$2" 2>/dev/null || echo 000
		return
	fi
	local code
	code=$(
		exec 2>/dev/null # bash reports a refused connect on stderr
		exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 0
		printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&3
		read -r -t 2 _ status _ <&3 && echo "$status"
	) || true
	echo "${code:-000}"
}

secure() { [[ -f $certs_dir/ca.crt ]]; }

# use_certs: point tally at the CA and the admin token of a secure cluster.
use_certs() {
	secure || return 0
	export TALLY_CACERT=$certs_dir/ca.crt
	TALLY_TOKEN=$(awk '$2 == "admin" { print $1; exit }' "$certs_dir/tokens")
	export TALLY_TOKEN
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_binaries() {
	[[ -x $bin/tallyd && -x $bin/tally ]] && return
	echo "building tallyd and tally: make -C $repo build"
	make -C "$repo" build
	[[ -x $bin/tallyd && -x $bin/tally ]] || die "no $bin/tallyd or $bin/tally after 'make build'"
}

need_tally() { [[ -x $bin/tally ]] || die "no $bin/tally; run 'make build'"; }

# quote ARG...: print the args as one shell command line, quoting only
# where needed, so the saved line reads like what one would type.
quote() {
	local a sep=""
	for a; do
		if [[ $a =~ ^[][A-Za-z0-9_./:,=@+%^-]+$ ]]; then
			printf '%s%s' "$sep" "$a"
		else
			printf '%s%q' "$sep" "$a"
		fi
		sep=" "
	done
	echo
}

# launch ID: start node ID from its saved command line, detached: setsid
# and nohup let it outlive this script and the terminal. $! is tallyd
# itself, since setsid and nohup exec (a background job of a
# non-interactive shell is no group leader, so setsid need not fork).
launch() {
	local id=$1 line
	local -a cmd
	line=$(<"$run_dir/$id.cmd")
	eval "cmd=($line)" # written by up, with quote
	local -a detach=(nohup)
	if command -v setsid >/dev/null; then
		detach=(setsid nohup)
	fi
	"${detach[@]}" "${cmd[@]}" >>"$run_dir/$id.log" 2>&1 </dev/null &
	echo $! >"$run_dir/$id.pid"
}

# wait_ready ID...: poll /readyz until every node answers 200; fail with
# the tail of a node's log if it exits or the deadline passes.
wait_ready() {
	local start=$SECONDS id next_note=$((SECONDS + 5))
	local -a pending=("$@") left
	echo "waiting up to ${wait_secs}s for $* to be ready"
	while :; do
		left=()
		for id in "${pending[@]}"; do
			if [[ $(http_status "$(http_of "$id")" /readyz) == 200 ]]; then
				echo "  $id ready at $(http_of "$id") after $((SECONDS - start))s"
			elif ! running "$id"; then
				echo "cluster.sh: $id exited; last lines of $run_dir/$id.log:" >&2
				tail -n 20 "$run_dir/$id.log" >&2 || true
				exit 1
			else
				left+=("$id")
			fi
		done
		pending=("${left[@]}")
		((${#pending[@]} > 0)) || return 0
		if ((SECONDS - start >= wait_secs)); then
			echo "cluster.sh: not ready after ${wait_secs}s: ${pending[*]}" >&2
			for id in "${pending[@]}"; do
				echo "--- last lines of $run_dir/$id.log" >&2
				tail -n 20 "$run_dir/$id.log" >&2 || true
			done
			exit 1
		fi
		if ((SECONDS >= next_note)); then
			echo "  still waiting for ${pending[*]} ($((SECONDS - start))s)"
			next_note=$((SECONDS + 5))
		fi
		sleep 0.2
	done
}

# wait_exit PID SECS: wait for PID to exit; false if it outlives SECS.
wait_exit() {
	local deadline=$((SECONDS + $2))
	while is_tallyd "$1"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# first_live: the HTTP address of the first running node that answers.
first_live() {
	local id
	for id in $(nodes); do
		if running "$id" && [[ $(http_status "$(http_of "$id")" /healthz) == 200 ]]; then
			http_of "$id"
			return 0
		fi
	done
	return 1
}

cmd_up() {
	local n=3 i id p join http raft gsp rsp want_secure=false a
	for a; do
		case $a in
		--secure) want_secure=true ;;
		*) n=$a ;;
		esac
	done
	[[ $n =~ ^[1-9][0-9]*$ ]] || usage_error "up: N must be a positive number, not '$n'"
	((base_port > 0 && base_port + 10 * (n - 1) + 3 <= 65535)) ||
		usage_error "up: $n nodes from base port $base_port run past port 65535"
	for id in $(nodes); do
		if running "$id"; then
			die "a cluster is already running in $run_dir ($id is pid $(pid_of "$id")); run 'scripts/cluster.sh down' first"
		fi
	done
	for ((i = 1; i <= n; i++)); do
		for p in $(ports "$i"); do
			if port_in_use "$p"; then
				die "port $p is in use (another cluster? set TALLY_BASE_PORT or TALLY_RUN_DIR)"
			fi
		done
	done
	ensure_binaries

	# A new cluster starts from nothing: old data would make the nodes
	# rejoin a cluster of another size instead of bootstrapping.
	if [[ -n $(nodes) ]]; then
		echo "removing the previous cluster's state in $run_dir"
		clean_state
	fi
	mkdir -p "$run_dir"
	rm -rf "$certs_dir"
	unset TALLY_CACERT TALLY_TOKEN
	if $want_secure; then
		"$bin/tally" certs init "$certs_dir" --hosts 127.0.0.1,localhost >/dev/null
		use_certs
	fi

	local -a gossip=()
	for ((i = 1; i <= n; i++)); do
		read -r _ _ p _ < <(ports "$i")
		gossip+=("127.0.0.1:$p")
	done
	for ((i = 1; i <= n; i++)); do
		# Every other node's gossip address: any one that is up will do.
		read -r _ _ gsp _ < <(ports "$i")
		join=$(printf '%s\n' "${gossip[@]}" | grep -vx "127.0.0.1:$gsp" | paste -sd, - || true)
		new_node "$i" "$join" "$n"
	done
	local -a ids=()
	for ((i = 1; i <= n; i++)); do ids+=("n$i"); done
	wait_ready "${ids[@]}"
	echo "cluster of $n up: tally --addr $(cmd_addrs)"
	if secure; then
		echo "secure: TLS, encrypted gossip and tokens ($certs_dir/tokens holds admin, write and read tokens). Talk to it with:"
		echo "  export TALLY_CACERT=$TALLY_CACERT TALLY_TOKEN=$TALLY_TOKEN"
		echo "  curl --cacert \$TALLY_CACERT -H \"Authorization: Bearer \$TALLY_TOKEN\" -XPOST https://127.0.0.1:$base_port/v1/counters/x/incr"
		echo "  redis-cli -p $((base_port + 3)) --tls --cacert \$TALLY_CACERT -a \$TALLY_TOKEN --no-auth-warning INCR x"
	fi
}

# new_node I JOIN EXPECT: write node I's command line (joining the
# comma-separated gossip addresses JOIN, forming once EXPECT members are
# seen) and launch it.
new_node() {
	local i=$1 join=$2 expect=$3 id=n$1 http raft gsp rsp
	local -a extra
	read -ra extra <<<"$extra_flags"
	read -r http raft gsp rsp < <(ports "$i")
	local -a cmd=("$bin/tallyd" --id "$id" --data-dir "$run_dir/$id/data"
		--http "127.0.0.1:$http" --raft "127.0.0.1:$raft" --gossip "127.0.0.1:$gsp" --resp "127.0.0.1:$rsp"
		--bootstrap-expect "$expect" --shards "$shards")
	[[ -z $join ]] || cmd+=(--join "$join")
	if secure; then
		cmd+=(--tls-cert "$certs_dir/node.crt" --tls-key "$certs_dir/node.key" --tls-ca "$certs_dir/ca.crt"
			--gossip-key-file "$certs_dir/gossip.key" --auth-token-file "$certs_dir/tokens")
	fi
	cmd+=("${extra[@]}")
	mkdir -p "$run_dir/$id"
	quote "${cmd[@]}" >"$run_dir/$id.cmd"
	echo "127.0.0.1:$http" >"$run_dir/$id.http"
	launch "$id"
	echo "started $id (pid $(pid_of "$id")): http 127.0.0.1:$http raft $raft gossip $gsp resp $rsp"
}

# cmd_add N: start N more nodes that join the running cluster. Each joins
# through every node's gossip address and expects more members than the
# cluster has, so it can only join the formed cluster, never form one of
# its own before gossip reaches the others.
cmd_add() {
	local n=${1:-1} id last=0 i p join
	local -a gossip=() ids=()
	[[ $n =~ ^[1-9][0-9]*$ ]] || usage_error "add: N must be a positive number, not '$n'"
	[[ -n $(nodes) ]] || die "no cluster in $run_dir; start one with 'up'"
	first_live >/dev/null || die "no node of the cluster answers; 'start' some first"
	for id in $(nodes); do
		last=${id#n}
		read -r _ _ p _ < <(ports "$last")
		gossip+=("127.0.0.1:$p")
	done
	((base_port + 10 * (last + n - 1) + 3 <= 65535)) || usage_error "add: $n more nodes run past port 65535"
	for ((i = last + 1; i <= last + n; i++)); do
		for p in $(ports "$i"); do
			port_in_use "$p" && die "port $p is in use"
		done
	done
	join=$(printf '%s\n' "${gossip[@]}" | paste -sd, -)
	for ((i = last + 1; i <= last + n; i++)); do
		new_node "$i" "$join" $((last + n + 1))
		ids+=("n$i")
	done
	wait_ready "${ids[@]}"
	echo "added ${ids[*]}; replicas move onto them over the next seconds ('status' shows them)"
}

# member_state ID: the state (active, leaving, left, removed) the cluster
# records for member ID, from `tally --json cluster` on stdin.
member_state() {
	{ grep -o "\"id\":\"$1\",\"http\":\"[^\"]*\",\"state\":\"[a-z]*\"" || true; } |
		sed 's/.*"state":"//; s/"$//' | head -n 1
}

# holders ID: how many shards list ID as a voter or learner, from
# `tally --json cluster` on stdin.
holders() {
	{ grep -o '"\(replicas\|learners\)":\[[^]]*\]' || true; } | grep -c "\"$1\"" || true
}

cmd_decommission() {
	local id live json state deadline
	id=$(node_id "$1")
	known "$id"
	need_tally
	live=$(first_live) || die "no node of the cluster answers"
	"$bin/tally" --addr "$live" --timeout 30s node decommission "$id"
	echo "waiting up to $((wait_secs * 5))s for $id to hand its replicas away"
	deadline=$((SECONDS + wait_secs * 5))
	while :; do
		json=$("$bin/tally" --addr "$live" --json --timeout 5s cluster 2>/dev/null || true)
		state=$(member_state "$id" <<<"$json")
		[[ $state == left ]] && break
		((SECONDS < deadline)) || die "$id is still ${state:-unknown} after $((wait_secs * 5))s"
		sleep 0.5
	done
	echo "$id has left the cluster"
	if running "$id"; then
		cmd_stop "$id"
	fi
}

cmd_remove() {
	local id live json deadline err
	id=$(node_id "$1")
	known "$id"
	need_tally
	running "$id" && die "$id is running; 'stop' or 'kill' it first, or 'decommission' it"
	live=$(first_live) || die "no node of the cluster answers"
	# Gossip needs a few seconds to see a node that just stopped as dead.
	err=$(mktemp)
	deadline=$((SECONDS + wait_secs))
	until "$bin/tally" --addr "$live" --timeout 30s node remove "$id" 2>"$err"; do
		if ! grep -q "alive" "$err" || ((SECONDS >= deadline)); then
			cat "$err" >&2
			rm -f "$err"
			exit 1
		fi
		sleep 1
	done
	rm -f "$err"
	echo "waiting up to $((wait_secs * 5))s for the shards to drop $id"
	deadline=$((SECONDS + wait_secs * 5))
	while :; do
		json=$("$bin/tally" --addr "$live" --json --timeout 5s cluster 2>/dev/null || true)
		[[ -n $json && $(holders "$id" <<<"$json") == 0 ]] && break
		((SECONDS < deadline)) || die "shards still list $id after $((wait_secs * 5))s"
		sleep 0.5
	done
	echo "$id is in no shard any more; its replicas are being placed on the live nodes"
}

cmd_status() {
	local id pid state live=""
	[[ -n $(nodes) ]] || die "no cluster in $run_dir"
	need_tally
	if live=$(first_live); then
		echo "cluster as $live sees it:"
		"$bin/tally" --addr "$live" --timeout 5s cluster || true
	else
		echo "no node answers"
	fi
	echo
	printf '%-6s %-8s %-22s %s\n' NODE PID HTTP PROCESS
	for id in $(nodes); do
		pid=$(pid_of "$id")
		state=exited
		if running "$id"; then
			state="running, /readyz $(http_status "$(http_of "$id")" /readyz)"
		fi
		printf '%-6s %-8s %-22s %s\n' "$id" "${pid:--}" "$(http_of "$id")" "$state"
	done
	[[ -n $live ]]
}

cmd_kill() {
	local id pid
	id=$(node_id "$1")
	known "$id"
	running "$id" || die "$id is not running"
	pid=$(pid_of "$id")
	kill -KILL "$pid"
	wait_exit "$pid" 10 || die "$id (pid $pid) survived SIGKILL"
	echo "killed $id (pid $pid)"
}

cmd_stop() {
	local id pid
	id=$(node_id "$1")
	known "$id"
	running "$id" || die "$id is not running"
	pid=$(pid_of "$id")
	kill -TERM "$pid"
	wait_exit "$pid" "$stop_secs" || die "$id (pid $pid) still runs ${stop_secs}s after SIGTERM; 'kill $id' ends it"
	echo "stopped $id (pid $pid)"
}

cmd_start() {
	local id p
	local -a ids=()
	(($# > 0)) || usage_error "start: which node?"
	for id in "$@"; do
		id=$(node_id "$id")
		known "$id"
		running "$id" && die "$id is already running (pid $(pid_of "$id"))"
		for p in $(ports "${id#n}"); do
			# A SIGKILLed node lets its ports go as its last thread exits,
			# which can be a moment after its main thread shows as exited;
			# a port still taken after that is a stray.
			local deadline=$((SECONDS + 10))
			while port_in_use "$p"; do
				((SECONDS < deadline)) || die "port $p is in use; is an old $id still running?"
				sleep 0.1
			done
		done
		ids+=("$id")
	done
	# All of them first, then the wait: a node is ready only once its
	# shards have leaders, which may take the others.
	for id in "${ids[@]}"; do
		launch "$id"
		echo "started $id (pid $(pid_of "$id"))"
	done
	wait_ready "${ids[@]}"
}

# leader_of SHARD: read `tally --json cluster` on stdin and print the
# leader of SHARD (nothing if it has none). The CLI encodes shards as
# {"id":N,"leader":"...",...}, always in that order, so grep and sed do.
leader_of() {
	{ grep -o "{\"id\":$1,\"leader\":\"[^\"]*\"" || true; } |
		sed 's/.*"leader":"//; s/"$//' | head -n 1
}

cmd_kill_leader() {
	local shard=$1 live json leader pid deadline=$((SECONDS + wait_secs))
	[[ $shard =~ ^[0-9]+$ ]] || usage_error "kill-leader: SHARD must be a shard number, not '$shard'"
	[[ -n $(nodes) ]] || die "no cluster in $run_dir"
	need_tally
	# Right after a failure the answering node may know no leader yet, or
	# still name the dead one: poll until it names a running local node.
	while :; do
		leader=""
		if live=$(first_live); then
			json=$("$bin/tally" --addr "$live" --json --timeout 5s cluster 2>/dev/null || true)
			leader=$(leader_of "$shard" <<<"$json")
		fi
		if [[ -n $leader ]] && [[ -f $run_dir/$leader.cmd ]] && running "$leader"; then
			break
		fi
		((SECONDS < deadline)) || die "shard $shard has no running leader after ${wait_secs}s (last answer: ${leader:-none})"
		sleep 0.2
	done
	pid=$(pid_of "$leader")
	kill -KILL "$pid"
	wait_exit "$pid" 10 || die "$leader (pid $pid) survived SIGKILL"
	echo "killed $leader (pid $pid), leader of shard $shard" >&2
	echo "$leader"
}

cmd_down() {
	local id pid i deadline=$((SECONDS + stop_secs))
	local -a ids=() pids=() left
	for id in $(nodes); do
		if running "$id"; then
			pid=$(pid_of "$id")
			kill -TERM "$pid"
			ids+=("$id")
			pids+=("$pid")
		fi
	done
	if ((${#ids[@]} == 0)); then
		echo "no node is running in $run_dir"
		return 0
	fi
	echo "sent SIGTERM to ${ids[*]}"
	while :; do
		left=()
		for i in "${!ids[@]}"; do
			is_tallyd "${pids[$i]}" && left+=("${ids[$i]} (pid ${pids[$i]})")
		done
		((${#left[@]} > 0)) || break
		((SECONDS < deadline)) || die "still running ${stop_secs}s after SIGTERM: ${left[*]}"
		sleep 0.1
	done
	echo "stopped ${ids[*]}; state and logs stay in $run_dir"
}

cmd_logs() {
	local id
	id=$(node_id "$1")
	known "$id"
	shift
	tail -n 100 "$@" "$run_dir/$id.log"
}

cmd_addrs() {
	local id
	local -a addrs=()
	for id in $(nodes); do addrs+=("$(http_of "$id")"); done
	((${#addrs[@]} > 0)) || die "no cluster in $run_dir"
	(
		IFS=,
		echo "${addrs[*]}"
	)
}

cmd_ports() {
	local n=${1:-3} i http raft gossip rsp
	[[ $n =~ ^[1-9][0-9]*$ ]] || usage_error "ports: N must be a positive number, not '$n'"
	printf '%-5s %-6s %-6s %-6s %s\n' NODE HTTP RAFT GOSSIP RESP
	for ((i = 1; i <= n; i++)); do
		read -r http raft gossip rsp < <(ports "$i")
		printf '%-5s %-6s %-6s %-6s %s\n' "n$i" "$http" "$raft" "$gossip" "$rsp"
	done
}

# clean_state: delete every node's files, but nothing else in the run dir.
clean_state() {
	local id
	for id in $(nodes); do
		rm -rf "${run_dir:?}/$id" "$run_dir/$id".{cmd,http,log,pid}
	done
}

cmd_clean() {
	local id
	for id in $(nodes); do
		running "$id" && die "$id is running; run 'scripts/cluster.sh down' first"
	done
	clean_state
	rmdir "$run_dir" 2>/dev/null || true
	echo "removed the node state in $run_dir"
}

# nargs MIN MAX "$@": check the argument count of the command.
nargs() {
	local min=$1 max=$2
	shift 2
	(($# >= min && $# <= max)) || usage_error "$subcommand: wrong number of arguments"
}

use_certs
subcommand=${1:-}
(($# == 0)) || shift
case $subcommand in
up) nargs 0 2 "$@" && cmd_up "$@" ;;
status) nargs 0 0 "$@" && cmd_status ;;
kill) nargs 1 1 "$@" && cmd_kill "$1" ;;
stop) nargs 1 1 "$@" && cmd_stop "$1" ;;
start) nargs 1 99 "$@" && cmd_start "$@" ;;
kill-leader) nargs 1 1 "$@" && cmd_kill_leader "$1" ;;
add) nargs 0 1 "$@" && cmd_add "$@" ;;
decommission) nargs 1 1 "$@" && cmd_decommission "$1" ;;
remove) nargs 1 1 "$@" && cmd_remove "$1" ;;
down) nargs 0 0 "$@" && cmd_down ;;
logs) nargs 1 99 "$@" && cmd_logs "$@" ;;
addrs) nargs 0 0 "$@" && cmd_addrs ;;
ports) nargs 0 1 "$@" && cmd_ports "$@" ;;
clean) nargs 0 0 "$@" && cmd_clean ;;
help | -h | --help) usage ;;
"")
	usage >&2
	exit 2
	;;
*) usage_error "unknown command '$subcommand'" ;;
esac
