package peers

import (
	"slices"
	"testing"

	"tally/loadgen"
)

func TestSumByKey(t *testing.T) {
	keys, sum := sumByKey([]loadgen.Op{{Counter: "b", Delta: 1}, {Counter: "a", Delta: 2}, {Counter: "b", Delta: 3}, {Counter: "c", Delta: -1}})
	if !slices.Equal(keys, []string{"b", "a", "c"}) || sum["a"] != 2 || sum["b"] != 4 || sum["c"] != -1 || len(sum) != 3 {
		t.Errorf("keys %v sums %v", keys, sum)
	}
}
