package loadgen

import (
	"fmt"
	"math/rand"
)

// Dist is how a run picks the counter of each op.
type Dist string

const (
	Hot     Dist = "hot"     // every op on counter 0: the one-hot-row case
	Uniform Dist = "uniform" // every counter equally likely
	Zipf    Dist = "zipf"    // a few counters take most ops (s = 1.1), like real popularity
)

// ParseDist accepts the names above.
func ParseDist(s string) (Dist, error) {
	switch d := Dist(s); d {
	case Hot, Uniform, Zipf:
		return d, nil
	}
	return "", fmt.Errorf("unknown distribution %q (want hot, uniform or zipf)", s)
}

// zipfS is the exponent of the zipf distribution. Just above 1, so the
// head is hot but the tail still gets a share worth measuring.
const zipfS = 1.1

// picker chooses counter indexes for one client. Each client has its own,
// seeded from the run's seed and the client's index, so runs repeat and
// no lock is shared on the hot path.
type picker struct {
	dist Dist
	n    int
	r    *rand.Rand
	z    *rand.Zipf
}

func newPicker(d Dist, n int, seed int64) *picker {
	p := &picker{dist: d, n: n, r: rand.New(rand.NewSource(seed))}
	if d == Zipf && n > 1 {
		p.z = rand.NewZipf(p.r, zipfS, 1, uint64(n-1))
	}
	return p
}

// next returns a counter index in [0, n).
func (p *picker) next() int {
	if p.n <= 1 {
		return 0
	}
	switch p.dist {
	case Uniform:
		return p.r.Intn(p.n)
	case Zipf:
		return int(p.z.Uint64())
	default:
		return 0
	}
}

// float is a uniform number in [0, 1), for the read/write mix.
func (p *picker) float() float64 { return p.r.Float64() }
