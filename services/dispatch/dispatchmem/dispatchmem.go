// Package dispatchmem is the in-memory dispatch credential store, the embedded default.
package dispatchmem

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fmgate/fmgate/services/dispatch"
)

// Store is a dispatch.CredentialStore in memory.
type Store struct {
	mu    sync.RWMutex
	creds map[string]map[string]entry // organisation → name → credential
}

type entry struct {
	sealed     []byte
	updateTime time.Time
}

var _ dispatch.CredentialStore = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{creds: map[string]map[string]entry{}} }

// PutSealed implements dispatch.CredentialStore.
func (s *Store) PutSealed(_ context.Context, org, name string, sealed []byte, now time.Time) (bool, error) {
	if err := dispatch.ValidateStoredCredential(org, name, sealed); err != nil {
		return false, fmt.Errorf("put credential %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byName := s.creds[org]
	if byName == nil {
		byName = map[string]entry{}
		s.creds[org] = byName
	}
	if old, ok := byName[name]; ok && bytes.Equal(old.sealed, sealed) {
		return false, nil
	}
	// Microseconds, as Postgres keeps them, so that both stores answer alike.
	byName[name] = entry{sealed: bytes.Clone(sealed), updateTime: now.UTC().Truncate(time.Microsecond)}
	return true, nil
}

// GetSealed implements dispatch.CredentialStore.
func (s *Store) GetSealed(_ context.Context, org, name string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.creds[org][name]
	if !ok {
		return nil, fmt.Errorf("get credential %s: %w", name, dispatch.ErrNotFound)
	}
	return bytes.Clone(e.sealed), nil
}

// ListCredentials implements dispatch.CredentialStore.
func (s *Store) ListCredentials(_ context.Context, org string) ([]dispatch.CredentialInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]dispatch.CredentialInfo, 0, len(s.creds[org]))
	for name, e := range s.creds[org] {
		out = append(out, dispatch.CredentialInfo{Name: name, UpdateTime: e.updateTime})
	}
	slices.SortFunc(out, func(a, b dispatch.CredentialInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteCredential implements dispatch.CredentialStore.
func (s *Store) DeleteCredential(_ context.Context, org, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.creds[org][name]; !ok {
		return fmt.Errorf("delete credential %s: %w", name, dispatch.ErrNotFound)
	}
	delete(s.creds[org], name)
	if len(s.creds[org]) == 0 {
		delete(s.creds, org)
	}
	return nil
}
