//go:build unix

package fsm

import "syscall"

// offHeap allocates n zeroed bytes outside the Go heap: anonymous memory the
// kernel backs page by page as it is touched. The dedup table keeps its
// records and index there, so that the garbage collector neither scans them
// nor counts them when it sizes the heap: a table of millions of records on
// the Go heap would let as many bytes of garbage pile up again before a
// collection (the heap goal is twice the live heap), doubling what a
// remembered key costs in memory.
func offHeap(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		// Out of address space or over the map count: the same as the
		// runtime running out of memory, which it does not survive either.
		panic("fsm: mapping dedup memory: " + err.Error())
	}
	return b
}

// freeOffHeap gives memory from offHeap back.
func freeOffHeap(b []byte) {
	if err := syscall.Munmap(b); err != nil {
		panic("fsm: unmapping dedup memory: " + err.Error())
	}
}
