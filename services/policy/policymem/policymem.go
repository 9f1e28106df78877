// Package policymem is the embedded, in-memory policy store: the default when fmgate runs
// without Postgres.
package policymem

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fmgate/fmgate/services/policy"
)

// Store is an in-memory policy.Store, safe for concurrent use.
type Store struct {
	// epoch starts every version this store issues. A restarted process reseeds a new
	// store whose counters start again at zero: the epoch keeps its versions from equalling
	// versions a cache saw before the restart.
	epoch string

	mu   sync.RWMutex
	orgs map[string]*org
}

type org struct {
	version  uint64
	policies map[string]policy.Policy
}

var _ policy.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Store{epoch: hex.EncodeToString(b), orgs: map[string]*org{}}
}

func clone(p policy.Policy) policy.Policy {
	p.Subjects = slices.Clone(p.Subjects)
	p.Models = slices.Clone(p.Models)
	return p
}

func (s *Store) version(o *org) string {
	var n uint64
	if o != nil {
		n = o.version
	}
	return s.epoch + "." + strconv.FormatUint(n, 10)
}

// PutPolicy implements policy.Store.
func (s *Store) PutPolicy(ctx context.Context, p policy.Policy) (bool, error) {
	if err := p.Validate(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[p.OrganizationID]
	if o == nil {
		o = &org{policies: map[string]policy.Policy{}}
		s.orgs[p.OrganizationID] = o
	}
	if old, ok := o.policies[p.ID]; ok && old.SameContent(p) {
		return false, nil
	}
	p = clone(p)
	// Microseconds in UTC, as Postgres keeps them, so both stores return the same values.
	p.UpdateTime = time.Now().UTC().Truncate(time.Microsecond)
	o.policies[p.ID] = p
	o.version++
	return true, nil
}

// GetPolicy implements policy.Store.
func (s *Store) GetPolicy(ctx context.Context, orgID, id string) (policy.Policy, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if o := s.orgs[orgID]; o != nil {
		if p, ok := o.policies[id]; ok {
			return clone(p), nil
		}
	}
	return policy.Policy{}, fmt.Errorf("get policy %s: %w", id, policy.ErrNotFound)
}

// ListPolicies implements policy.Store.
func (s *Store) ListPolicies(ctx context.Context, orgID string) ([]policy.Policy, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o := s.orgs[orgID]
	var out []policy.Policy
	if o != nil {
		out = make([]policy.Policy, 0, len(o.policies))
		for _, p := range o.policies {
			out = append(out, clone(p))
		}
	}
	slices.SortFunc(out, func(a, b policy.Policy) int { return cmp.Compare(a.ID, b.ID) })
	return out, s.version(o), nil
}

// DeletePolicy implements policy.Store.
func (s *Store) DeletePolicy(ctx context.Context, orgID, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[orgID]
	if o == nil {
		return fmt.Errorf("delete policy %s: %w", id, policy.ErrNotFound)
	}
	if _, ok := o.policies[id]; !ok {
		return fmt.Errorf("delete policy %s: %w", id, policy.ErrNotFound)
	}
	delete(o.policies, id)
	o.version++
	return nil
}

// Version implements policy.Store.
func (s *Store) Version(ctx context.Context, orgID string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version(s.orgs[orgID]), nil
}
