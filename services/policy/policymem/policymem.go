// Package policymem is the embedded, in-memory policy store: the default when fmgate runs
// without Postgres.
package policymem

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
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
	history  map[string][]policy.Revision // oldest first
}

var _ policy.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &Store{epoch: hex.EncodeToString(b), orgs: map[string]*org{}}
}

func (s *Store) version(o *org) string {
	var n uint64
	if o != nil {
		n = o.version
	}
	return s.epoch + "." + strconv.FormatUint(n, 10)
}

func (s *Store) org(id string) *org {
	o := s.orgs[id]
	if o == nil {
		o = &org{policies: map[string]policy.Policy{}, history: map[string][]policy.Revision{}}
		s.orgs[id] = o
	}
	return o
}

// now is in microseconds in UTC, as Postgres keeps times, so both stores return the same
// values.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// write stores the next revision of p, which must be valid; the caller holds s.mu.
func (o *org) write(p policy.Policy, createTime time.Time) policy.Policy {
	h := o.history[p.ID]
	p = p.Clone()
	p.Revision = 1
	if len(h) > 0 {
		p.Revision = h[len(h)-1].Policy.Revision + 1
	}
	p.Etag = policy.Etag(p, p.Revision)
	p.UpdateTime = now()
	p.CreateTime = createTime
	if createTime.IsZero() {
		p.CreateTime = p.UpdateTime
	}
	o.policies[p.ID] = p
	o.history[p.ID] = append(h, policy.Revision{Policy: p})
	o.version++
	return p.Clone()
}

func ptr(p policy.Policy) *policy.Policy { return &p }

// PutPolicy implements policy.Store.
func (s *Store) PutPolicy(ctx context.Context, p policy.Policy) (policy.Change, error) {
	if err := p.Validate(); err != nil {
		return policy.Change{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.org(p.OrganizationID)
	old, ok := o.policies[p.ID]
	switch {
	case !ok:
		return policy.Change{After: ptr(o.write(p, time.Time{})), Changed: true}, nil
	case old.SameContent(p):
		return policy.Change{Before: ptr(old.Clone()), After: ptr(old.Clone())}, nil
	}
	return policy.Change{Before: ptr(old.Clone()), After: ptr(o.write(p, old.CreateTime)), Changed: true}, nil
}

// CreatePolicy implements policy.Store.
func (s *Store) CreatePolicy(ctx context.Context, p policy.Policy) (policy.Policy, error) {
	if err := p.Validate(); err != nil {
		return policy.Policy{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.org(p.OrganizationID)
	if _, ok := o.policies[p.ID]; ok {
		return policy.Policy{}, fmt.Errorf("create policy %s: %w", p.ID, policy.ErrAlreadyExists)
	}
	return o.write(p, time.Time{}), nil
}

// UpdatePolicy implements policy.Store.
func (s *Store) UpdatePolicy(ctx context.Context, p policy.Policy, etag string) (policy.Change, error) {
	if err := p.Validate(); err != nil {
		return policy.Change{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.org(p.OrganizationID)
	old, ok := o.policies[p.ID]
	switch {
	case !ok:
		return policy.Change{}, fmt.Errorf("update policy %s: %w", p.ID, policy.ErrNotFound)
	case etag != "" && etag != old.Etag:
		return policy.Change{}, fmt.Errorf("update policy %s: %w", p.ID, policy.ErrConflict)
	case old.SameContent(p):
		return policy.Change{Before: ptr(old.Clone()), After: ptr(old.Clone())}, nil
	}
	return policy.Change{Before: ptr(old.Clone()), After: ptr(o.write(p, old.CreateTime)), Changed: true}, nil
}

// DeletePolicy implements policy.Store.
func (s *Store) DeletePolicy(ctx context.Context, orgID, id, etag, updatedBy string) (policy.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orgs[orgID]
	if o == nil {
		return policy.Policy{}, fmt.Errorf("delete policy %s: %w", id, policy.ErrNotFound)
	}
	old, ok := o.policies[id]
	switch {
	case !ok:
		return policy.Policy{}, fmt.Errorf("delete policy %s: %w", id, policy.ErrNotFound)
	case etag != "" && etag != old.Etag:
		return policy.Policy{}, fmt.Errorf("delete policy %s: %w", id, policy.ErrConflict)
	}
	tomb := old.Clone()
	tomb.Revision++
	tomb.Etag = policy.Etag(tomb, tomb.Revision)
	tomb.UpdateTime = now()
	tomb.UpdatedBy = updatedBy
	delete(o.policies, id)
	o.history[id] = append(o.history[id], policy.Revision{Policy: tomb, Deleted: true})
	o.version++
	return old.Clone(), nil
}

// GetPolicy implements policy.Store.
func (s *Store) GetPolicy(ctx context.Context, orgID, id string) (policy.Policy, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if o := s.orgs[orgID]; o != nil {
		if p, ok := o.policies[id]; ok {
			return p.Clone(), nil
		}
	}
	return policy.Policy{}, fmt.Errorf("get policy %s: %w", id, policy.ErrNotFound)
}

func (o *org) sorted() []policy.Policy {
	if o == nil {
		return nil
	}
	out := make([]policy.Policy, 0, len(o.policies))
	for _, p := range o.policies {
		out = append(out, p.Clone())
	}
	slices.SortFunc(out, func(a, b policy.Policy) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// ListPolicies implements policy.Store.
func (s *Store) ListPolicies(ctx context.Context, orgID string) ([]policy.Policy, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o := s.orgs[orgID]
	return o.sorted(), s.version(o), nil
}

// PagePolicies implements policy.Store.
func (s *Store) PagePolicies(ctx context.Context, orgID, after string, limit int) ([]policy.Policy, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := s.orgs[orgID].sorted()
	i := sort.Search(len(all), func(i int) bool { return all[i].ID > after })
	all = all[i:]
	return all[:min(limit, len(all))], nil
}

// ListRevisions implements policy.Store.
func (s *Store) ListRevisions(ctx context.Context, orgID, id string, before int64, limit int) ([]policy.Revision, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o := s.orgs[orgID]
	if o == nil || len(o.history[id]) == 0 {
		return nil, fmt.Errorf("list revisions of policy %s: %w", id, policy.ErrNotFound)
	}
	var out []policy.Revision
	h := o.history[id]
	for i := len(h) - 1; i >= 0 && len(out) < limit; i-- {
		if before == 0 || h[i].Policy.Revision < before {
			out = append(out, policy.Revision{Policy: h[i].Policy.Clone(), Deleted: h[i].Deleted})
		}
	}
	return out, nil
}

// Version implements policy.Store.
func (s *Store) Version(ctx context.Context, orgID string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.version(s.orgs[orgID]), nil
}
