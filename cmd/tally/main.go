// Command tally is the command-line client of a tally counter cluster.
//
//	tally [global flags] <command> [args]
//
// Each command lives in its own file and registers itself in init, so a
// new command is a new file and nothing else changes.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"tally/auth"
	"tally/client"
	"tally/tlsconf"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

// command is one subcommand.
type command struct {
	name    string
	args    string // shown after the name in usage, e.g. "NAME [--stale]"
	summary string
	run     func(e *env, args []string) error
}

func (c *command) synopsis() string { return strings.TrimSpace(c.name + " " + c.args) }

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// env is what a command runs with: the global flags and the output streams.
type env struct {
	stdout, stderr io.Writer
	addr           string
	json           bool
	timeout        time.Duration
	token          string      // --token: sent as a bearer token
	cacert         string      // --cacert: the CA that https addresses are verified against
	tlsCfg         *tls.Config // from cacert, set by parse
	cmd            *command
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// errHelpShown says --help was asked for and answered: exit 0.
var errHelpShown = errors.New("help shown")

// usageError is a malformed command line: exit 2 with a usage hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// run is main without the process: tests call it in-process.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("tally", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run reports errors itself, in one format
	defAddr := client.DefaultAddr
	if v := getenv("TALLY_ADDR"); v != "" {
		defAddr = v
	}
	e.addr = defAddr
	e.token, e.cacert = getenv("TALLY_TOKEN"), getenv("TALLY_CACERT")
	e.timeout = 10 * time.Second
	e.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			mainUsage(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "tally: %v\n", err)
		mainUsage(stderr, fs)
		return exitUsage
	}
	if fs.NArg() == 0 {
		mainUsage(stderr, fs)
		return exitUsage
	}
	if fs.Arg(0) == "help" {
		mainUsage(stdout, fs)
		return exitOK
	}
	cmd := commands[fs.Arg(0)]
	if cmd == nil {
		fmt.Fprintf(stderr, "tally: unknown command %q (run 'tally --help' for the list)\n", fs.Arg(0))
		return exitUsage
	}
	e.cmd = cmd
	return e.report(cmd.run(e, fs.Args()[1:]))
}

// globalFlags defines the global flags on fs. They are defined on every
// command's flag set too, so `tally get x --json` works as well.
func (e *env) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.addr, "addr", e.addr, "nodes to ask, a comma-separated `host:port` list (env TALLY_ADDR)")
	fs.BoolVar(&e.json, "json", e.json, "print the server's JSON answer on one line")
	fs.DurationVar(&e.timeout, "timeout", e.timeout, "give up retrying after this long")
	fs.StringVar(&e.token, "token", e.token, "access token, for a cluster run with --auth-token-file (env TALLY_TOKEN)")
	fs.StringVar(&e.cacert, "cacert", e.cacert, "PEM CA `file` to verify https nodes with; addresses without a scheme then mean https (env TALLY_CACERT)")
}

var globalNames = map[string]bool{"addr": true, "json": true, "timeout": true, "token": true, "cacert": true}

func mainUsage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprint(w, "Usage: tally [global flags] <command> [args]\n\nCommands:\n")
	names := slices.Sorted(maps.Keys(commands))
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(tw, "  %s\t%s\n", c.synopsis(), c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, global, func(string) bool { return true })
	fmt.Fprint(w, "\nRun 'tally <command> --help' for a command's flags.\n")
}

func printFlags(w io.Writer, fs *flag.FlagSet, show func(name string) bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		if !show(f.Name) {
			return
		}
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(tw, "  --%s%s\t%s\n", f.Name, arg, usage)
	})
	tw.Flush()
}

// flagSet returns a flag set for the running command, with the global
// flags already defined.
func (e *env) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(e.cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.globalFlags(fs)
	return fs
}

