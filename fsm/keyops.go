package fsm

// The whole-counter kinds: OpDelete, OpSet and OpExpire (Redis's DEL, SET
// and EXPIRE). None takes an idempotency key: applying one twice leaves
// the same state as applying it once, given the same entry time.

// splitHome reports whether name is the home of a split counter (or one
// being split): such a counter's value is spread over sub-counters, so it
// cannot be set or given an expiry in one place.
func (m *Machine) splitHome(name string) bool {
	st, ok := m.splits[name]
	return ok && (st.n > 1 || st.pending > 0)
}

// deleteCounter applies OpDelete. The split state stays: sub-counters
// keep being summed, so an increment that lands on one while the delete
// runs still counts.
func (m *Machine) deleteCounter(op *Op) Result {
	c, held := m.load(op.Name)
	m.note(op.Name, c.value, 0)
	// Drop even an expired entry the next reclaim would drop; its heap
	// item goes stale (lazy deletion).
	m.ctrs.del(op.Name)
	return Result{Code: OK, Changed: held, Split: m.splitOf(op.Name)}
}

// setCounter applies OpSet.
func (m *Machine) setCounter(op *Op) Result {
	if m.splitHome(op.Name) {
		res := m.current(op.Name, ErrSplit)
		res.Split = m.splitOf(op.Name)
		return res
	}
	c := counter{value: op.Delta}
	if op.TTL > 0 {
		c.expiry = expiryAt(m.lastTime, op.TTL)
	}
	old, _ := m.load(op.Name)
	m.note(op.Name, old.value, c.value)
	m.ctrs.del(op.Name) // store below keeps only what is held
	m.store(op.Name, c, true)
	return Result{Value: c.value, ExpiresAt: c.expiry, Code: OK}
}

// expireCounter applies OpExpire, on the Machine's clock as every expiry.
func (m *Machine) expireCounter(op *Op) Result {
	if m.splitHome(op.Name) {
		res := m.current(op.Name, ErrSplit)
		res.Split = m.splitOf(op.Name)
		return res
	}
	c, held := m.load(op.Name)
	if !held {
		return Result{Code: OK}
	}
	c.expiry = expiryAt(m.lastTime, op.TTL)
	m.store(op.Name, c, true)
	return Result{Value: c.value, ExpiresAt: c.expiry, Code: OK, Changed: true}
}

// ActorCount returns the size of the named counter's actor set as of time
// now (an expired counter has none); pass now as for Get.
func (m *Machine) ActorCount(name string, now int64) int {
	c, _ := m.ctrs.get(name)
	if c.expired(now) || c.actors == nil {
		return 0
	}
	return c.actors.len()
}
