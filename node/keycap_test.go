package node_test

import (
	"fmt"
	"testing"
	"time"

	"tally/internal/testcluster"
	"tally/node"
)

// TestDedupCapRefusesNewKeys: past --dedup-max-keys, a keyed write with a
// new key is refused with 503 keys_full before it is proposed (on the
// leader's node and through a forwarding one alike) and changes nothing;
// retries of remembered keys still get their first answers, unkeyed writes
// still apply, and once keys expire new ones are admitted again.
func TestDedupCapRefusesNewKeys(t *testing.T) {
	const capKeys = 4
	tc := testcluster.StartWith(t, 3, 1, func(c *node.Config) {
		c.DedupMaxKeys = capKeys
		c.DedupTTL = 3 * time.Second
	})
	lead := tc.LeaderNode(0)
	if lead < 0 {
		t.Fatal("no leader")
	}
	other := (lead + 1) % 3
	url := func(i int) string { return "http://" + tc.Nodes[i].HTTPAddr() + "/v1/counters/views/incr" }
	incr := func(i int, key string) testcluster.Answer {
		hdr := map[string]string{}
		if key != "" {
			hdr["Idempotency-Key"] = key
		}
		return testcluster.Do(t, "POST", url(i), "", hdr)
	}
	for k := range capKeys {
		if a := incr(k%3, fmt.Sprint("k", k)); a.Status != 200 || a.Body["value"] != float64(k+1) {
			t.Fatalf("key %d under the cap: %d %v", k, a.Status, a.Body)
		}
	}
	// Every replica applies the keys; the cap counts the leader's node.
	testcluster.WaitFor(t, "keys on the leader's node", 30*time.Second, func() bool {
		keys, limit := tc.Nodes[lead].DedupKeys()
		return keys == capKeys && limit == capKeys
	})
	for _, i := range []int{lead, other} {
		a := incr(i, fmt.Sprint("new-via-", i))
		if a.Status != 503 || testcluster.ErrCode(a) != string(node.CodeKeysFull) || a.Header.Get("Retry-After") == "" {
			t.Fatalf("new key past the cap via node %d: %d %v", i, a.Status, a.Body)
		}
	}
	if a := incr(other, "k1"); a.Status != 200 || a.Body["value"] != float64(2) {
		t.Fatalf("retry of a remembered key past the cap: %d %v", a.Status, a.Body)
	}
	if a := incr(other, ""); a.Status != 200 || a.Body["value"] != float64(capKeys+1) {
		t.Fatalf("unkeyed write past the cap: %d %v", a.Status, a.Body)
	}
	// The refused keys changed nothing: the count is the admitted writes.
	if a := testcluster.Do(t, "GET", "http://"+tc.Nodes[lead].HTTPAddr()+"/v1/counters/views?consistency=linearizable", "", nil); a.Body["value"] != float64(capKeys+1) {
		t.Fatalf("value after refusals: %v", a.Body)
	}
	// Keys expire with the TTL; then new ones are admitted again, with
	// nothing but refused keyed writes arriving meanwhile: the idle
	// shard's leader must propose the entry that lets them expire.
	testcluster.WaitFor(t, "a new key admitted after expiry", 60*time.Second, func() bool {
		return incr(other, "after-expiry").Status == 200
	})
}
