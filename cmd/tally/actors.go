package main

import (
	"fmt"

	"tally/client"
)

func init() {
	register(&command{
		name:    "like",
		args:    "NAME ACTOR",
		summary: "add ACTOR to a counter's actors; counts once however often it is repeated",
		run:     func(e *env, args []string) error { return runActor(e, args, "like") },
	})
	register(&command{
		name:    "unlike",
		args:    "NAME ACTOR",
		summary: "remove ACTOR from a counter's actors; uncounts only if it was there",
		run:     func(e *env, args []string) error { return runActor(e, args, "unlike") },
	})
	register(&command{
		name:    "member",
		args:    "NAME ACTOR [--stale]",
		summary: "tell whether ACTOR is among a counter's actors",
		run:     runMember,
	})
}

func runActor(e *env, args []string, op string) error {
	fs := e.flagSet()
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("%s takes NAME and ACTOR, got %d arguments", op, len(pos))
	}
	ctx, cancel := e.context()
	defer cancel()
	c := e.client()
	do := c.Like
	if op == "unlike" {
		do = c.Unlike
	}
	r, err := do(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(r)
	}
	note := ""
	if !r.Changed {
		note = " (unchanged)"
	}
	_, err = fmt.Fprintf(e.stdout, "%s = %d%s\n", r.Name, r.Value, note)
	return err
}

func runMember(e *env, args []string) error {
	fs := e.flagSet()
	stale := fs.Bool("stale", false, "read the answering node's replica: no leader round trip, may lag")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("member takes NAME and ACTOR, got %d arguments", len(pos))
	}
	cons := client.Linearizable
	if *stale {
		cons = client.Stale
	}
	ctx, cancel := e.context()
	defer cancel()
	ok, err := e.client().IsMember(ctx, pos[0], pos[1], cons)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(map[string]bool{"member": ok})
	}
	_, err = fmt.Fprintf(e.stdout, "%v\n", ok)
	return err
}
