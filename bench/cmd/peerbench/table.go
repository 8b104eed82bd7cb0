package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"tally/loadgen"
)

// table prints the reports side by side: one row per system and workload,
// in the order read, with the baseline's ops/s divided by each row's.
func table(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	baseline := fs.String("baseline", "tally", "the system whose ops/s the ratio column divides by each row's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reps, err := readFiles(fs.Args(), readReports)
	if err != nil {
		return err
	}
	return writeTable(w, reps, *baseline)
}

// readFiles reads every file at paths with read and joins what they hold.
func readFiles[T any](paths []string, read func(io.Reader) ([]T, error)) ([]T, error) {
	var all []T
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		r, err := read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, r...)
	}
	return all, nil
}

// readReports reads one JSON report per line; other lines (a tool's
// progress output) are skipped.
func readReports(r io.Reader) ([]loadgen.Report, error) {
	var out []loadgen.Report
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20) // a long run's timeline makes long lines
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var rep loadgen.Report
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			return nil, err
		}
		out = append(out, rep)
	}
	return out, sc.Err()
}

func writeTable(w io.Writer, reps []loadgen.Report, baseline string) error {
	base := map[string]float64{}
	for _, r := range reps {
		if r.System == baseline {
			base[r.Workload] = r.OpsPerSec
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "system\tworkload\tops/s\tp50 ms\tp99 ms\terrors\tverified\t%s/peer\t\n", baseline)
	for _, r := range reps {
		ratio := "—"
		if b, ok := base[r.Workload]; ok && r.System != baseline && r.OpsPerSec > 0 {
			ratio = fmt.Sprintf("%.2f", b/r.OpsPerSec)
		}
		verified := "—"
		if r.Verified != nil {
			verified = map[bool]string{true: "yes", false: "NO"}[*r.Verified]
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%d\t%s\t%s\t\n", r.System, r.Workload, r.OpsPerSec, r.P50Ms, r.P99Ms, r.Errors, verified, ratio)
	}
	return tw.Flush()
}
