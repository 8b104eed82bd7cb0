// Command tallyd runs one tally cluster node.
//
// With no flags it is a working single-node cluster storing its data in
// ./tally-data and serving HTTP on 127.0.0.1:7070. Every flag can also be
// given as an environment variable TALLY_<FLAG> (e.g. TALLY_DATA_DIR); a
// flag on the command line wins.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tally/httpapi"
	"tally/node"
	"tally/raftstore"
	"tally/resp"
	"tally/tlsconf"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("tallyd", flag.ContinueOnError)
	var (
		id        = fs.String("id", "", "unique node id (default: the host name)")
		dataDir   = fs.String("data-dir", "tally-data", "directory for raft logs, snapshots and cluster state")
		httpAddr  = fs.String("http", "127.0.0.1:7070", "HTTP API listen address")
		raftAddr  = fs.String("raft", "127.0.0.1:7071", "cluster transport address (raft and forwarding); other nodes dial it")
		gossip    = fs.String("gossip", "127.0.0.1:7072", "memberlist gossip address (TCP and UDP)")
		respAddr  = fs.String("resp", "127.0.0.1:7073", "Redis-protocol (RESP) listen address; empty turns it off")
		redirect  = fs.String("resp-redirect", "forward", "RESP commands on keys another node leads: forward (serve them; any client works) or moved (answer -MOVED, as Redis Cluster does)")
		join      = fs.String("join", "", "comma-separated gossip addresses of existing members")
		advHTTP   = fs.String("advertise-http", "", "HTTP address clients and other nodes reach this node at, when not --http (containers, NAT)")
		advRaft   = fs.String("advertise-raft", "", "cluster transport address other nodes dial, when not --raft")
		advGossip = fs.String("advertise-gossip", "", "gossip address other nodes reach, when not --gossip")
		advRESP   = fs.String("advertise-resp", "", "RESP address MOVED redirects and CLUSTER answers name, when not --resp")
		expect    = fs.Int("bootstrap-expect", 1, "number of nodes that form a new cluster")
		shards    = fs.Int("shards", 8, "number of shards (fixed when the cluster forms; at most 64)")
		replicas  = fs.Int("replicas", 3, "replicas per shard (every node while fewer)")
		faults    = fs.Bool("enable-faults", false, "enable the transport fault-injection switch (tests only)")
		pprof     = fs.Bool("pprof", false, "serve Go profiles at /debug/pprof on the HTTP address")
		dedupTTL  = fs.Duration("dedup-ttl", 10*time.Minute, "how long an Idempotency-Key is remembered")
		dedupMax  = fs.Int64("dedup-max-keys", 0, "idempotency keys this node may remember in all before it refuses new ones (503 keys_full); 0: a quarter of its memory at 100 bytes a key")
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		snapEvery = fs.Uint64("snapshot-threshold", 8192, "raft log entries between snapshots")
		snapBytes = fs.Int64("snapshot-bytes", 32<<20, "raft log bytes between snapshots, whichever of the two comes first (negative: entries only)")
		autoSplit = fs.Bool("auto-split", true, "split hot counters into sub-counters on several shards automatically")
		splitRate = fs.Float64("split-threshold", 2000, "writes per second on one counter that make it hot")
		splitFor  = fs.Duration("split-sustain", 5*time.Second, "how long a counter must stay hot before it is split")
		splitTo   = fs.Int("split-to", 0, "split factor for hot counters (0: min(shards, 2 x nodes))")
		logStore  = fs.String("log-store", raftstore.KindDefault, "raft log storage: pebble (one store for every shard, one fsync per round) or bolt (raft-boltdb, raft.db)")
		tlsCert   = fs.String("tls-cert", "", "PEM certificate of this node: HTTP and RESP serve TLS with it, and it proves the node to other nodes (with --tls-key, --tls-ca; reloaded on SIGHUP)")
		tlsKey    = fs.String("tls-key", "", "PEM private key of --tls-cert")
		tlsCA     = fs.String("tls-ca", "", "PEM CA certificate every node's certificate is signed by; node-to-node traffic is mutual TLS verified against it")
		gossipKey = fs.String("gossip-key-file", "", "file of base64 gossip encryption keys (16, 24 or 32 bytes), one a line, the first primary; reloaded on SIGHUP")
		tokenFile = fs.String("auth-token-file", "", "file of access tokens, lines \"TOKEN ROLE\" (read, write, admin); every request but /healthz, /readyz and the dashboard page's own files then needs one; reloaded on SIGHUP")
		retention = fs.Int("changes-retention", node.DefaultChangeRetention, "recent counter changes each shard replica keeps for the changefeed (GET /v1/changes); a consumer further behind resyncs from a dump; 0: no changefeed")
		maxConns  = fs.Int("max-conns", 10000, "open client connections at most on each of HTTP and RESP; more are closed at once")
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tallyd [flags]   (each flag also as env TALLY_<FLAG>, e.g. TALLY_DATA_DIR)")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(os.Stderr, "tallyd:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tallyd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var redirectMode resp.Redirect
	switch *redirect {
	case "forward":
		redirectMode = resp.Forward
	case "moved":
		redirectMode = resp.Moved
	default:
		fmt.Fprintf(os.Stderr, "tallyd: --resp-redirect %q: want forward or moved\n", *redirect)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "tallyd: --log-level:", err)
		return 2
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	sec, err := loadSecurity(tlsconf.Files{Cert: *tlsCert, Key: *tlsKey, CA: *tlsCA}, *gossipKey, *tokenFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tallyd:", err)
		return 2
	}

	cfg := node.Config{
		ID:                *id,
		DataDir:           *dataDir,
		HTTPAddr:          *httpAddr,
		RaftAddr:          *raftAddr,
		GossipAddr:        *gossip,
		RESPAddr:          *respAddr,
		AdvertiseHTTP:     *advHTTP,
		AdvertiseRaft:     *advRaft,
		AdvertiseGossip:   *advGossip,
		AdvertiseRESP:     *advRESP,
		BootstrapExpect:   *expect,
		Shards:            *shards,
		Replicas:          *replicas,
		EnableFaults:      *faults,
		Pprof:             *pprof,
		DedupTTL:          *dedupTTL,
		DedupMaxKeys:      *dedupMax,
		SnapshotThreshold: *snapEvery,
		SnapshotBytes:     *snapBytes,
		NoAutoSplit:       !*autoSplit,
		SplitThreshold:    *splitRate,
		SplitSustain:      *splitFor,
		SplitTo:           *splitTo,
		LogStore:          *logStore,
		Logger:            logger,
		TLS:               sec.tls,
		Tokens:            sec.tokens,
		GossipKeys:        sec.gossipKeys,
		MaxHTTPConns:      *maxConns,
		ChangeRetention:   *retention,
	}
	if *retention <= 0 {
		cfg.ChangeRetention = -1 // none (0 in Config means the default)
	}
	for _, a := range strings.Split(*join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Join = append(cfg.Join, a)
		}
	}
	// Signals are caught before the node starts: a SIGHUP during startup
	// must reload (once it has started), not kill the process.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	n, err := node.Start(cfg)
	if err != nil {
		logger.Error("start failed", "err", err)
		return 1
	}
	n.Serve(httpapi.NewServer(n))
	if cfg.RESPAddr != "" {
		rs := resp.New(resp.Config{Core: n, Router: resp.NodeRouter(n), Redirect: redirectMode, NodeID: n.ID(), Tokens: sec.tokens, MaxConns: *maxConns, Logger: logger})
		if err := n.ServeRESP(rs); err != nil {
			logger.Error("start failed", "err", err)
			return 1
		}
	}
	code := 0
	for running := true; running; {
		select {
		case <-hup:
			sec.reload(n, logger)
		case s := <-sig:
			logger.Info("signal received; shutting down", "signal", s.String())
			running = false
		case <-n.Failed():
			logger.Error("this node cannot take part in the cluster; exiting", "err", n.FormationError())
			fmt.Fprintln(os.Stderr, "tallyd:", n.FormationError())
			code, running = 1, false
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return code
}

// applyEnv sets each flag from TALLY_<FLAG> when that variable is set, so
// the command line, parsed afterwards, overrides it.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "TALLY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
		}
	})
	return err
}
