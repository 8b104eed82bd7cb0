package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"tally/client"
)

// Workload is the clients' side of a round: increments (with idempotency
// keys, retried by the client), decrements and linearizable reads over a
// few hot and many cold counters.
type Workload struct {
	Hot, Cold []string // counter names; Up counters only ever go up
	Up        map[string]bool
	// Unit counters (split ones) only take increments of 1: a sum of
	// sub-counters read at slightly different instants is linearizable
	// for those (see node/split.go), not for mixed deltas.
	Unit    map[string]bool
	Clients int
	// RESP lists the nodes' Redis-protocol addresses; the last
	// RESPClients of the clients send their writes and reads there
	// (respwork.go) instead of over HTTP.
	RESP        []string
	RESPClients int
	Rate        int     // ops per second over all clients (pacing, not synchronization)
	ReadFrac    float64 // share of reads
	HotFrac     float64 // share of ops on hot counters

	h         *History
	addrs     []string
	c         *client.Client
	impatient *client.Client
	acks      atomic.Int64
	pending   sync.Map // history index -> Op, for unknown writes
	wg        sync.WaitGroup
	cancel    context.CancelFunc

	splitSeen    map[string]bool // counters the final reads found split
	respFailed   atomic.Int64    // RESP writes that definitely did not apply
	probMu       sync.Mutex
	problems     []string // RESP answers that mean a bug
	moreProblems int
}

// NewWorkload names the counters of one round: hot counters on the same
// busy shard are made by the caller; half the cold counters also take
// decrements.
func NewWorkload(prefix string, hot []string, cold int, clients, rate int) *Workload {
	w := &Workload{Hot: hot, Up: map[string]bool{}, Unit: map[string]bool{}, Clients: clients, Rate: rate, ReadFrac: 0.2, HotFrac: 0.5, splitSeen: map[string]bool{}}
	for _, n := range hot {
		w.Up[n] = true
	}
	for i := 0; i < cold; i++ {
		name := fmt.Sprintf("%s:cold-%d", prefix, i)
		w.Cold = append(w.Cold, name)
		if i%2 == 0 {
			w.Up[name] = true
		}
	}
	return w
}

// Counters lists every counter of the workload.
func (w *Workload) Counters() []string { return append(append([]string(nil), w.Hot...), w.Cold...) }

