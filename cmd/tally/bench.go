package main

import (
	"context"
	"fmt"
	"time"

	"tally/client"
	"tally/loadgen"
)

func init() {
	register(&command{
		name: "bench",
		// The full list is in `tally bench --help`; this line stays short
		// enough for the command table.
		args:    "[--clients N] [--duration D] [--counters N] [--batch K] [--route leader|any] [...]",
		summary: "load test over every --addr: ops/s and latency percentiles, then a check of the counts",
		run:     runBench,
	})
}

func runBench(e *env, args []string) error {
	fs := e.flagSet()
	b := loadgen.Bench{System: "tally"}
	b.Flags(fs)
	consistency := fs.String("consistency", "linearizable", "consistency of the reads under load (--reads): linearizable or stale")
	routeMode := fs.String("route", "leader", "where requests go (`leader|any`): leader sends each one straight to the leader of its counter's shard (learnt from /v1/cluster; batches still go to the client's --addr node), any to the client's --addr node, which forwards it")
	keys := fs.Bool("keys", false, "give every single increment an Idempotency-Key of its own, as retrying clients do")
	watchers := fs.Int("watchers", 0, "hold this many watch streams of the (first) counter open on the first --addr node during the load, then report how soon after the last acknowledged write each showed the final value")
	watchEvery := fs.Duration("watch-interval", 0, "the --watchers streams' ?interval= (0: the server's default, 100ms)")
	nodeMetrics := fs.Bool("node-metrics", true, "scrape every --addr node's /metrics right before and after the load and report node CPU per op, ops per raft entry and fsyncs per increment")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("bench takes flags only")
	}
	if b.Counters < 1 || b.Clients < 1 || b.Batch < 1 {
		return usagef("--clients, --counters and --batch must be at least 1")
	}
	if b.Batch > 1000 {
		return usagef("--batch: a batch holds at most 1000 increments")
	}
	if b.Reads < 0 || b.Reads > 1 {
		return usagef("--reads is a share between 0 and 1")
	}
	if *consistency != "linearizable" && *consistency != "stale" {
		return usagef("--consistency must be linearizable or stale")
	}
	opts := []loadgen.HTTPOption{loadgen.Secure(e.tls(), e.token)}
	switch *routeMode {
	case "leader":
		opts = append(opts, loadgen.RouteToLeaders())
	case "any":
	default:
		return usagef("--route must be leader or any")
	}
	if *keys {
		opts = append(opts, loadgen.WithKeys())
	}
	b.JSON = e.json
	b.Route = *routeMode
	addrs := e.addrs()
	h := loadgen.NewHTTP(addrs, b.Clients, *consistency, opts...)
	if rt := h.Routes(); rt != nil {
		// Load the map before the clock starts, so the first requests
		// are routed too; without one (not a tally node, or one too old)
		// every request goes to its client's address.
		ctx, cancel := e.context()
		if err := rt.Refresh(ctx); err != nil {
			fmt.Fprintf(e.stderr, "tally: bench: no shard map, requests go to the --addr nodes: %v\n", err)
		}
		cancel()
	}
	if *nodeMetrics {
		b.Nodes = newNodeScraper(addrs, e.httpClient(e.timeout))
	}
	defer h.Close()
	c := e.client()
	// The verification reads through the retrying client, linearizably,
	// whatever --consistency the load used.
	read := func(_ context.Context, names []string) (map[string]int64, error) {
		return readAll(c, names, e.timeout)
	}
	if *watchers <= 0 {
		return b.Execute(context.Background(), e.stdout, h.Client, read)
	}
	name := b.Counter
	if b.Counters > 1 {
		name = b.Config.Names()[0]
	}
	w, err := e.startWatchers(addrs[0], name, *watchers, *watchEvery)
	if err != nil {
		return err
	}
	defer w.stop()
	if err := b.Execute(context.Background(), e.stdout, w.observe(h.Client), read); err != nil {
		return err
	}
	final, err := readAll(c, []string{name}, e.timeout)
	if err != nil {
		return err
	}
	w.report(e.stdout, final[name], e.timeout, e.json)
	return nil
}

func readAll(c *client.Client, names []string, timeout time.Duration) (map[string]int64, error) {
	out := map[string]int64{}
	for i := 0; i < len(names); i += 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		vals, err := c.MultiGet(ctx, names[i:min(i+1000, len(names))], client.Linearizable)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			out[v.Name] = v.Value
		}
	}
	return out, nil
}
