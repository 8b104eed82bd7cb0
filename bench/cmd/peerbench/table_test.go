package main

import (
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	in := `starting...
{"system":"tally","workload":"hot","ops_per_sec":3000,"p50_ms":8,"p99_ms":20,"verified":true}
{"system":"redis-always","workload":"hot","ops_per_sec":1500,"p50_ms":1,"p99_ms":3,"errors":2,"verified":false}
{"system":"etcd","workload":"uniform","ops_per_sec":100,"p50_ms":1,"p99_ms":3}
`
	reps, err := readReports(strings.NewReader(in))
	if err != nil || len(reps) != 3 {
		t.Fatalf("reports %v, err %v", reps, err)
	}
	var b strings.Builder
	if err := writeTable(&b, reps, "tally"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("table:\n%s", b.String())
	}
	check := func(line string, want ...string) {
		t.Helper()
		f := strings.Fields(line)
		if strings.Join(f, " ") != strings.Join(want, " ") {
			t.Errorf("row %q, want %q", strings.Join(f, " "), strings.Join(want, " "))
		}
	}
	check(lines[1], "tally", "hot", "3000", "8.00", "20.00", "0", "yes", "—")
	check(lines[2], "redis-always", "hot", "1500", "1.00", "3.00", "2", "NO", "2.00")
	check(lines[3], "etcd", "uniform", "100", "1.00", "3.00", "0", "—", "—") // no tally row for it
	if _, err := readReports(strings.NewReader("{not json\n")); err == nil {
		t.Error("a broken JSON line was accepted")
	}
}
