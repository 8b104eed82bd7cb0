package lazyfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestStateModel checks the extent bookkeeping against a plain byte
// slice under random writes (overlapping, touching, past the end),
// truncations down and up, and syncs: every read must match the model,
// and after a sync the underlying file must hold exactly the model while
// a dropped state must leave the last synced content.
func TestStateModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	path := filepath.Join(t.TempDir(), "f")
	for round := 0; round < 200; round++ {
		durable := make([]byte, rng.IntN(300))
		for i := range durable {
			durable[i] = byte(rng.IntN(250) + 1)
		}
		if err := os.WriteFile(path, durable, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		s := newState(int64(len(durable)))
		model := bytes.Clone(durable)
		for op := 0; op < 40; op++ {
			switch r := rng.IntN(10); {
			case r < 6:
				off := rng.IntN(len(model) + 50)
				p := make([]byte, rng.IntN(60)+1)
				for i := range p {
					p[i] = byte(rng.IntN(250) + 1)
				}
				s.write(int64(off), p)
				if need := off + len(p); need > len(model) {
					model = append(model, make([]byte, need-len(model))...)
				}
				copy(model[off:], p)
			case r < 8:
				n := rng.IntN(len(model) + 40)
				s.truncate(int64(n))
				if n < len(model) {
					model = model[:n]
				} else {
					model = append(model, make([]byte, n-len(model))...)
				}
			case r < 9:
				if err := s.apply(f); err != nil {
					t.Fatal(err)
				}
				durable = bytes.Clone(model)
				got, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, model) {
					t.Fatalf("round %d op %d: synced file\n got %v\nwant %v", round, op, got, model)
				}
			default: // drop
				s = newState(int64(len(durable)))
				model = bytes.Clone(durable)
			}
			if s.size != int64(len(model)) {
				t.Fatalf("round %d op %d: size %d, want %d", round, op, s.size, len(model))
			}
			for k := 1; k < len(s.ext); k++ {
				if s.ext[k-1].end() >= s.ext[k].off {
					t.Fatalf("round %d op %d: extents %d and %d overlap or touch", round, op, k-1, k)
				}
			}
			off := rng.IntN(len(model) + 10)
			buf := make([]byte, rng.IntN(len(model)+20)+1)
			for i := range buf {
				buf[i] = 0xff // a read must overwrite every byte it returns
			}
			n, err := s.read(buf, int64(off), f)
			if err != nil {
				t.Fatal(err)
			}
			var want []byte
			if off < len(model) {
				want = model[off:min(len(model), off+len(buf))]
			}
			if !bytes.Equal(buf[:n], want) {
				t.Fatalf("round %d op %d: read at %d\n got %v\nwant %v", round, op, off, buf[:n], want)
			}
		}
		f.Close()
	}
}
