// Package identitymem is the embedded, in-memory identity.Store: the default when fmgate
// runs without Postgres.
package identitymem

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fmgate/fmgate/services/identity"
)

type keyRef struct{ org, id string }

// Store is an identity.Store in memory. The zero value is not usable; call New.
type Store struct {
	mu     sync.RWMutex
	keys   map[keyRef]identity.APIKey
	byHash map[[32]byte]keyRef
	// revocations is published to with mu held, so subscribers see revocations in the
	// order they were recorded.
	revocations identity.Broadcaster
}

var _ identity.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{keys: map[keyRef]identity.APIKey{}, byHash: map[[32]byte]keyRef{}}
}

// PutAPIKey implements identity.Store.
func (s *Store) PutAPIKey(ctx context.Context, k identity.APIKey) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ref := keyRef{k.OrganizationID, k.ID}
	k = normalize(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.byHash[k.Hash]; ok && other != ref {
		return fmt.Errorf("put api key %s: %w", k.ID, identity.ErrAlreadyExists)
	}
	var oldRevoke time.Time
	if old, ok := s.keys[ref]; ok {
		k.CreateTime = old.CreateTime
		k.RevokeTime = earliest(old.RevokeTime, k.RevokeTime)
		oldRevoke = old.RevokeTime
		delete(s.byHash, old.Hash)
	}
	s.keys[ref] = k
	s.byHash[k.Hash] = ref
	s.revoked(k, oldRevoke)
	return nil
}

// CreateAPIKey implements identity.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k identity.APIKey) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ref := keyRef{k.OrganizationID, k.ID}
	k = normalize(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keys[ref]; ok {
		return fmt.Errorf("create api key %s: %w", k.ID, identity.ErrAlreadyExists)
	}
	if _, ok := s.byHash[k.Hash]; ok {
		return fmt.Errorf("create api key %s: %w", k.ID, identity.ErrAlreadyExists)
	}
	s.keys[ref] = k
	s.byHash[k.Hash] = ref
	s.revoked(k, time.Time{})
	return nil
}

// SubscribeRevocations implements identity.Store: revocations recorded through this Store.
func (s *Store) SubscribeRevocations(ctx context.Context) (<-chan identity.Revocation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.revocations.Subscribe(ctx), nil
}

// revoked publishes k's revocation if it is new or earlier than before. s.mu is held.
func (s *Store) revoked(k identity.APIKey, before time.Time) {
	if k.RevokeTime.IsZero() || k.RevokeTime.Equal(before) {
		return
	}
	s.revocations.Publish(identity.Revocation{OrganizationID: k.OrganizationID, KeyID: k.ID, RevokeTime: k.RevokeTime})
}

// GetAPIKeyByHash implements identity.Store. It is not scoped by organisation: see
// identity.Store.
func (s *Store) GetAPIKeyByHash(ctx context.Context, hash [32]byte) (identity.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return identity.APIKey{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ref, ok := s.byHash[hash]
	if !ok {
		return identity.APIKey{}, fmt.Errorf("get api key by hash: %w", identity.ErrNotFound)
	}
	return clone(s.keys[ref]), nil
}

// GetAPIKey implements identity.Store.
func (s *Store) GetAPIKey(ctx context.Context, org, id string) (identity.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return identity.APIKey{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[keyRef{org, id}]
	if !ok {
		return identity.APIKey{}, fmt.Errorf("get api key %s: %w", id, identity.ErrNotFound)
	}
	return clone(k), nil
}

// ListAPIKeys implements identity.Store.
func (s *Store) ListAPIKeys(ctx context.Context, org string) ([]identity.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []identity.APIKey
	for ref, k := range s.keys {
		if ref.org == org {
			out = append(out, clone(k))
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b identity.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// RevokeAPIKey implements identity.Store.
func (s *Store) RevokeAPIKey(ctx context.Context, org, id string, at time.Time) error {
	if at.IsZero() {
		return fmt.Errorf("revoke api key %s: %w", id, &identity.ValidationError{Field: "revoke_time", Problem: "is required"})
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ref := keyRef{org, id}
	k, ok := s.keys[ref]
	if !ok {
		return fmt.Errorf("revoke api key %s: %w", id, identity.ErrNotFound)
	}
	before := k.RevokeTime
	k.RevokeTime = earliest(k.RevokeTime, normTime(at))
	s.keys[ref] = k
	s.revoked(k, before)
	return nil
}

// earliest returns the earlier of two times, a zero time counting as absent.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// normTime keeps what Postgres keeps of a time (UTC, microseconds), so that both stores
// return the same values.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// normalize copies k's slices and map, so the caller cannot change the stored key, and
// normalises its times.
func normalize(k identity.APIKey) identity.APIKey {
	k = clone(k)
	k.ExpireTime = normTime(k.ExpireTime)
	k.RevokeTime = normTime(k.RevokeTime)
	k.CreateTime = normTime(k.CreateTime)
	return k
}

func clone(k identity.APIKey) identity.APIKey {
	k.Scopes.Models = slices.Clone(k.Scopes.Models)
	if len(k.Scopes.Models) == 0 {
		k.Scopes.Models = nil
	}
	k.Scopes.Operations = slices.Clone(k.Scopes.Operations)
	if len(k.Scopes.Operations) == 0 {
		k.Scopes.Operations = nil
	}
	k.Roles = slices.Clone(k.Roles)
	if len(k.Roles) == 0 {
		k.Roles = nil
	}
	k.Attributes = maps.Clone(k.Attributes)
	if len(k.Attributes) == 0 {
		k.Attributes = nil
	}
	return k
}