// parse parses a command's arguments, which may mix flags and positional
// arguments in any order ("incr x 5 --key k"). A negative number is an
// argument, not a flag, and "--" ends the flags.
func (e *env) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) < 2 || a[0] != '-' || isNumber(a):
			pos = append(pos, a)
		default:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			// A non-boolean flag takes the next argument as its value.
			if f := fs.Lookup(name); f != nil && !isBool(f) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			e.commandUsage(e.stdout, fs)
			return nil, errHelpShown
		}
		return nil, usagef("%v", err)
	}
	cfg, err := tlsconf.ClientConfig(e.cacert)
	if err != nil {
		return nil, fmt.Errorf("--cacert: %w", err)
	}
	e.tlsCfg = cfg
	return pos, nil
}

// isNumber reports whether s is an integer such as "-5".
func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func (e *env) commandUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: tally %s\n\n%s\n", e.cmd.synopsis(), e.cmd.summary)
	own := false
	fs.VisitAll(func(f *flag.Flag) { own = own || !globalNames[f.Name] })
	if own {
		fmt.Fprint(w, "\nFlags:\n")
		printFlags(w, fs, func(n string) bool { return !globalNames[n] })
	}
	fmt.Fprint(w, "\nGlobal flags (--addr, --json, --timeout, --token, --cacert) may come before or after the command.\n")
}

// client returns a client for the --addr nodes; call it after parse, since
// global flags may follow the command. It does not route: a command makes
// one request or a few, and learning the shard map would cost a request
// of its own, as much as the forwarding hop it saves.
func (e *env) client() *client.Client {
	return client.New(e.addrs(), client.WithRetryDeadline(e.timeout), client.WithoutRouting(), client.WithToken(e.token), client.WithTLS(e.tls()))
}

// addrs are the --addr nodes as base URLs: https when --cacert is given
// and an address names no scheme.
func (e *env) addrs() []string {
	var out []string
	for _, a := range strings.Split(e.addr, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			if e.cacert != "" {
				a = "https://" + a
			} else {
				a = "http://" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// tls verifies https nodes against --cacert (the system's roots without
// it); parse loads it.
func (e *env) tls() *tls.Config { return e.tlsCfg }

// httpClient is a plain HTTP client with the global TLS and token settings.
func (e *env) httpClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg := e.tls(); cfg != nil {
		tr.TLSClientConfig = cfg.Clone() // a transport changes its config: never share one
	}
	var rt http.RoundTripper = tr
	hc := &http.Client{Transport: rt, Timeout: timeout}
	if e.token != "" {
		hc.Transport = auth.Bearer(tr, e.token)
		// tally never redirects; a redirect must not carry the token elsewhere.
		hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return hc
}

// context bounds a command by --timeout.
func (e *env) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e.timeout)
}

// report prints err, if any, and returns the exit code.
func (e *env) report(err error) int {
	var ue *usageError
	switch {
	case err == nil || errors.Is(err, errHelpShown):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "tally: %s\nUsage: tally %s\n", ue.msg, e.cmd.synopsis())
		return exitUsage
	}
	code, msg := describe(err)
	fmt.Fprintf(e.stderr, "tally: %s: %s\n", code, msg)
	return exitError
}

// describe gives an error the code and message the CLI prints.
func describe(err error) (code, msg string) {
	var ae *client.APIError
	var ne net.Error
	switch {
	case client.IsOutcomeUnknown(err):
		// Checked first: an ambiguous write that later met a no_leader is
		// still ambiguous, whatever the last answer was.
		return "outcome_unknown", err.Error()
	case errors.As(err, &ae):
		msg = ae.Message
		if ae.Value != nil {
			msg += fmt.Sprintf(" (current value %d)", *ae.Value)
		}
		return ae.Code, msg
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", err.Error()
	case errors.As(err, &ne):
		return "unavailable", err.Error()
	}
	return "error", err.Error()
}

// printJSON prints v as one line of JSON (for --json).
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetEscapeHTML(false) // names such as "a&b" stay readable
	return enc.Encode(v)
}
