// Package registrymem is the embedded, in-memory registry store: the default when fmgate
// runs without Postgres.
package registrymem

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/fmgate/fmgate/services/registry"
)

type key struct{ org, name string }

// Store is an in-memory registry.Store, safe for concurrent use.
type Store struct {
	mu          sync.RWMutex
	models      map[key]registry.Model
	endpoints   map[key]registry.Endpoint
	hosting     map[key]registry.HostingRequest
	transitions map[key][]registry.Transition // by organization and model name, oldest first
}

var _ registry.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{models: map[key]registry.Model{}, endpoints: map[key]registry.Endpoint{},
		hosting: map[key]registry.HostingRequest{}, transitions: map[key][]registry.Transition{}}
}

func cloneModel(m registry.Model) registry.Model { return m.Clone() }

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

// CreateModel implements registry.Store.
func (s *Store) CreateModel(ctx context.Context, m registry.Model) error {
	if err := m.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{m.OrganizationID, m.Name}
	if _, ok := s.models[k]; ok {
		return &registry.AlreadyExistsError{Resource: registry.ResourceModel, Name: m.Name}
	}
	s.models[k] = cloneModel(m)
	return nil
}

// UpdateModel implements registry.Store.
func (s *Store) UpdateModel(ctx context.Context, org, name string, fn func(registry.Model) (registry.ModelChange, error)) (registry.Model, registry.Model, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{org, name}
	cur, ok := s.models[k]
	if !ok {
		return registry.Model{}, registry.Model{}, &registry.NotFoundError{Resource: registry.ResourceModel, Name: name}
	}
	change, err := fn(cloneModel(cur))
	if err != nil {
		return registry.Model{}, registry.Model{}, err
	}
	next := change.Model
	if err := checkSameKey(next.OrganizationID, next.Name, org, name, "name"); err != nil {
		return registry.Model{}, registry.Model{}, err
	}
	if err := next.Validate(); err != nil {
		return registry.Model{}, registry.Model{}, err
	}
	s.models[k] = cloneModel(next)
	if tr := change.Transition; tr != nil {
		t := *tr
		t.OrganizationID, t.Model = org, name
		s.transitions[k] = append(s.transitions[k], t)
	}
	return cloneModel(cur), cloneModel(next), nil
}

func checkSameKey(gotOrg, gotID, org, id, idField string) error {
	var vs []registry.Violation
	if gotOrg != org {
		vs = append(vs, registry.Violation{Field: "organization_id", Description: "cannot change"})
	}
	if gotID != id {
		vs = append(vs, registry.Violation{Field: idField, Description: "cannot change"})
	}
	if len(vs) > 0 {
		return &registry.ValidationError{Violations: vs}
	}
	return nil
}

// DeleteModel implements registry.Store.
func (s *Store) DeleteModel(ctx context.Context, org, name string, check func(registry.Model) error) (registry.Model, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{org, name}
	cur, ok := s.models[k]
	if !ok {
		return registry.Model{}, &registry.NotFoundError{Resource: registry.ResourceModel, Name: name}
	}
	if err := check(cloneModel(cur)); err != nil {
		return registry.Model{}, err
	}
	delete(s.models, k)
	return cloneModel(cur), nil
}

// ListTransitions implements registry.Store. A transition's page key is its position in the
// model's history.
func (s *Store) ListTransitions(ctx context.Context, org, name string, page registry.Page) ([]registry.Transition, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	start := 0
	if page.Token != "" {
		if _, err := fmt.Sscanf(after, "%d", &start); err != nil || start < 0 {
			return nil, "", registry.ErrInvalidPageToken
		}
	}
	s.mu.RLock()
	all := s.transitions[key{org, name}]
	var out []registry.Transition
	if start < len(all) {
		out = slices.Clone(all[start:])
	}
	s.mu.RUnlock()
	limit := page.Limit()
	if len(out) <= limit {
		return out, "", nil
	}
	return out[:limit], registry.EncodePageToken(fmt.Sprintf("%d", start+limit)), nil
}

