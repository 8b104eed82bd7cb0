package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"tally/client"
)

func init() {
	register(&command{
		name: "changes",
		args: "[--cursor C] [--count N]",
		summary: "print every committed counter change from --cursor (default: from now), and with --count the cursor to resume from; " +
			"a dropped connection is resumed on the next --addr node",
		run: runChanges,
	})
}

// errEnough stops the feed once --count events were printed.
var errEnough = errors.New("enough")

func runChanges(e *env, args []string) error {
	fs := e.flagSet()
	cursor := fs.String("cursor", client.CursorNow, "where to start: a cursor printed before, now for changes still to come, \"\" for index 0 (only a young cluster still holds it)")
	count := fs.Int("count", 0, "stop once this many changes were printed, at the end of a step, and print the cursor that resumes after them (0: run until interrupted)")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("changes takes no arguments")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	seen := 0
	err = e.client().Changes(ctx, *cursor, func(evs []client.ChangeEvent, cur string) error {
		for _, ev := range evs {
			for _, c := range ev.Changes {
				seen++
				if e.json {
					e.printJSON(struct {
						Shard int    `json:"shard"`
						Index uint64 `json:"index"`
						client.Change
					}{ev.Shard, ev.Index, c})
				} else {
					name := c.Name
					if c.Part > 0 {
						name = fmt.Sprintf("%s (part %d)", c.Name, c.Part)
					}
					fmt.Fprintf(e.stdout, "%s = %d (%+d, shard %d index %d)\n", name, c.Value, c.Delta, ev.Shard, ev.Index)
				}
			}
		}
		// A step is printed whole, so the cursor after it misses nothing.
		if *count > 0 && seen >= *count {
			fmt.Fprintf(e.stderr, "cursor %s\n", cur)
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}
