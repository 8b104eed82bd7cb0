package lazyfs

import (
	"bytes"
	"io"
	"os"
	"slices"
	"sort"
)

// state is what a file's users have written (or truncated) since it was
// last synced, over its durable content: the underlying file, which is
// left as it was at the last sync.
//
// A byte at offset p < size reads as the extent covering it, if any;
// else as the underlying file's byte if p < cut; else as zero. Invariant:
// cut <= base and cut <= size.
type state struct {
	base int64    // the underlying file's size
	cut  int64    // the smallest size the file was truncated to since the last sync (base if none)
	size int64    // the file's size as its users see it
	ext  []extent // sorted by offset, disjoint, no two touching
}

type extent struct {
	off  int64
	data []byte
}

func (e extent) end() int64 { return e.off + int64(len(e.data)) }

func newState(base int64) *state { return &state{base: base, cut: base, size: base} }

// held is the number of unsynced bytes the state holds.
func (s *state) held() int64 {
	var n int64
	for _, e := range s.ext {
		n += int64(len(e.data))
	}
	return n
}

// write records p written at off (p is copied). Writes that overlap or
// touch existing extents merge with them, so a file written sequentially
// (a log) is one growing extent.
func (s *state) write(off int64, p []byte) {
	if len(p) == 0 {
		return
	}
	end := off + int64(len(p))
	// [i, j): the extents that overlap or touch [off, end).
	i := sort.Search(len(s.ext), func(k int) bool { return s.ext[k].end() >= off })
	j := i
	for j < len(s.ext) && s.ext[j].off <= end {
		j++
	}
	if i == j {
		s.ext = slices.Insert(s.ext, i, extent{off: off, data: bytes.Clone(p)})
	} else {
		start := min(s.ext[i].off, off)
		stop := max(s.ext[j-1].end(), end)
		var buf []byte
		from := i
		if s.ext[i].off == start {
			// Grow the first extent in place: an append costs its own
			// bytes, not a copy of the extent. Every byte of the grown
			// range is copied over below (the merged extents and p cover
			// [start, stop) without a gap).
			buf = s.ext[i].data
			if n := int(stop - start); n > len(buf) {
				buf = slices.Grow(buf, n-len(buf))[:n]
			}
			from = i + 1
		} else {
			buf = make([]byte, stop-start)
		}
		for k := from; k < j; k++ {
			copy(buf[s.ext[k].off-start:], s.ext[k].data)
		}
		copy(buf[off-start:], p)
		s.ext[i] = extent{off: start, data: buf}
		s.ext = slices.Delete(s.ext, i+1, j)
	}
	s.size = max(s.size, end)
}

// truncate sets the size: written bytes past it are forgotten, and bytes
// the file grows by later read as zeros.
func (s *state) truncate(size int64) {
	i := sort.Search(len(s.ext), func(k int) bool { return s.ext[k].end() > size })
	if i < len(s.ext) && s.ext[i].off < size {
		s.ext[i].data = s.ext[i].data[:size-s.ext[i].off]
		i++
	}
	clear(s.ext[i:]) // let the dropped buffers go
	s.ext = s.ext[:i]
	s.size = size
	s.cut = min(s.cut, size)
}

// read fills p with the file's bytes from off, as its users see them,
// reading the durable part with under (the underlying file's ReadAt), and
// returns how many there are (short at the end of the file).
func (s *state) read(p []byte, off int64, under io.ReaderAt) (int, error) {
	if off >= s.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), s.size-off)]
	end := off + int64(len(p))
	n := 0
	if off < s.cut {
		m, err := under.ReadAt(p[:min(end, s.cut)-off], off)
		if err != nil && err != io.EOF {
			return 0, err
		}
		n = m
	}
	clear(p[n:]) // past the cut, or past a shorter underlying file
	i := sort.Search(len(s.ext), func(k int) bool { return s.ext[k].end() > off })
	for ; i < len(s.ext) && s.ext[i].off < end; i++ {
		e := s.ext[i]
		if e.off >= off {
			copy(p[e.off-off:], e.data)
		} else {
			copy(p, e.data[off-e.off:])
		}
	}
	return len(p), nil
}

// apply makes the underlying file f (open for writing) what its users
// see; the state is then empty over the new durable content.
func (s *state) apply(f *os.File) error {
	if s.cut < s.base {
		if err := f.Truncate(s.cut); err != nil {
			return err
		}
	}
	if s.size != s.cut {
		if err := f.Truncate(s.size); err != nil {
			return err
		}
	}
	for _, e := range s.ext {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			return err
		}
	}
	*s = *newState(s.size)
	return nil
}
