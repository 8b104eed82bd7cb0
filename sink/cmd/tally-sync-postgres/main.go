// Command tally-sync-postgres keeps a PostgreSQL table of (name, value)
// exactly in step with a tally cluster (see package pgsync). `tally sync
// postgres` runs it; it lives in its own module so that tally itself does
// not carry a PostgreSQL driver.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"tally/client"
	"tally/tlsconf"
	"tallysink/pgsync"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(args []string) int {
	fs := flag.NewFlagSet("tally sync postgres", flag.ContinueOnError)
	dsn := fs.String("dsn", env("TALLY_SYNC_DSN", ""), "PostgreSQL connection string, e.g. postgres://user@host:5432/db (env TALLY_SYNC_DSN)")
	table := fs.String("table", "tally_counters", "table of (name, value) to keep in step; TABLE_parts and TABLE_cursor are kept beside it")
	addr := fs.String("addr", env("TALLY_ADDR", "127.0.0.1:7070"), "tally nodes, a comma-separated host:port list (env TALLY_ADDR)")
	token := fs.String("token", env("TALLY_TOKEN", ""), "access token with the read role, for a cluster run with --auth-token-file (env TALLY_TOKEN)")
	cacert := fs.String("cacert", env("TALLY_CACERT", ""), "PEM CA file to verify https nodes with; addresses without a scheme then mean https (env TALLY_CACERT)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "--log-level %q: want debug, info, warn or error\n", *logLevel)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *dsn == "" {
		fmt.Fprintln(os.Stderr, "--dsn is required (or TALLY_SYNC_DSN)")
		return 2
	}
	var tlsCfg *tls.Config
	if *cacert != "" {
		var err error
		if tlsCfg, err = tlsconf.ClientConfig(*cacert); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	var bases []string
	for _, a := range strings.Split(*addr, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			if *cacert != "" {
				a = "https://" + a
			} else {
				a = "http://" + a
			}
		}
		bases = append(bases, a)
	}
	if len(bases) == 0 {
		fmt.Fprintln(os.Stderr, "--addr names no node")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--dsn: %v\n", err)
		return 2
	}
	defer db.Close()
	feed := client.New(bases, client.WithToken(*token), client.WithTLS(tlsCfg), client.WithRetryDeadline(time.Minute))
	s, err := pgsync.New(db, feed, pgsync.Config{Table: *table, Logger: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log.Info("sync starting", "table", *table, "nodes", bases)
	s.Run(ctx) // until interrupted: it retries every failure
	log.Info("sync stopped")
	return 0
}