// Start runs the clients against addrs until Stop, recording into h.
func (w *Workload) Start(addrs []string, h *History) {
	w.h, w.addrs = h, addrs
	// Bounded retry deadlines: an op that cannot finish within one ends
	// unknown (or failed) and unknown ones are settled after the faults
	// heal (Resolve). Odd-numbered clients are impatient, so faults leave
	// writes of unknown outcome for the checker to reason about.
	w.c = client.New(addrs, client.WithRetryDeadline(5*time.Second))
	w.impatient = client.New(addrs, client.WithRetryDeadline(300*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	interval := time.Duration(float64(time.Second) * float64(w.Clients) / float64(max(w.Rate, 1)))
	for id := 0; id < w.Clients; id++ {
		w.wg.Add(1)
		go w.client(ctx, id, interval)
	}
}

// Stop ends the clients and waits for their last ops to be recorded.
func (w *Workload) Stop() {
	w.cancel()
	w.wg.Wait()
}

// overRESP reports whether client id speaks RESP.
func (w *Workload) overRESP(id int) bool {
	return len(w.RESP) > 0 && id >= w.Clients-w.RESPClients
}

// RESPFailedWrites counts the RESP writes that definitely did not apply.
func (w *Workload) RESPFailedWrites() int64 { return w.respFailed.Load() }

// Acks is the number of writes acknowledged so far (progress, for the
// nemesis to wait on).
func (w *Workload) Acks() int64 { return w.acks.Load() }

func (w *Workload) client(ctx context.Context, id int, interval time.Duration) {
	defer w.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	var rc *respConn
	if w.overRESP(id) {
		// Per-op timeouts like the HTTP clients' retry deadlines: an
		// impatient one leaves more writes of unknown outcome.
		timeout := 5 * time.Second
		if id%2 == 1 {
			timeout = 300 * time.Millisecond
		}
		rc = &respConn{addrs: w.RESP, rng: rng, timeout: timeout}
		defer rc.close()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		name := w.Cold[rng.IntN(len(w.Cold))]
		if rng.Float64() < w.HotFrac {
			name = w.Hot[rng.IntN(len(w.Hot))]
		}
		if rng.Float64() < w.ReadFrac {
			if rc != nil {
				w.readRESP(ctx, rc, id, name)
			} else {
				w.read(ctx, id, name)
			}
			continue
		}
		delta := int64(1 + rng.IntN(3))
		if w.Unit[name] {
			delta = 1
		}
		if !w.Up[name] && rng.IntN(3) == 0 {
			delta = -delta
		}
		key := fmt.Sprintf("c%d-%d-%d", id, seq, rng.Uint64())
		if rc != nil {
			w.addRESP(ctx, rc, id, name, delta, key)
		} else {
			w.add(ctx, id, name, delta, key)
		}
	}
}

// add sends one write and records it. The ctx is only for stopping: a
// write cut off by Stop ends unknown and is resolved like any other.
func (w *Workload) add(ctx context.Context, id int, name string, delta int64, key string) {
	c := w.c
	if id%2 == 1 {
		c = w.impatient
	}
	call := w.h.Now()
	res, err := c.Add(ctx, name, delta, client.WriteOptions{Key: key})
	ret := w.h.Now()
	op := Op{Client: id, Counter: name, Kind: Add, Delta: delta, Key: key, Call: call, Return: ret}
	switch {
	case err == nil:
		op.Value, op.Inexact = res.Value, !res.Exact
		w.h.Record(op)
		w.acks.Add(1)
	case client.IsOutcomeUnknown(err):
		op.Outcome = Unknown
		w.pending.Store(w.h.Record(op), op)
	default:
		w.h.Failed(Add)
		if ae := (*client.APIError)(nil); errors.As(err, &ae) && ae.Code == "keys_full" {
			w.h.KeysFull()
		}
	}
}

func (w *Workload) read(ctx context.Context, id int, name string) {
	call := w.h.Now()
	cv, err := w.c.Get(ctx, name, client.Linearizable)
	ret := w.h.Now()
	if err != nil {
		w.h.Failed(Read) // a read that got no answer constrains nothing
		return
	}
	w.h.Record(Op{Client: id, Counter: name, Kind: Read, Value: cv.Value, Call: call, Return: ret})
}

// Resolve retries every write that ended unknown, with its idempotency
// key, after the faults have healed, over the protocol it was sent by: the
// answer is the first application's result (or this retry's, if it never
// applied), so the op becomes OK over [its call, this answer]. Ops still
// unanswered stay unknown. It returns how many stay unknown.
func (w *Workload) Resolve(ctx context.Context) int {
	const within = 30 * time.Second
	c := client.New(w.addrs, client.WithRetryDeadline(within))
	rc := &respConn{addrs: w.RESP, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3)), timeout: 5 * time.Second}
	defer rc.close()
	left := 0
	w.pending.Range(func(k, v any) bool {
		i, op := k.(int), v.(Op)
		if op.RESP {
			value, ok := w.resolveRESP(ctx, rc, op, within)
			if !ok {
				left++
				return true
			}
			w.h.Resolve(i, value, w.h.Now(), op.Inexact)
			w.pending.Delete(k)
			return true
		}
		res, err := c.Add(ctx, op.Counter, op.Delta, client.WriteOptions{Key: op.Key})
		if err != nil {
			left++
			return true
		}
		w.h.Resolve(i, res.Value, w.h.Now(), !res.Exact)
		w.pending.Delete(k)
		return true
	})
	return left
}

// FinalReads reads every counter linearizably (recorded as client
// `id`'s reads) and returns the values.
func (w *Workload) FinalReads(ctx context.Context, id int) (map[string]int64, error) {
	c := client.New(w.addrs, client.WithRetryDeadline(30*time.Second))
	out := map[string]int64{}
	for _, name := range w.Counters() {
		call := w.h.Now()
		cv, err := c.Get(ctx, name, client.Linearizable)
		if err != nil {
			return out, fmt.Errorf("final read of %s: %w", name, err)
		}
		w.h.Record(Op{Client: id, Counter: name, Kind: Read, Value: cv.Value, Call: call, Return: w.h.Now()})
		out[name] = cv.Value
		if cv.Split > 1 {
			w.splitSeen[name] = true
		}
	}
	return out, nil
}

// MarkSplit marks the RESP adds on counters the final reads found split
// as inexact, as HTTP's answers mark them: a RESP reply is a bare integer,
// with no word on whether it is a sub-counter's value. The workload marks
// those on the counter it split itself as it sends them; this covers a
// counter split behind its back (tallyd's auto-split, at write rates far
// above the default workload's). Marking an add that landed before the
// split only weakens its check.
func (w *Workload) MarkSplit(ops []Op) {
	for i := range ops {
		if ops[i].RESP && ops[i].Kind == Add && w.splitSeen[ops[i].Counter] {
			ops[i].Inexact = true
		}
	}
}
