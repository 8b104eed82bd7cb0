package httpapi_test

import (
	"testing"

	"tally/internal/testcluster"
)

// DELETE /v1/counters/{name} removes the counter and its actor set, says
// whether it was there, and is idempotent.
func TestDeleteCounter(t *testing.T) {
	tc := testcluster.Start(t, 1, 2)
	base := "http://" + tc.Nodes[0].HTTPAddr()
	if a := testcluster.Do(t, "POST", base+"/v1/counters/c/incr", `{"delta": 7}`, nil); a.Status != 200 {
		t.Fatalf("incr: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "PUT", base+"/v1/counters/c/actors/ann", "", nil); a.Status != 200 || a.Body["value"] != 8.0 {
		t.Fatalf("like: %d %v", a.Status, a.Body)
	}
	for i, want := range []bool{true, false} {
		a := testcluster.Do(t, "DELETE", base+"/v1/counters/c", "", nil)
		if a.Status != 200 || a.Body["name"] != "c" || a.Body["deleted"] != want {
			t.Fatalf("delete %d: %d %v, want deleted %v", i, a.Status, a.Body, want)
		}
	}
	if a := testcluster.Do(t, "GET", base+"/v1/counters/c", "", nil); a.Status != 200 || a.Body["value"] != 0.0 {
		t.Fatalf("after delete: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "GET", base+"/v1/counters/c/actors/ann", "", nil); a.Status != 200 || a.Body["member"] != false {
		t.Fatalf("actor after delete: %d %v", a.Status, a.Body)
	}
	// The like counts anew: the actor set went with the counter.
	if a := testcluster.Do(t, "PUT", base+"/v1/counters/c/actors/ann", "", nil); a.Status != 200 || a.Body["value"] != 1.0 || a.Body["changed"] != true {
		t.Fatalf("like after delete: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "DELETE", base+"/v1/counters/a%2Fb", "", nil); a.Status != 400 || testcluster.ErrCode(a) != "bad_name" {
		t.Fatalf("delete of a bad name: %d %v", a.Status, a.Body)
	}
}
