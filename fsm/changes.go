package fsm

// A changefeed needs, for every applied entry, each counter whose value it
// moved and the value after. The Machine records them as it applies (only
// when asked: a replica that serves no feed pays nothing), one record per
// counter per Apply, so an entry of a thousand increments of one hot
// counter is one change.

// Change is one counter's value moving in an Apply, from Old to Value.
// Expiry and deletion move a counter to 0.
type Change struct {
	Name       string // the stored name: a counter, or a placement.SubName of one
	Old, Value int64
}

// TrackChanges turns the recording of changes on or off.
func (m *Machine) TrackChanges(on bool) {
	m.track = on
	m.changes, m.changeAt = m.changes[:0], nil
}

// Changes returns the changes the last Apply made, in the order the
// counters first moved, leaving out those that came back to where they
// were. Valid until the next Apply; empty unless TrackChanges is on.
func (m *Machine) Changes() []Change {
	out := m.changes[:0]
	for _, c := range m.changes {
		if c.Old != c.Value {
			out = append(out, c)
		}
	}
	m.changes = out
	return out
}

// resetChanges starts an Apply's record.
func (m *Machine) resetChanges() {
	if m.track {
		clear(m.changes) // drop the names for the GC
		m.changes = m.changes[:0]
		if m.changeAt != nil {
			clear(m.changeAt)
		}
	}
}

// note records that the named counter moved from old to v.
func (m *Machine) note(name string, old, v int64) {
	if !m.track || old == v {
		return
	}
	if n := len(m.changes); n > 0 && m.changes[n-1].Name == name {
		m.changes[n-1].Value = v // the hot case: the same counter again
		return
	}
	if i, ok := m.changeIndex(name); ok {
		m.changes[i].Value = v
		return
	}
	m.changes = append(m.changes, Change{Name: name, Old: old, Value: v})
	if m.changeAt != nil {
		m.changeAt[name] = len(m.changes) - 1
	}
}

// changeIndex finds name among this Apply's changes: a scan while they are
// few, a map once they are many.
func (m *Machine) changeIndex(name string) (int, bool) {
	const scan = 16
	if m.changeAt == nil {
		if len(m.changes) < scan {
			for i := range m.changes {
				if m.changes[i].Name == name {
					return i, true
				}
			}
			return 0, false
		}
		m.changeAt = make(map[string]int, 2*scan)
	}
	if len(m.changeAt) < len(m.changes) {
		for i := range m.changes {
			m.changeAt[m.changes[i].Name] = i
		}
	}
	i, ok := m.changeAt[name]
	return i, ok
}

// Each calls fn for every counter of the snapshot with a non-zero value,
// as of the snapshot's time (an expired counter is left out), in no
// particular order. The name is fn's own copy.
func (s *Snapshot) Each(fn func(name string, value int64)) {
	s.counters.each(s.counters.n, nil, func(name []byte, c counter) {
		if c.value != 0 && !c.expired(s.lastTime) {
			fn(string(name), c.value)
		}
	})
}