// CreateEndpoint implements registry.Store.
func (s *Store) CreateEndpoint(ctx context.Context, e registry.Endpoint) error {
	if err := e.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{e.OrganizationID, e.ID}
	if _, ok := s.endpoints[k]; ok {
		return &registry.AlreadyExistsError{Resource: registry.ResourceEndpoint, Name: e.ID}
	}
	s.endpoints[k] = e
	return nil
}

// UpdateEndpoint implements registry.Store.
func (s *Store) UpdateEndpoint(ctx context.Context, org, id string, fn func(registry.Endpoint) (registry.Endpoint, error)) (registry.Endpoint, registry.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{org, id}
	cur, ok := s.endpoints[k]
	if !ok {
		return registry.Endpoint{}, registry.Endpoint{}, &registry.NotFoundError{Resource: registry.ResourceEndpoint, Name: id}
	}
	next, err := fn(cur)
	if err != nil {
		return registry.Endpoint{}, registry.Endpoint{}, err
	}
	if err := checkSameKey(next.OrganizationID, next.ID, org, id, "id"); err != nil {
		return registry.Endpoint{}, registry.Endpoint{}, err
	}
	if err := next.Validate(); err != nil {
		return registry.Endpoint{}, registry.Endpoint{}, err
	}
	s.endpoints[k] = next
	return cur, next, nil
}

// DeleteEndpoint implements registry.Store.
func (s *Store) DeleteEndpoint(ctx context.Context, org, id string, check func(registry.Endpoint) error) (registry.Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{org, id}
	cur, ok := s.endpoints[k]
	if !ok {
		return registry.Endpoint{}, &registry.NotFoundError{Resource: registry.ResourceEndpoint, Name: id}
	}
	if err := check(cur); err != nil {
		return registry.Endpoint{}, err
	}
	delete(s.endpoints, k)
	return cur, nil
}

// CreateHostingRequest implements registry.Store.
func (s *Store) CreateHostingRequest(ctx context.Context, h registry.HostingRequest) error {
	if err := h.ValidateNew(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{h.OrganizationID, h.ID}
	if _, ok := s.hosting[k]; ok {
		return &registry.AlreadyExistsError{Resource: registry.ResourceHostingRequest, Name: h.ID}
	}
	s.hosting[k] = h
	return nil
}

// GetHostingRequest implements registry.Store.
func (s *Store) GetHostingRequest(ctx context.Context, org, id string) (registry.HostingRequest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.hosting[key{org, id}]
	if !ok {
		return registry.HostingRequest{}, &registry.NotFoundError{Resource: registry.ResourceHostingRequest, Name: id}
	}
	return h, nil
}

// ListHostingRequests implements registry.Store.
func (s *Store) ListHostingRequests(ctx context.Context, org string, filter registry.HostingFilter, page registry.Page) ([]registry.HostingRequest, string, error) {
	after, err := registry.DecodePageToken(page.Token)
	if err != nil {
		return nil, "", err
	}
	s.mu.RLock()
	var all []registry.HostingRequest
	for k, h := range s.hosting {
		if k.org == org && (page.Token == "" || k.name > after) && filter.Match(h) {
			all = append(all, h)
		}
	}
	s.mu.RUnlock()
	return paginate(all, page.Limit(), func(h registry.HostingRequest) string { return h.ID })
}

// UpdateHostingRequest implements registry.Store.
func (s *Store) UpdateHostingRequest(ctx context.Context, org, id string, fn func(registry.HostingRequest) (registry.HostingRequest, error)) (registry.HostingRequest, registry.HostingRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{org, id}
	cur, ok := s.hosting[k]
	if !ok {
		return registry.HostingRequest{}, registry.HostingRequest{}, &registry.NotFoundError{Resource: registry.ResourceHostingRequest, Name: id}
	}
	next, err := fn(cur)
	if err != nil {
		return registry.HostingRequest{}, registry.HostingRequest{}, err
	}
	if err := checkSameKey(next.OrganizationID, next.ID, org, id, "id"); err != nil {
		return registry.HostingRequest{}, registry.HostingRequest{}, err
	}
	if err := next.ValidateUpdate(cur); err != nil {
		return registry.HostingRequest{}, registry.HostingRequest{}, err
	}
	s.hosting[k] = next
	return cur, next, nil
}
