// Command peerbench drives other stores with the workload of `tally bench`
// (same flags, same client loop, same report), serves the in-memory
// HTTP ceiling, and prints the side-by-side table from the JSON reports,
// and the table of redis-benchmark runs scripts/bench.sh records.
//
//	peerbench redis    --addr 127.0.0.1:6379[,...]    [workload flags]
//	peerbench postgres --addr postgres://...          [workload flags]
//	peerbench etcd     --addr 127.0.0.1:2379[,...]    [workload flags]
//	peerbench serve    --listen 127.0.0.1:0 [--addr-file FILE]
//	peerbench table    [--baseline tally] REPORTS.jsonl...
//	peerbench resptable [--baseline redis-always] [--ratios FILE] ROWS.jsonl...
//	peerbench slotkeys [--pattern KEY] SLOT...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tallybench/memserver"
	"tallybench/peers"

	"tally/loadgen"
)

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "redis", "postgres", "etcd":
		err = drive(cmd, args, os.Stdout)
	case "serve":
		err = serve(args)
	case "table":
		err = table(args, os.Stdout)
	case "resptable":
		err = respTable(args, os.Stdout)
	case "slotkeys":
		err = slotKeysCmd(args, os.Stdout)
	case "help", "-h", "--help":
		usage(os.Stdout)
		return
	default:
		usage(os.Stderr)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerbench %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  peerbench redis|postgres|etcd --addr ADDRS [workload flags of tally bench] [--json]
  peerbench serve [--listen 127.0.0.1:0] [--addr-file FILE]   in-memory HTTP ceiling
  peerbench table [--baseline tally] REPORTS.jsonl...          side-by-side table
  peerbench resptable [--baseline redis-always] [--ratios FILE] ROWS.jsonl...
                                                  the redis-benchmark table and its ratios
  peerbench slotkeys [--pattern KEY] SLOT...      the keys redis-benchmark --cluster may
                                                  use for these slots (KEY holds {tag})
`)
}

// closer is a store's client set.
type closer interface {
	Client(i int) loadgen.Target
	Close() error
}

func drive(system string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(system, flag.ContinueOnError)
	b := loadgen.Bench{System: system}
	b.Flags(fs)
	addr := fs.String("addr", "", "comma-separated addresses (postgres: one connection string)")
	fs.BoolVar(&b.JSON, "json", false, "print the report as one JSON line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || fs.NArg() != 0 {
		return errors.New("need --addr and flags only")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	setup, cancelSetup := context.WithTimeout(ctx, time.Minute)
	defer cancelSetup()
	var store closer
	switch system {
	case "redis":
		r := peers.NewRedis(strings.Split(*addr, ","), b.Clients)
		if err := r.Ping(setup); err != nil {
			r.Close()
			return err
		}
		store = r
	case "postgres":
		p, err := peers.NewPostgres(setup, *addr, b.Clients)
		if err != nil {
			return err
		}
		cfg := b.Config
		cfg.Counters = max(cfg.Counters, 1)
		if err := p.Setup(setup, cfg.Names()); err != nil {
			p.Close()
			return err
		}
		store = p
	case "etcd":
		e, err := peers.NewEtcd(strings.Split(*addr, ","))
		if err != nil {
			return err
		}
		store = e
	}
	defer store.Close()
	read := func(ctx context.Context, names []string) (map[string]int64, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return loadgen.ReadAll(ctx, store.Client(0), names)
	}
	return b.Execute(ctx, stdout, store.Client, read)
}

// serve runs the in-memory ceiling until SIGTERM or SIGINT. It writes its
// address to --addr-file once it listens, so a script can wait for it.
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	addrFile := fs.String("addr-file", "", "write the bound address to this file once listening")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if *addrFile != "" {
		// Write then rename, so a reader never sees a partial address.
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "peerbench: in-memory counter API on %s\n", ln.Addr())
	srv := &http.Server{Handler: memserver.New().Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		<-ctx.Done()
		shut, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
