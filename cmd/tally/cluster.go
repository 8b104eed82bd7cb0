package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

func init() {
	register(&command{
		name:    "cluster",
		args:    "",
		summary: "show the answering node's view: members and shard leaders",
		run:     runCluster,
	})
}

func runCluster(e *env, args []string) error {
	fs := e.flagSet()
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("cluster takes no arguments")
	}
	ctx, cancel := e.context()
	defer cancel()
	info, err := e.client().Cluster(ctx)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(info)
	}
	fmt.Fprintf(e.stdout, "node %s\n\n", info.Node)
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tHTTP\tSTATE\tHEALTH")
	for _, m := range info.Members {
		state := m.State
		if state == "" {
			state = "-" // the node records could not be read
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.HTTP, state, m.Health)
	}
	tw.Flush()
	fmt.Fprintln(e.stdout)
	fmt.Fprintln(tw, "SHARD\tLEADER\tREPLICAS\tLEARNERS\tAPPLIED")
	for _, s := range info.Shards {
		leader := s.Leader
		if leader == "" {
			leader = "-" // electing, or no quorum
		}
		learners := strings.Join(s.Learners, ",")
		if learners == "" {
			learners = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\n", s.ID, leader, strings.Join(s.Replicas, ","), learners, s.AppliedIndex)
	}
	return tw.Flush()
}
