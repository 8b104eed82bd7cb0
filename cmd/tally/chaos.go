package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"tally/chaos"
)

func init() {
	register(&command{
		name:    "chaos",
		args:    "[--duration D] [--faults K,...] [--attach] ...",
		summary: "start a local cluster (or attach to --addr), run a workload while killing, pausing and partitioning leaders; check linearizability, counts and replicas",
		run:     runChaos,
	})
}

// errChaosFailed: the campaign ran and a check failed (the summary says
// which); exit non-zero without repeating it.
var errChaosFailed = errors.New("chaos: checks failed")

func runChaos(e *env, args []string) error {
	fs := e.flagSet()
	var cfg chaos.Config
	fs.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "campaign length: rounds keep starting until it has passed")
	fs.IntVar(&cfg.MinFaults, "min-faults", 0, "keep going past --duration until this many faults were injected")
	faults := fs.String("faults", "mixed", "fault kinds, comma-separated and cycled: "+strings.Join(faultKinds(), ", ")+"; or mixed")
	fs.IntVar(&cfg.FaultsPerRound, "faults-per-round", 10, "faults per round; each round is healed, settled and checked on its own counters")
	fs.IntVar(&cfg.Nodes, "nodes", 3, "nodes to start")
	fs.IntVar(&cfg.Shards, "shards", 4, "shards of the started cluster")
	fs.IntVar(&cfg.RESPClients, "resp-clients", 0, "of the clients, how many speak RESP (TALLY.INCRBY, GET) to a random node's RESP port (0: a quarter, at least one; negative: none)")
	threshold := fs.Uint64("snapshot-threshold", 64, "the started nodes' --snapshot-threshold (under 1024 makes snapshot-install possible)")
	fs.StringVar(&cfg.Bin, "tallyd", "", "tallyd binary (default: next to this tally binary, else tallyd on PATH)")
	tallydArgs := fs.String("tallyd-args", "", "extra flags for every started tallyd, space-separated (e.g. \"--log-level debug\")")
	fs.StringVar(&cfg.Dir, "dir", "", "run directory for node data, logs and a failing round's evidence (default: a new temp dir)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the run directory even when every check passed")
	attach := fs.Bool("attach", false, "attach to the running cluster at --addr (nodes started with --enable-faults) instead of starting one; only partition faults then")
	fs.IntVar(&cfg.Clients, "clients", 8, "concurrent clients")
	fs.IntVar(&cfg.Rate, "rate", 200, "operations per second over all clients")
	fs.IntVar(&cfg.Hot, "hot", 2, "hot counters per round (all on one busy shard, the target of leader faults)")
	fs.IntVar(&cfg.Cold, "cold", 40, "cold counters per round")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", time.Minute, "linearizability check time limit per round (a timeout fails the run)")
	quiet := fs.Bool("quiet", false, "print only the summary")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("chaos takes flags only")
	}
	if *faults == "mixed" {
		cfg.Faults = chaos.AllFaults
	} else {
		cfg.Faults = strings.Split(*faults, ",")
	}
	cfg.SnapshotThreshold = *threshold
	cfg.TallydArgs = strings.Fields(*tallydArgs)
	if *attach {
		cfg.Addrs = strings.Split(e.addr, ",")
		cfg.Shards = 0 // learned from the cluster
		if *faults == "mixed" {
			cfg.Faults = []string{chaos.PartitionLeader}
		}
	} else if cfg.Bin == "" {
		cfg.Bin = findTallyd()
	}
	if !*quiet {
		cfg.Log = e.stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sum, err := chaos.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if e.json {
		if err := e.printJSON(sum); err != nil {
			return err
		}
	} else {
		sum.Table(e.stdout)
	}
	if !sum.OK() {
		return errChaosFailed
	}
	return nil
}

func faultKinds() []string {
	var out []string
	for _, k := range chaos.AllFaults {
		if !strings.Contains(strings.Join(out, ","), k) {
			out = append(out, k)
		}
	}
	return out
}

// findTallyd prefers the tallyd built next to this binary (bin/), so a
// campaign tests the matching build.
func findTallyd() string {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "tallyd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return "tallyd"
}
