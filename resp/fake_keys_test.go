package resp

import (
	"context"
	"time"

	"tally/node"
)

// memBackend's whole-counter and set operations, with the core's rules:
// an expired counter is gone, SET clears the set and the expiry, split
// counters refuse SET and EXPIRE.

// expireNow forgets name if its expiry has passed; m.mu is held.
func (m *memBackend) expireNow(name string) {
	if at, ok := m.expiry[name]; ok && !time.Now().Before(at) {
		delete(m.vals, name)
		delete(m.expiry, name)
		delete(m.sets, name)
	}
}

var errMemSplit = &node.Error{Code: node.CodeCounterSplit, Message: "the counter is split across shards"}

func (m *memBackend) Delete(_ context.Context, name string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireNow(name)
	_, v := m.vals[name]
	_, e := m.expiry[name]
	existed := v || e || len(m.sets[name]) > 0
	delete(m.vals, name)
	delete(m.expiry, name)
	delete(m.sets, name)
	return existed, nil
}

func (m *memBackend) Set(_ context.Context, name string, value int64, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.split[name] {
		return errMemSplit
	}
	if ttl < 0 || ttl > 10*365*24*time.Hour {
		return &node.Error{Code: node.CodeBadTTL, Message: "bad ttl"}
	}
	delete(m.sets, name)
	delete(m.expiry, name)
	m.vals[name] = value
	if value == 0 && ttl == 0 {
		delete(m.vals, name)
	}
	if ttl > 0 {
		m.expiry[name] = time.Now().Add(ttl)
	}
	return nil
}

func (m *memBackend) Expire(_ context.Context, name string, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.split[name] {
		return false, errMemSplit
	}
	if ttl <= 0 || ttl > 10*365*24*time.Hour {
		return false, &node.Error{Code: node.CodeBadTTL, Message: "bad ttl"}
	}
	m.expireNow(name)
	_, v := m.vals[name]
	_, e := m.expiry[name]
	if !v && !e && len(m.sets[name]) == 0 {
		return false, nil
	}
	m.expiry[name] = time.Now().Add(ttl)
	return true, nil
}

func (m *memBackend) Actors(_ context.Context, name string, actors []string, add bool) (int, int64, error) {
	for _, a := range actors {
		if bad := node.ValidActor(a); bad != "" {
			return 0, 0, &node.Error{Code: node.CodeBadActor, Message: bad}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.actorCalls = append(m.actorCalls, actors)
	m.expireNow(name)
	set := m.sets[name]
	if set == nil {
		set = map[string]bool{}
		m.sets[name] = set
	}
	changed := 0
	for _, a := range actors {
		if set[a] != add {
			changed++
			if add {
				set[a] = true
				m.vals[name]++
			} else {
				delete(set, a)
				m.vals[name]--
			}
		}
	}
	return changed, m.vals[name], nil
}

func (m *memBackend) IsMember(_ context.Context, req node.MemberRequest) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireNow(req.Name)
	return m.sets[req.Name][req.Actor], nil
}

func (m *memBackend) ActorCount(_ context.Context, name string, _ node.Consistency) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireNow(name)
	return len(m.sets[name]), nil
}
