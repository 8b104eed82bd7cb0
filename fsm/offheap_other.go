//go:build !unix

package fsm

// offHeap falls back to the Go heap where anonymous mappings are not
// available; the table works the same, at a higher memory cost per key.
func offHeap(n int) []byte { return make([]byte, n) }

func freeOffHeap([]byte) {}
