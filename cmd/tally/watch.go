package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"time"

	"tally/client"
)

func init() {
	register(&command{
		name: "watch",
		args: "NAME [--stale] [--interval D] [--count N]",
		summary: "print a counter's value, then each change (at most one per --interval), until interrupted; " +
			"a dropped connection is resumed on the next --addr node from the last event seen",
		run: runWatch,
	})
}

func runWatch(e *env, args []string) error {
	fs := e.flagSet()
	stale := fs.Bool("stale", false, "read the nodes' own replicas (faster; may lag)")
	interval := fs.Duration("interval", 100*time.Millisecond, "at most one event per this long (changes in between are coalesced)")
	count := fs.Int("count", 0, "stop after this many events (0: run until interrupted)")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("watch takes one NAME")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	seen := 0
	return e.client().Watch(ctx, pos[0], client.WatchOptions{Stale: *stale, Interval: *interval}, func(ev client.WatchEvent) bool {
		seen++
		if e.json {
			e.printJSON(ev)
		} else {
			fmt.Fprintf(e.stdout, "%s = %d (index %d)\n", ev.Name, ev.Value, ev.Index)
		}
		return *count == 0 || seen < *count
	})
}
