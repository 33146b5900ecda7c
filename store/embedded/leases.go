package embedded

import (
	"context"
	"sync"
	"time"

	"github.com/feedgate/feedgate/store"
)

var _ store.Leases = (*Store)(nil)

// leases are kept in memory: the embedded store has one process, whose
// holders all live (and end) with it.
type leases struct {
	mu sync.Mutex
	m  map[string]lease
}

type lease struct {
	holder string
	until  time.Time
}

// Lease implements store.Leases.
func (s *Store) Lease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if err := s.Ping(ctx); err != nil {
		return false, err
	}
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	now := time.Now()
	if l, ok := s.leases.m[name]; ok && l.holder != holder && now.Before(l.until) {
		return false, nil
	}
	if s.leases.m == nil {
		s.leases.m = make(map[string]lease)
	}
	s.leases.m[name] = lease{holder: holder, until: now.Add(ttl)}
	return true, nil
}
