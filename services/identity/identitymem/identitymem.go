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

type ref struct{ org, id string }

type accountRef struct {
	org  string
	kind identity.Kind
	id   string
}

// Store is an identity.Store in memory. The zero value is not usable; call New.
type Store struct {
	mu       sync.RWMutex
	keys     map[ref]identity.APIKey
	byHash   map[[32]byte]ref
	orgs     map[string]identity.Organization
	teams    map[ref]identity.Team
	accounts map[accountRef]identity.Account
	roles    map[ref]identity.Role
	// licenses holds each team's acceptances by (organisation, team), sorted by key, so that
	// an authentication reads only its team's, already in order.
	licenses map[ref][]identity.LicenseAcceptance
	// revocations is published to with mu held, so subscribers see revocations in the
	// order they were recorded.
	revocations identity.Broadcaster
}

var _ identity.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store {
	return &Store{
		keys: map[ref]identity.APIKey{}, byHash: map[[32]byte]ref{},
		orgs: map[string]identity.Organization{}, teams: map[ref]identity.Team{},
		accounts: map[accountRef]identity.Account{}, roles: map[ref]identity.Role{},
		licenses: map[ref][]identity.LicenseAcceptance{},
	}
}

// PutAPIKey implements identity.Store.
func (s *Store) PutAPIKey(ctx context.Context, k identity.APIKey) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("put api key: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := ref{k.OrganizationID, k.ID}
	k = normalizeKey(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if other, ok := s.byHash[k.Hash]; ok && other != r {
		return fmt.Errorf("put api key %s: %w", k.ID, identity.ErrAlreadyExists)
	}
	if owner, ok := s.accounts[accountRef{k.OrganizationID, k.Kind, k.OwnerID()}]; ok {
		k.TeamID = owner.TeamID
	}
	var oldRevoke time.Time
	if old, ok := s.keys[r]; ok {
		k.CreateTime = old.CreateTime
		k.RevokeTime = earliest(old.RevokeTime, k.RevokeTime)
		oldRevoke = old.RevokeTime
		delete(s.byHash, old.Hash)
	}
	s.keys[r] = k
	s.byHash[k.Hash] = r
	s.revoked(k, oldRevoke)
	return nil
}

// CreateAPIKey implements identity.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k identity.APIKey, requireOwner bool) error {
	if err := k.Validate(); err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r := ref{k.OrganizationID, k.ID}
	k = normalizeKey(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if requireOwner {
		owner, ok := s.accounts[accountRef{k.OrganizationID, k.Kind, k.OwnerID()}]
		switch {
		case !ok || (k.TeamID != "" && owner.TeamID != k.TeamID):
			return fmt.Errorf("create api key %s: %w", k.ID, &identity.OwnerError{Kind: k.Kind, ID: k.OwnerID(), TeamID: k.TeamID})
		case owner.Disabled:
			return fmt.Errorf("create api key %s: %w", k.ID, &identity.OwnerError{Kind: k.Kind, ID: k.OwnerID(), Disabled: true})
		}
		k.TeamID = owner.TeamID
	}
	if _, ok := s.keys[r]; ok {
		return fmt.Errorf("create api key: %w", &identity.AlreadyExistsError{Resource: identity.ResourceAPIKey, ID: k.ID})
	}
	if _, ok := s.byHash[k.Hash]; ok {
		return fmt.Errorf("create api key %s: %w", k.ID, identity.ErrAlreadyExists)
	}
	s.keys[r] = k
	s.byHash[k.Hash] = r
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

// GetCredential implements identity.Store. It is not scoped by organisation: see
// identity.Store.
func (s *Store) GetCredential(ctx context.Context, hash [32]byte) (identity.Credential, error) {
	if err := ctx.Err(); err != nil {
		return identity.Credential{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.byHash[hash]
	if !ok {
		return identity.Credential{}, fmt.Errorf("get api key by hash: %w", identity.ErrNotFound)
	}
	c := identity.Credential{Key: cloneKey(s.keys[r])}
	team, roles := c.Key.TeamID, c.Key.Roles
	if owner, ok := s.accounts[accountRef{r.org, c.Key.Kind, c.Key.OwnerID()}]; ok {
		owner = cloneAccount(owner)
		c.Owner = &owner
		team, roles = owner.TeamID, owner.Roles
	}
	c.Grants = s.grants(r.org, team, roles)
	return c, nil
}

// Grants implements identity.Store.
func (s *Store) Grants(ctx context.Context, org, team string, roles []string) (identity.Grants, error) {
	if err := ctx.Err(); err != nil {
		return identity.Grants{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.grants(org, team, roles), nil
}

// grants reads what team and roles give in org. s.mu is held.
func (s *Store) grants(org, team string, roles []string) identity.Grants {
	var g identity.Grants
	for _, id := range roles {
		if r, ok := s.roles[ref{org, id}]; ok {
			g.CustomRoles = append(g.CustomRoles, cloneRole(r))
		}
	}
	if team == "" {
		return g
	}
	if t, ok := s.teams[ref{org, team}]; ok {
		g.TeamAttributes = maps.Clone(t.Attributes)
	}
	g.Licenses = cloneSlice(s.licenses[ref{org, team}])
	return g
}

// GetAPIKey implements identity.Store.
func (s *Store) GetAPIKey(ctx context.Context, org, id string) (identity.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return identity.APIKey{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	k, ok := s.keys[ref{org, id}]
	if !ok {
		return identity.APIKey{}, &identity.NotFoundError{Resource: identity.ResourceAPIKey, ID: id}
	}
	return cloneKey(k), nil
}

// ListAPIKeys implements identity.Store.
func (s *Store) ListAPIKeys(ctx context.Context, org, team string, page identity.Page) ([]identity.APIKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return list(s.keys, org, page, func(k identity.APIKey) bool { return team == "" || k.TeamID == team }, cloneKey), nil
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
	r := ref{org, id}
	k, ok := s.keys[r]
	if !ok {
		return &identity.NotFoundError{Resource: identity.ResourceAPIKey, ID: id}
	}
	s.revoke(r, k, at)
	return nil
}

// revoke moves k's revocation to at unless it is earlier already. s.mu is held.
func (s *Store) revoke(r ref, k identity.APIKey, at time.Time) {
	before := k.RevokeTime
	k.RevokeTime = earliest(k.RevokeTime, identity.NormTime(at))
	s.keys[r] = k
	s.revoked(k, before)
}

// CreateOrganization implements identity.Store.
func (s *Store) CreateOrganization(ctx context.Context, o identity.Organization) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("create organization: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.orgs[o.ID]; ok {
		return &identity.AlreadyExistsError{Resource: identity.ResourceOrganization, ID: o.ID}
	}
	s.orgs[o.ID] = normalizeOrg(o)
	return nil
}

// GetOrganization implements identity.Store.
func (s *Store) GetOrganization(ctx context.Context, id string) (identity.Organization, error) {
	if err := ctx.Err(); err != nil {
		return identity.Organization{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.orgs[id]
	if !ok {
		return identity.Organization{}, &identity.NotFoundError{Resource: identity.ResourceOrganization, ID: id}
	}
	return o, nil
}

// UpdateOrganization implements identity.Store.
func (s *Store) UpdateOrganization(ctx context.Context, id string, fn func(identity.Organization) (identity.Organization, error)) (before, after identity.Organization, err error) {
	if err := ctx.Err(); err != nil {
		return before, after, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.orgs[id]
	if !ok {
		return before, after, &identity.NotFoundError{Resource: identity.ResourceOrganization, ID: id}
	}
	next, err := fn(cur)
	if err != nil {
		return before, after, err
	}
	next.ID = id
	if err := next.Validate(); err != nil {
		return before, after, fmt.Errorf("update organization: %w", err)
	}
	next = normalizeOrg(next)
	s.orgs[id] = next
	return cur, next, nil
}

// CreateTeam implements identity.Store.
func (s *Store) CreateTeam(ctx context.Context, t identity.Team) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("create team: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{t.OrganizationID, t.ID}
	if _, ok := s.teams[r]; ok {
		return &identity.AlreadyExistsError{Resource: identity.ResourceTeam, ID: t.ID}
	}
	s.teams[r] = normalizeTeam(t)
	return nil
}

// GetTeam implements identity.Store.
func (s *Store) GetTeam(ctx context.Context, org, id string) (identity.Team, error) {
	if err := ctx.Err(); err != nil {
		return identity.Team{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.teams[ref{org, id}]
	if !ok {
		return identity.Team{}, &identity.NotFoundError{Resource: identity.ResourceTeam, ID: id}
	}
	return normalizeTeam(t), nil
}

// ListTeams implements identity.Store.
func (s *Store) ListTeams(ctx context.Context, org string, page identity.Page) ([]identity.Team, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return list(s.teams, org, page, func(identity.Team) bool { return true }, normalizeTeam), nil
}

// UpdateTeam implements identity.Store.
func (s *Store) UpdateTeam(ctx context.Context, org, id string, fn func(identity.Team) (identity.Team, error)) (before, after identity.Team, err error) {
	if err := ctx.Err(); err != nil {
		return before, after, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{org, id}
	cur, ok := s.teams[r]
	if !ok {
		return before, after, &identity.NotFoundError{Resource: identity.ResourceTeam, ID: id}
	}
	next, err := fn(normalizeTeam(cur))
	if err != nil {
		return before, after, err
	}
	next.OrganizationID, next.ID = org, id
	if err := next.Validate(); err != nil {
		return before, after, fmt.Errorf("update team: %w", err)
	}
	next = normalizeTeam(next)
	s.teams[r] = next
	return normalizeTeam(cur), normalizeTeam(next), nil
}

// DeleteTeam implements identity.Store.
func (s *Store) DeleteTeam(ctx context.Context, org, id string, check func(identity.Team) error) (identity.Team, error) {
	if err := ctx.Err(); err != nil {
		return identity.Team{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{org, id}
	cur, ok := s.teams[r]
	if !ok {
		return identity.Team{}, &identity.NotFoundError{Resource: identity.ResourceTeam, ID: id}
	}
	if err := check(normalizeTeam(cur)); err != nil {
		return identity.Team{}, err
	}
	if held := s.holders(org, func(a identity.Account) bool { return a.TeamID == id }); len(held) > 0 {
		return identity.Team{}, &identity.InUseError{Resource: identity.ResourceTeam, ID: id, HeldBy: held}
	}
	delete(s.teams, r)
	return cur, nil
}

// holders returns the subjects of org's accounts that match, sorted, at most
// identity.MaxHolders. s.mu is held.
func (s *Store) holders(org string, match func(identity.Account) bool) []string {
	var out []string
	for ar, a := range s.accounts {
		if ar.org == org && match(a) {
			out = append(out, a.Subject())
		}
	}
	slices.Sort(out)
	return out[:min(len(out), identity.MaxHolders)]
}

// CreateAccount implements identity.Store.
func (s *Store) CreateAccount(ctx context.Context, a identity.Account) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("create %s: %w", a.Kind, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkRefs(a); err != nil {
		return err
	}
	r := accountRef{a.OrganizationID, a.Kind, a.ID}
	if _, ok := s.accounts[r]; ok {
		return &identity.AlreadyExistsError{Resource: identity.AccountResource(a.Kind), ID: a.ID}
	}
	s.accounts[r] = normalizeAccount(a)
	return nil
}

// checkRefs returns a *ValidationError for a team or custom role of a that is not stored.
// s.mu is held.
func (s *Store) checkRefs(a identity.Account) error {
	var missing identity.MissingRefs
	if a.TeamID != "" {
		if _, ok := s.teams[ref{a.OrganizationID, a.TeamID}]; !ok {
			missing.Team = true
		}
	}
	for i, r := range a.Roles {
		if _, builtin := identity.BuiltinRoles[r]; builtin {
			continue
		}
		if _, ok := s.roles[ref{a.OrganizationID, r}]; !ok {
			missing.Roles = append(missing.Roles, i)
		}
	}
	return missing.Err(a)
}

// GetAccount implements identity.Store.
func (s *Store) GetAccount(ctx context.Context, org string, kind identity.Kind, id string) (identity.Account, error) {
	if err := ctx.Err(); err != nil {
		return identity.Account{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.accounts[accountRef{org, kind, id}]
	if !ok {
		return identity.Account{}, &identity.NotFoundError{Resource: identity.AccountResource(kind), ID: id}
	}
	return cloneAccount(a), nil
}

// ListAccounts implements identity.Store.
func (s *Store) ListAccounts(ctx context.Context, org string, kind identity.Kind, page identity.Page) ([]identity.Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []identity.Account
	for ar, a := range s.accounts {
		if ar.org == org && ar.kind == kind && ar.id > page.After {
			out = append(out, cloneAccount(a))
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b identity.Account) int { return strings.Compare(a.ID, b.ID) })
	return out[:min(len(out), page.Limit)], nil
}

// UpdateAccount implements identity.Store.
func (s *Store) UpdateAccount(ctx context.Context, org string, kind identity.Kind, id string, fn func(identity.Account) (identity.Account, error)) (before, after identity.Account, err error) {
	if err := ctx.Err(); err != nil {
		return before, after, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := accountRef{org, kind, id}
	cur, ok := s.accounts[r]
	if !ok {
		return before, after, &identity.NotFoundError{Resource: identity.AccountResource(kind), ID: id}
	}
	next, err := fn(cloneAccount(cur))
	if err != nil {
		return before, after, err
	}
	next.OrganizationID, next.Kind, next.ID = org, kind, id
	if err := next.Validate(); err != nil {
		return before, after, fmt.Errorf("update %s: %w", kind, err)
	}
	if err := s.checkRefs(next); err != nil {
		return before, after, err
	}
	next = normalizeAccount(next)
	s.accounts[r] = next
	for kr, k := range s.keys {
		if kr.org == org && k.Kind == kind && k.OwnerID() == id {
			k.TeamID = next.TeamID
			s.keys[kr] = k
		}
	}
	return cloneAccount(cur), cloneAccount(next), nil
}

// DeleteAccount implements identity.Store.
func (s *Store) DeleteAccount(ctx context.Context, org string, kind identity.Kind, id string, at time.Time, check func(identity.Account) error) (identity.Account, error) {
	if at.IsZero() {
		return identity.Account{}, &identity.ValidationError{Field: "revoke_time", Problem: "is required"}
	}
	if err := ctx.Err(); err != nil {
		return identity.Account{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := accountRef{org, kind, id}
	cur, ok := s.accounts[r]
	if !ok {
		return identity.Account{}, &identity.NotFoundError{Resource: identity.AccountResource(kind), ID: id}
	}
	if err := check(cloneAccount(cur)); err != nil {
		return identity.Account{}, err
	}
	delete(s.accounts, r)
	for kr, k := range s.keys {
		if kr.org == org && k.Kind == kind && k.OwnerID() == id {
			s.revoke(kr, k, at)
		}
	}
	return cur, nil
}

// CreateRole implements identity.Store.
func (s *Store) CreateRole(ctx context.Context, ro identity.Role) error {
	if err := ro.Validate(); err != nil {
		return fmt.Errorf("create role: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{ro.OrganizationID, ro.ID}
	if _, ok := s.roles[r]; ok {
		return &identity.AlreadyExistsError{Resource: identity.ResourceRole, ID: ro.ID}
	}
	s.roles[r] = normalizeRole(ro)
	return nil
}

// GetRole implements identity.Store.
func (s *Store) GetRole(ctx context.Context, org, id string) (identity.Role, error) {
	if err := ctx.Err(); err != nil {
		return identity.Role{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	ro, ok := s.roles[ref{org, id}]
	if !ok {
		return identity.Role{}, &identity.NotFoundError{Resource: identity.ResourceRole, ID: id}
	}
	return cloneRole(ro), nil
}

// ListRoles implements identity.Store.
func (s *Store) ListRoles(ctx context.Context, org string, page identity.Page) ([]identity.Role, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return list(s.roles, org, page, func(identity.Role) bool { return true }, cloneRole), nil
}

// UpdateRole implements identity.Store.
func (s *Store) UpdateRole(ctx context.Context, org, id string, fn func(identity.Role) (identity.Role, error)) (before, after identity.Role, err error) {
	if err := ctx.Err(); err != nil {
		return before, after, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{org, id}
	cur, ok := s.roles[r]
	if !ok {
		return before, after, &identity.NotFoundError{Resource: identity.ResourceRole, ID: id}
	}
	next, err := fn(cloneRole(cur))
	if err != nil {
		return before, after, err
	}
	next.OrganizationID, next.ID = org, id
	if err := next.Validate(); err != nil {
		return before, after, fmt.Errorf("update role: %w", err)
	}
	next = normalizeRole(next)
	s.roles[r] = next
	return cloneRole(cur), cloneRole(next), nil
}

// DeleteRole implements identity.Store.
func (s *Store) DeleteRole(ctx context.Context, org, id string, check func(identity.Role) error) (identity.Role, error) {
	if err := ctx.Err(); err != nil {
		return identity.Role{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{org, id}
	cur, ok := s.roles[r]
	if !ok {
		return identity.Role{}, &identity.NotFoundError{Resource: identity.ResourceRole, ID: id}
	}
	if err := check(cloneRole(cur)); err != nil {
		return identity.Role{}, err
	}
	if held := s.holders(org, func(a identity.Account) bool { return slices.Contains(a.Roles, id) }); len(held) > 0 {
		return identity.Role{}, &identity.InUseError{Resource: identity.ResourceRole, ID: id, HeldBy: held}
	}
	delete(s.roles, r)
	return cur, nil
}

// AcceptLicense implements identity.Store.
func (s *Store) AcceptLicense(ctx context.Context, a identity.LicenseAcceptance) (identity.LicenseAcceptance, bool, error) {
	if err := a.Validate(); err != nil {
		return identity.LicenseAcceptance{}, false, fmt.Errorf("accept license: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return identity.LicenseAcceptance{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{a.OrganizationID, a.TeamID}
	team := s.licenses[r]
	i, ok := slices.BinarySearchFunc(team, a.Key(), byKey)
	if ok {
		return team[i], true, nil
	}
	a.AcceptTime = identity.NormTime(a.AcceptTime)
	s.licenses[r] = slices.Insert(team, i, a)
	return a, false, nil
}

// ListLicenseAcceptances implements identity.Store.
func (s *Store) ListLicenseAcceptances(ctx context.Context, org string, page identity.LicensePage) ([]identity.LicenseAcceptance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	var out []identity.LicenseAcceptance
	for r, team := range s.licenses {
		if r.org != org || (page.TeamID != "" && r.id != page.TeamID) {
			continue
		}
		for _, a := range team {
			if page.After == nil || a.Key().Compare(*page.After) > 0 {
				out = append(out, a)
			}
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b identity.LicenseAcceptance) int { return a.Key().Compare(b.Key()) })
	return out[:min(len(out), page.Limit)], nil
}

// RevokeLicenseAcceptance implements identity.Store.
func (s *Store) RevokeLicenseAcceptance(ctx context.Context, org string, key identity.LicenseKey) (identity.LicenseAcceptance, error) {
	if err := ctx.Err(); err != nil {
		return identity.LicenseAcceptance{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := ref{org, key.TeamID}
	team := s.licenses[r]
	i, ok := slices.BinarySearchFunc(team, key, byKey)
	if !ok {
		return identity.LicenseAcceptance{}, &identity.NotFoundError{Resource: identity.ResourceLicenseAcceptance, ID: key.String()}
	}
	a := team[i]
	if len(team) == 1 {
		delete(s.licenses, r)
	} else {
		s.licenses[r] = slices.Delete(team, i, i+1)
	}
	return a, nil
}

// byKey orders acceptances by key, for binary search.
func byKey(a identity.LicenseAcceptance, k identity.LicenseKey) int { return a.Key().Compare(k) }

// list returns a page of the records of org in m that keep matches, cloned, by id.
func list[T any](m map[ref]T, org string, page identity.Page, keep func(T) bool, clone func(T) T) []T {
	var ids []string
	for r, v := range m {
		if r.org == org && r.id > page.After && keep(v) {
			ids = append(ids, r.id)
		}
	}
	slices.Sort(ids)
	ids = ids[:min(len(ids), page.Limit)]
	out := make([]T, len(ids))
	for i, id := range ids {
		out[i] = clone(m[ref{org, id}])
	}
	return out
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

// normalizeKey copies k's slices and map, so the caller cannot change the stored key, and
// normalises its times.
func normalizeKey(k identity.APIKey) identity.APIKey {
	k = cloneKey(k)
	k.ExpireTime = identity.NormTime(k.ExpireTime)
	k.RevokeTime = identity.NormTime(k.RevokeTime)
	k.CreateTime = identity.NormTime(k.CreateTime)
	return k
}

func cloneKey(k identity.APIKey) identity.APIKey {
	k.Scopes.Models = cloneSlice(k.Scopes.Models)
	k.Scopes.Operations = cloneSlice(k.Scopes.Operations)
	k.Roles = cloneSlice(k.Roles)
	k.Attributes = cloneMap(k.Attributes)
	return k
}

func normalizeOrg(o identity.Organization) identity.Organization {
	o.CreateTime, o.UpdateTime = identity.NormTime(o.CreateTime), identity.NormTime(o.UpdateTime)
	return o
}

func normalizeTeam(t identity.Team) identity.Team {
	t.Attributes = cloneMap(t.Attributes)
	t.CreateTime, t.UpdateTime = identity.NormTime(t.CreateTime), identity.NormTime(t.UpdateTime)
	return t
}

func normalizeAccount(a identity.Account) identity.Account {
	a = cloneAccount(a)
	a.CreateTime, a.UpdateTime = identity.NormTime(a.CreateTime), identity.NormTime(a.UpdateTime)
	return a
}

func cloneAccount(a identity.Account) identity.Account {
	a.Roles = cloneSlice(a.Roles)
	a.Attributes = cloneMap(a.Attributes)
	return a
}

func normalizeRole(r identity.Role) identity.Role {
	r = cloneRole(r)
	r.CreateTime, r.UpdateTime = identity.NormTime(r.CreateTime), identity.NormTime(r.UpdateTime)
	return r
}

func cloneRole(r identity.Role) identity.Role {
	r.Permissions = cloneSlice(r.Permissions)
	return r
}

// cloneSlice copies s, an empty slice becoming nil as Postgres returns it.
func cloneSlice[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return slices.Clone(s)
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
