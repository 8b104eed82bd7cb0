package main

import (
	"fmt"
	"net/http"
	"strings"
)

func init() {
	register(&command{
		name:    "probe",
		args:    "PATH",
		summary: "print the HTTP status of GET PATH (e.g. /readyz) on the first --addr node, 000 when it does not answer; for scripts, over https and with tokens as any command",
		run:     runProbe,
	})
}

func runProbe(e *env, args []string) error {
	fs := e.flagSet()
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || !strings.HasPrefix(pos[0], "/") {
		return usagef("probe takes one PATH starting with /")
	}
	code := "000"
	req, err := http.NewRequest(http.MethodGet, e.addrs()[0]+pos[0], nil)
	if err != nil {
		return usagef("%v", err)
	}
	if resp, err := e.httpClient(e.timeout).Do(req); err == nil {
		resp.Body.Close()
		code = fmt.Sprintf("%03d", resp.StatusCode)
	}
	_, err = fmt.Fprintln(e.stdout, code)
	return err
}
