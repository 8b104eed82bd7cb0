#!/usr/bin/env bash
# chaos.sh: a long chaos campaign against a local cluster of real tallyd
# processes (started by `tally chaos` on free loopback ports): leader kills,
# node kills, restarts of every node, SIGSTOP'd leaders, partitioned
# leaders, snapshot installs and power losses (the nodes' data dirs on a
# lazyfs mount, which needs FUSE: without it power losses are skipped,
# with a message), mixed, for CHAOS_DURATION (default 10m)
# and at least CHAOS_MIN_FAULTS faults (default 100). Progress goes to
# stderr; the summary table is printed at the end. Exit status is non-zero
# if any check failed; the evidence (history, porcupine's HTML, node logs)
# is then kept in the directory the summary names.
#
#   scripts/chaos.sh                       # 10 minutes, mixed faults
#   CHAOS_DURATION=3m scripts/chaos.sh     # shorter
#   scripts/chaos.sh --faults kill-leader  # extra flags go to `tally chaos`
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=${CHAOS_DURATION:-10m}
min_faults=${CHAOS_MIN_FAULTS:-100}

cd "$repo"
make -s build
go build -o bin/tally-lazyfs ./cmd/tally-lazyfs # next to tallyd, where the campaign looks
exec bin/tally chaos --tallyd "$repo/bin/tallyd" \
	--duration "$duration" --min-faults "$min_faults" \
	--faults-per-round 25 --rate 300 --clients 8 --shards 4 \
	"$@"
