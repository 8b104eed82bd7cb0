package main

import (
	"fmt"
	"strconv"
)

func init() {
	register(&command{
		name:    "split",
		args:    "NAME N",
		summary: "split a hot counter into N sub-counters on N shards (a factor only grows)",
		run:     runSplit,
	})
}

func runSplit(e *env, args []string) error {
	fs := e.flagSet()
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("split takes NAME and N, got %d arguments", len(pos))
	}
	k, err := strconv.Atoi(pos[1])
	if err != nil || k < 1 {
		return usagef("N must be a positive integer, not %q", pos[1])
	}
	ctx, cancel := e.context()
	defer cancel()
	got, err := e.client().Split(ctx, pos[0], k)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(map[string]any{"name": pos[0], "split": got})
	}
	_, err = fmt.Fprintf(e.stdout, "%s: split %d ways\n", pos[0], got)
	return err
}
