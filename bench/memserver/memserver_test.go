package memserver

import (
	"context"
	"net/http/httptest"
	"testing"

	"tally/loadgen"
)

// TestDrivenByLoadgen: the load generator's tally target works against the
// server unchanged, and its verification holds.
func TestDrivenByLoadgen(t *testing.T) {
	srv := httptest.NewServer(New().Handler())
	defer srv.Close()
	h := loadgen.NewHTTP([]string{srv.URL}, 4, "")
	defer h.Close()
	for _, batch := range []int{1, 16} {
		b := loadgen.Bench{Config: loadgen.Config{Clients: 4, Requests: 400, Counter: "c", Counters: 50, Batch: batch, Reads: 0.1}, Verify: true}
		var out nopWriter
		read := func(ctx context.Context, names []string) (map[string]int64, error) {
			return loadgen.ReadAll(ctx, h.Client(0), names)
		}
		if err := b.Execute(context.Background(), &out, h.Client, read); err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
	}
	v, err := h.Client(0).Read(context.Background(), []string{"nothing"})
	if err != nil || len(v) != 1 || v[0] != 0 {
		t.Errorf("unknown counter: %v %v", v, err)
	}
	if err := h.Client(0).Incr(context.Background(), "d", 5); err != nil {
		t.Fatal(err)
	}
	if v, err := h.Client(1).Read(context.Background(), []string{"d"}); err != nil || v[0] != 5 {
		t.Errorf("after incr by 5: %v %v", v, err)
	}
}

type nopWriter struct{ n int }

func (w *nopWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
