// Package registrymem is the embedded, in-memory registry store: the default when fmgate
// runs without Postgres.
package registrymem

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/fmgate/fmgate/services/registry"
)

type key struct{ org, name string }

// Store is an in-memory registry.Store, safe for concurrent use.
type Store struct {
	mu        sync.RWMutex
	models    map[key]registry.Model
	endpoints map[key]registry.Endpoint
}

var _ registry.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{models: map[key]registry.Model{}, endpoints: map[key]registry.Endpoint{}}
}

func cloneModel(m registry.Model) registry.Model {
	m.EndpointIDs = slices.Clone(m.EndpointIDs)
	m.FallbackModels = slices.Clone(m.FallbackModels)
	return m
}

// PutModel implements registry.Store.
func (s *Store) PutModel(ctx context.Context, m registry.Model) error {
	if err := m.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models[key{m.OrganizationID, m.Name}] = cloneModel(m)
	return nil
}

// GetModel implements registry.Store.
func (s *Store) GetModel(ctx context.Context, org, name string) (registry.Model, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.models[key{org, name}]
	if !ok {
		return registry.Model{}, &registry.NotFoundError{Resource: registry.ResourceModel, Name: name}
	}
	return cloneModel(m), nil
}

// ListModels implements registry.Store.
func (s *Store) ListModels(ctx context.Context, org string, filter registry.ModelFilter, page registry.Page) ([]registry.Model, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	s.mu.RLock()
	var all []registry.Model
	for k, m := range s.models {
		if k.org == org && (page.Token == "" || k.name > after) && filter.Match(m) {
			all = append(all, cloneModel(m))
		}
	}
	s.mu.RUnlock()
	return paginate(all, page.Limit(), func(m registry.Model) string { return m.Name })
}

// PutEndpoint implements registry.Store.
func (s *Store) PutEndpoint(ctx context.Context, e registry.Endpoint) error {
	if err := e.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints[key{e.OrganizationID, e.ID}] = e
	return nil
}

// GetEndpoint implements registry.Store.
func (s *Store) GetEndpoint(ctx context.Context, org, id string) (registry.Endpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.endpoints[key{org, id}]
	if !ok {
		return registry.Endpoint{}, &registry.NotFoundError{Resource: registry.ResourceEndpoint, Name: id}
	}
	return e, nil
}

// GetEndpoints implements registry.Store.
func (s *Store) GetEndpoints(ctx context.Context, org string, ids []string) ([]registry.Endpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]registry.Endpoint, 0, len(ids))
	for _, id := range ids {
		if e, ok := s.endpoints[key{org, id}]; ok {
			out = append(out, e)
		}
	}
	return out, nil
}

// ListEndpoints implements registry.Store.
func (s *Store) ListEndpoints(ctx context.Context, org string, page registry.Page) ([]registry.Endpoint, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	s.mu.RLock()
	var all []registry.Endpoint
	for k, e := range s.endpoints {
		if k.org == org && (page.Token == "" || k.name > after) {
			all = append(all, e)
		}
	}
	s.mu.RUnlock()
	return paginate(all, page.Limit(), func(e registry.Endpoint) string { return e.ID })
}

func paginate[T any](all []T, limit int, keyOf func(T) string) ([]T, string, error) {
	slices.SortFunc(all, func(a, b T) int { return cmp.Compare(keyOf(a), keyOf(b)) })
	if len(all) <= limit {
		return all, "", nil
	}
	all = all[:limit]
	return all, registry.EncodePageToken(keyOf(all[limit-1])), nil
}
