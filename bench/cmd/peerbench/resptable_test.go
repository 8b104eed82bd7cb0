package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"tally/placement"
)

func TestRespTable(t *testing.T) {
	in := `bench.sh progress
{"system":"redis-always","workload":"incr","clients":[50],"pipeline":1,"requests":1000,"seconds":0.025,"ops_per_sec":40000,"p50_ms":1,"p99_ms":2,"cpu_us_per_op":10,"counter_delta":1000}
{"system":"redis-always","workload":"incr-P16","clients":[50],"pipeline":16,"requests":16000,"ops_per_sec":200000,"p50_ms":3,"p99_ms":5,"cpu_us_per_op":2,"counter_delta":16000}
{"system":"tally-resp","workload":"incr","clients":[17,17,16],"pipeline":1,"requests":990,"ops_per_sec":4000,"p50_ms":9,"p99_ms":30,"cpu_us_per_op":80,"counter_delta":989}
{"system":"tally-resp","workload":"incr-P16","clients":[17,17,16],"pipeline":16,"requests":16000,"seconds":0.32,"ops_per_sec":50000,"p50_ms":12,"p99_ms":40,"cpu_us_per_op":null,"counter_delta":null}
{"system":"tally-resp-cluster","workload":"uniform","clients":[50],"pipeline":1,"requests":500,"ops_per_sec":100,"p50_ms":1,"p99_ms":1,"counter_delta":502}
`
	rows, err := readRespRows(strings.NewReader(in))
	if err != nil || len(rows) != 5 {
		t.Fatalf("rows %v, err %v", rows, err)
	}
	ratios := respRatios(rows, "redis-always")
	var b strings.Builder
	if err := writeRespTable(&b, rows, ratios, "redis-always"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	check := func(i int, want string) {
		t.Helper()
		if i >= len(lines) {
			t.Fatalf("no line %d in\n%s", i, b.String())
		}
		if got := strings.Join(strings.Fields(lines[i]), " "); got != want {
			t.Errorf("line %d: %q, want %q", i, got, want)
		}
	}
	check(1, "redis-always incr 50 1000 0.0 40000 1.00 2.00 10.0 us exact")
	check(3, "tally-resp incr 17+17+16 990 0.0 4000 9.00 30.00 80.0 us -1")
	check(4, "tally-resp incr-P16 17+17+16 16000 0.3 50000 12.00 40.00 — not read")
	check(5, "tally-resp-cluster uniform 50 500 0.0 100 1.00 1.00 — +2")
	// Ratios: only rows whose workload the baseline ran, the baseline's own left out.
	check(9, "tally-resp incr 0.100 8.00")
	check(10, "tally-resp incr-P16 0.250 —")
	if len(lines) != 11 {
		t.Errorf("%d lines, want 11:\n%s", len(lines), b.String())
	}
	if _, err := readRespRows(strings.NewReader("{\"system\":\n")); err == nil {
		t.Error("a broken JSON line was accepted")
	}
}

func TestRespTableWritesRatios(t *testing.T) {
	dir := t.TempDir()
	rowsPath, ratiosPath := filepath.Join(dir, "resp.jsonl"), filepath.Join(dir, "ratios.jsonl")
	rows := `{"system":"redis-always","workload":"incr","clients":[50],"requests":10,"ops_per_sec":1000,"cpu_us_per_op":4,"counter_delta":10}
{"system":"tally-resp","workload":"incr","clients":[17,17,16],"requests":10,"ops_per_sec":250,"cpu_us_per_op":20,"counter_delta":10}
`
	if err := os.WriteFile(rowsPath, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := respTable([]string{"--ratios", ratiosPath, rowsPath}, &out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(ratiosPath)
	if err != nil {
		t.Fatal(err)
	}
	var got respRatio
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(data))), &got); err != nil {
		t.Fatalf("%v in %q", err, data)
	}
	if got.System != "tally-resp" || got.Baseline != "redis-always" || got.Workload != "incr" ||
		got.OpsPerSec != 0.25 || got.CPUPerOp == nil || *got.CPUPerOp != 5 || got.Table != "resp" {
		t.Errorf("ratio %+v (cpu %v)", got, got.CPUPerOp)
	}
}

// redis-benchmark --cluster's tag for slot 0 is "06S" (against a node
// whose first slot is 0 it increments counter:{06S}:__rand_int__), and
// for slot 9 the two-character "ru", which it pads with '}'.
func TestSlotKeys(t *testing.T) {
	keys, err := slotKeys("counter:{tag}:__rand_int__", []int{0, 9})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"counter:{06S}:__rand_int__", "counter:{ru}}:__rand_int__"} {
		if !slices.Contains(keys, k) {
			t.Errorf("%s missing from %d keys", k, len(keys))
		}
	}
	for _, k := range keys {
		if s := placement.Slot(k); s != 0 && s != 9 {
			t.Errorf("%s is in slot %d", k, s)
		}
	}
	// 62 + 62² + 62³ candidates over 16384 slots: about 15 a slot.
	if len(keys) < 10 || len(keys) > 60 {
		t.Errorf("%d keys for two slots", len(keys))
	}
	if _, err := slotKeys("counter:__rand_int__", []int{0}); err == nil {
		t.Error("a pattern without {tag} was accepted")
	}
	if _, err := slotKeys("counter:{tag}", []int{placement.NumSlots}); err == nil {
		t.Error("slot 16384 was accepted")
	}
}
