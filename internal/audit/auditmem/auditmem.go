// Package auditmem is the in-memory audit store, the embedded default. Its records live as
// long as the process.
package auditmem

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/fmgate/fmgate/internal/audit"
)

type chainKey struct{ org, service string }

type chain struct {
	records  []audit.Event
	ids      map[string]bool
	headSeq  int64
	headHash audit.Hash
}

// Store is an audit.Store in memory. One mutex serialises appends; chains cannot fork.
type Store struct {
	mu     sync.RWMutex
	chains map[chainKey]*chain
}

var _ audit.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{chains: map[chainKey]*chain{}} }

// Append implements audit.Store.
func (s *Store) Append(ctx context.Context, events ...audit.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	norm := make([]audit.Event, len(events))
	for i, e := range events {
		n, err := audit.Normalize(e)
		if err != nil {
			return err
		}
		norm[i] = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Link into copies first, so that the call is all or nothing.
	staged := map[chainKey]*chain{}
	for _, e := range norm {
		k := chainKey{e.OrganizationID, e.Service}
		c := staged[k]
		if c == nil {
			old := s.chains[k]
			if old == nil {
				old = &chain{ids: map[string]bool{}}
			}
			c = &chain{headSeq: old.headSeq, headHash: old.headHash, ids: old.ids}
			staged[k] = c
		}
		if c.ids[e.ID] || slices.ContainsFunc(c.records, func(r audit.Event) bool { return r.ID == e.ID }) {
			continue
		}
		l := audit.Link(e, c.headSeq, c.headHash)
		c.records = append(c.records, l)
		c.headSeq, c.headHash = l.Sequence, l.Hash
	}
	for k, c := range staged {
		old := s.chains[k]
		if old == nil {
			old = &chain{ids: map[string]bool{}}
			s.chains[k] = old
		}
		for _, r := range c.records {
			old.records = append(old.records, r)
			old.ids[r.ID] = true
		}
		old.headSeq, old.headHash = c.headSeq, c.headHash
	}
	return nil
}

// List implements audit.Store.
func (s *Store) List(ctx context.Context, f audit.Filter, p audit.Page) ([]audit.Event, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	after, hasAfter, err := audit.DecodePageToken(p.Token)
	if err != nil {
		return nil, "", err
	}
	// Records keep microseconds; so do the bounds, as Postgres' timestamptz does.
	f.From, f.To = f.From.Truncate(time.Microsecond), f.To.Truncate(time.Microsecond)
	s.mu.RLock()
	var all []audit.Event
	for k, c := range s.chains {
		if k.org != f.OrganizationID || (f.Service != "" && k.service != f.Service) {
			continue
		}
		for _, r := range c.records {
			if matches(r, f) && (!hasAfter || after.Less(audit.CursorOf(r))) {
				all = append(all, clone(r))
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(all, func(a, b audit.Event) int {
		ca, cb := audit.CursorOf(a), audit.CursorOf(b)
		switch {
		case ca.Less(cb):
			return -1
		case cb.Less(ca):
			return 1
		}
		return 0
	})
	limit := p.Limit()
	if len(all) <= limit {
		return all, "", nil
	}
	all = all[:limit]
	return all, audit.EncodePageToken(audit.CursorOf(all[limit-1])), nil
}

func matches(r audit.Event, f audit.Filter) bool {
	return (f.Action == "" || r.Action == f.Action) &&
		(f.ActorSubject == "" || r.Actor.Subject == f.ActorSubject) &&
		(f.From.IsZero() || !r.Time.Before(f.From)) &&
		(f.To.IsZero() || r.Time.Before(f.To))
}

// Verify implements audit.Store.
func (s *Store) Verify(ctx context.Context, org, service string) (audit.Verification, error) {
	if err := ctx.Err(); err != nil {
		return audit.Verification{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var w audit.Verifier
	c := s.chains[chainKey{org, service}]
	if c == nil {
		return w.End(0, nil), nil
	}
	for _, r := range c.records {
		if !w.Next(r) {
			break
		}
	}
	return w.End(c.headSeq, c.headHash), nil
}

// Tamper changes the stored record seq of the chain (org, service) in place with mutate,
// bypassing the append-only contract, as an attacker with write access to the storage
// would. It exists for tests of Verify; it reports whether the record exists.
func (s *Store) Tamper(org, service string, seq int64, mutate func(*audit.Event)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.chains[chainKey{org, service}]; c != nil {
		for i := range c.records {
			if c.records[i].Sequence == seq {
				mutate(&c.records[i])
				return true
			}
		}
	}
	return false
}

// Remove deletes the stored record seq of the chain (org, service), bypassing the
// append-only contract. It exists for tests of Verify; it reports whether the record
// existed.
func (s *Store) Remove(org, service string, seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.chains[chainKey{org, service}]; c != nil {
		for i := range c.records {
			if c.records[i].Sequence == seq {
				c.records = slices.Delete(c.records, i, i+1)
				return true
			}
		}
	}
	return false
}

func clone(e audit.Event) audit.Event {
	e.Before = slices.Clone(e.Before)
	e.After = slices.Clone(e.After)
	e.Details = slices.Clone(e.Details)
	e.PrevHash = slices.Clone(e.PrevHash)
	e.Hash = slices.Clone(e.Hash)
	return e
}
