package node_test

import (
	"testing"

	"tally/internal/testcluster"
)

// TestLeadersSpread: right after bootstrap one node wins most elections;
// the balancer must hand leaderships off until no node leads more than
// ceil(shards/nodes). startCluster fails the test if that never happens.
func TestLeadersSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	testcluster.Start(t, 3, 8)
}
