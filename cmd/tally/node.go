package main

import (
	"fmt"

	"tally/client"
)

func init() {
	register(&command{
		name:    "node",
		args:    "decommission|remove ID",
		summary: "decommission a live node (its replicas move away) or remove a dead one (its replicas are placed anew)",
		run:     runNode,
	})
}

func runNode(e *env, args []string) error {
	fs := e.flagSet()
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("node takes decommission or remove, and a node id")
	}
	ctx, cancel := e.context()
	defer cancel()
	var ch client.NodeChange
	switch pos[0] {
	case "decommission":
		ch, err = e.client().Decommission(ctx, pos[1])
	case "remove":
		ch, err = e.client().RemoveNode(ctx, pos[1])
	default:
		return usagef("node: unknown action %q (decommission or remove)", pos[0])
	}
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(ch)
	}
	_, err = fmt.Fprintf(e.stdout, "node %s: %s\n", ch.ID, ch.State)
	return err
}
