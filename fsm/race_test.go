//go:build race

package fsm

// raceEnabled: the race detector changes allocation sizes, so memory
// measurements are only checked without it.
const raceEnabled = true
