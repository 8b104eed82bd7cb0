package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

func init() {
	register(&command{
		name: "sync",
		args: "postgres --dsn DSN [--table T]",
		summary: "keep a PostgreSQL table of (name, value) exactly in step with the cluster, through the changefeed " +
			"(runs tally-sync-postgres, built by `make sink`: the PostgreSQL driver lives outside tally)",
		run: runSync,
	})
}

// syncPrograms names the program of each sink.
var syncPrograms = map[string]string{"postgres": "tally-sync-postgres"}

// runSync hands over to the sink's own program, beside this one or on
// PATH, with the global flags as its environment.
func runSync(e *env, args []string) error {
	if len(args) == 0 || syncPrograms[args[0]] == "" {
		return usagef("sync takes a sink: postgres")
	}
	prog := syncPrograms[args[0]]
	path := ""
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), prog); isExecutable(p) {
			path = p
		}
	}
	if path == "" {
		p, err := exec.LookPath(prog)
		if err != nil {
			return errors.New("tally sync " + args[0] + " runs " + prog + ", found neither beside tally nor on PATH: build it with `make sink` (bin/" + prog + ")")
		}
		path = p
	}
	env := syncEnv(os.Environ(), e.addr, e.token, e.cacert)
	// exec, not a child: signals and the exit status are the sink's own.
	return syscall.Exec(path, append([]string{prog}, args[1:]...), env)
}

// syncEnv is environ with the global flags' values as TALLY_ADDR,
// TALLY_TOKEN and TALLY_CACERT. The flags win over the environment they
// may have come from: its own values are dropped (with two, a program
// reads the first).
func syncEnv(environ []string, addr, token, cacert string) []string {
	var env []string
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "TALLY_ADDR=") && !strings.HasPrefix(kv, "TALLY_TOKEN=") && !strings.HasPrefix(kv, "TALLY_CACERT=") {
			env = append(env, kv)
		}
	}
	return append(env, "TALLY_ADDR="+addr, "TALLY_TOKEN="+token, "TALLY_CACERT="+cacert)
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
