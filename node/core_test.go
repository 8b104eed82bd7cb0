package node_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"tally/internal/testcluster"
	"tally/node"
)

// codeOf is the core error code of err ("" for nil, "?" for an error that
// is not a *node.Error).
func codeOf(err error) node.Code {
	if err == nil {
		return ""
	}
	var e *node.Error
	if !errors.As(err, &e) {
		return "?"
	}
	return e.Code
}

// TestCoreOperations drives the protocol-neutral core directly, as a
// protocol adapter does: every operation answers typed results, and every
// refusal a typed code (with the value where the code carries one).
func TestCoreOperations(t *testing.T) {
	tc := testcluster.Start(t, 1, 4)
	n := tc.Nodes[0]
	ctx := testcluster.Ctx(t, 60*time.Second)

	res, err := n.Add(ctx, node.AddRequest{Name: "stock", Delta: 3, HasMin: true, Min: 0})
	if err != nil || res.Value != 3 || !res.Exact {
		t.Fatalf("add: %+v, %v", res, err)
	}
	_, err = n.Add(ctx, node.AddRequest{Name: "stock", Delta: -4, HasMin: true, Min: 0})
	var e *node.Error
	if !errors.As(err, &e) || e.Code != node.CodeOutOfBounds || !e.HasValue || e.Value != 3 {
		t.Fatalf("add below min: %v (%+v)", err, e)
	}
	if _, err := n.Add(ctx, node.AddRequest{Name: "stock", Delta: math.MaxInt64}); codeOf(err) != node.CodeOverflow {
		t.Fatalf("overflowing add: %v", err)
	}
	first, err := n.Add(ctx, node.AddRequest{Name: "k", Delta: 5, IdempotencyKey: "once"})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.Add(ctx, node.AddRequest{Name: "k", Delta: 5, IdempotencyKey: "once"}); err != nil || again.Value != first.Value {
		t.Fatalf("retry: %+v, %v; first %+v", again, err, first)
	}
	if _, err := n.Add(ctx, node.AddRequest{Name: "k", Delta: 6, IdempotencyKey: "once"}); codeOf(err) != node.CodeKeyReused {
		t.Fatalf("key reused for another delta: %v", err)
	}
	ttl, err := n.Add(ctx, node.AddRequest{Name: "window", Delta: 1, TTL: time.Minute})
	if err != nil || ttl.ExpiresAt.IsZero() {
		t.Fatalf("add with ttl: %+v, %v", ttl, err)
	}

	for name, req := range map[string]node.AddRequest{
		"bad_name":   {Name: "a/b", Delta: 1},
		"bad_key":    {Name: "a", Delta: 1, IdempotencyKey: "has space"},
		"bad_bounds": {Name: "a", Delta: 1, HasMin: true, Min: 2, HasMax: true, Max: 1},
		"bad_ttl":    {Name: "a", Delta: 1, TTL: time.Microsecond},
	} {
		if _, err := n.Add(ctx, req); codeOf(err) != node.Code(name) || !codeOf(err).BadInput() {
			t.Errorf("%+v: %v, want %s", req, err, name)
		}
	}
	if _, err := n.AddBatch(ctx, []node.AddRequest{{Name: "b1", Delta: 1}, {Name: "", Delta: 1}}); codeOf(err) != node.CodeBadName {
		t.Fatalf("batch with a bad op: %v", err)
	}
	if v, err := n.Read(ctx, node.ReadRequest{Name: "b1"}); err != nil || v.Value != 0 {
		t.Fatalf("a rejected batch applied: %+v, %v", v, err)
	}
	outs, err := n.AddBatch(ctx, []node.AddRequest{{Name: "b1", Delta: 2}, {Name: "stock", Delta: -10, HasMin: true}})
	if err != nil || len(outs) != 2 || outs[0].Err != nil || outs[0].Result.Value != 2 || outs[1].Err == nil || outs[1].Err.Code != node.CodeOutOfBounds {
		t.Fatalf("batch: %+v, %v", outs, err)
	}

	like := node.ActorRequest{Name: "post", Actor: "ann"}
	if r, err := n.Like(ctx, like); err != nil || r.Value != 1 || !r.Changed {
		t.Fatalf("like: %+v, %v", r, err)
	}
	if r, err := n.Like(ctx, like); err != nil || r.Value != 1 || r.Changed {
		t.Fatalf("like again: %+v, %v", r, err)
	}
	if ok, err := n.IsMember(ctx, node.MemberRequest{Name: "post", Actor: "ann"}); err != nil || !ok {
		t.Fatalf("member: %v, %v", ok, err)
	}
	if r, err := n.Unlike(ctx, like); err != nil || r.Value != 0 || !r.Changed {
		t.Fatalf("unlike: %+v, %v", r, err)
	}

	vals, err := n.ReadMany(ctx, []string{"stock", "k", "never"}, node.Stale)
	if err != nil || vals[0].Value != 3 || vals[1].Value != 5 || vals[2].Value != 0 || vals[2].Name != "never" {
		t.Fatalf("read many: %+v, %v", vals, err)
	}

	if s, err := n.Split(ctx, node.SplitRequest{Name: "hot", Factor: 3}); err != nil || s.Factor != 3 {
		t.Fatalf("split: %+v, %v", s, err)
	}
	if r, err := n.Read(ctx, node.ReadRequest{Name: "hot"}); err != nil || r.Split != 3 || len(r.Shards) != 3 {
		t.Fatalf("read of a split counter: %+v, %v", r, err)
	}
	_, err = n.Split(ctx, node.SplitRequest{Name: "hot", Factor: 2})
	if !errors.As(err, &e) || e.Code != node.CodeSplitShrink || e.Value != 3 {
		t.Fatalf("shrinking split: %v", err)
	}
	if _, err := n.Split(ctx, node.SplitRequest{Name: "window", Factor: 2}); codeOf(err) != node.CodeNotSplittable {
		t.Fatalf("split of an expiring counter: %v", err)
	}
	if _, err := n.Add(ctx, node.AddRequest{Name: "hot", Delta: 1, HasMax: true, Max: 10}); codeOf(err) != node.CodeCounterSplit {
		t.Fatalf("bounded add on a split counter: %v", err)
	}
	if _, err := n.Split(ctx, node.SplitRequest{Name: "hot", Factor: 5}); codeOf(err) != node.CodeBadSplit {
		t.Fatalf("split beyond the shard count: %v", err)
	}

}
