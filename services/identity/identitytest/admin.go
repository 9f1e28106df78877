package identitytest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/identity"
)

// The conformance cases of the administered records: organisations, teams, accounts,
// custom roles, licence acceptances, and how API keys follow their owners.

// NewAccount returns a valid account of organisation org, created at t0.
func NewAccount(org string, kind identity.Kind, id, team string, roles ...string) identity.Account {
	a := identity.Account{
		OrganizationID: org, Kind: kind, ID: id, DisplayName: "Account " + id, TeamID: team, Roles: roles,
		Attributes: map[string]string{"cost_centre": "cc-" + id}, CreateTime: t0, UpdateTime: t0,
	}
	if kind == identity.KindUser {
		a.Email = id + "@example.com"
	}
	return a
}

// NewTeam returns a valid team of organisation org, created at t0.
func NewTeam(org, id string) identity.Team {
	return identity.Team{OrganizationID: org, ID: id, DisplayName: "Team " + id,
		Attributes: map[string]string{"jurisdiction": "eu"}, CreateTime: t0, UpdateTime: t0}
}

// NewRole returns a valid custom role of organisation org, created at t0.
func NewRole(org, id string, scope identity.RoleScope, perms ...identity.Permission) identity.Role {
	return identity.Role{OrganizationID: org, ID: id, DisplayName: "Role " + id, Permissions: perms, Scope: scope,
		CreateTime: t0, UpdateTime: t0}
}

// ownedKey returns a key of org held by the account (kind, id), with no team of its own.
func ownedKey(t *testing.T, org, keyID string, kind identity.Kind, owner string) identity.APIKey {
	k, _ := NewKey(t, org, keyID, t0)
	k.Kind, k.Subject, k.TeamID, k.Roles, k.Attributes = kind, identity.Account{Kind: kind, ID: owner}.Subject(), "", nil, nil
	return k
}

func mustTeam(t *testing.T, s identity.Store, org, id string) {
	t.Helper()
	require.NoError(t, s.CreateTeam(t.Context(), NewTeam(org, id)))
}

func mustAccount(t *testing.T, s identity.Store, a identity.Account) {
	t.Helper()
	require.NoError(t, s.CreateAccount(t.Context(), a))
}

func fields(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if ve, ok := err.(*identity.ValidationError); ok {
			out = append(out, ve.Field)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

func testListKeysPages(t *testing.T, s identity.Store) {
	for i, id := range []string{"key-d", "key-a", "key-c", "key-b", "key-e"} {
		k, _ := NewKey(t, "org-a", id, t0)
		k.TeamID = []string{"red", "blue"}[i%2]
		put(t, s, k)
	}
	other, _ := NewKey(t, "org-b", "key-0", t0)
	put(t, s, other)

	page, err := s.ListAPIKeys(t.Context(), "org-a", "", identity.Page{Limit: 2})
	require.NoError(t, err)
	assert.Equal(t, []string{"key-a", "key-b"}, keyIDs(page))
	page, err = s.ListAPIKeys(t.Context(), "org-a", "", identity.Page{After: "key-b", Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, []string{"key-c", "key-d", "key-e"}, keyIDs(page))

	red, err := s.ListAPIKeys(t.Context(), "org-a", "red", all)
	require.NoError(t, err)
	assert.Equal(t, []string{"key-c", "key-d", "key-e"}, keyIDs(red), "only the team's keys")
	none, err := s.ListAPIKeys(t.Context(), "org-b", "red", all)
	require.NoError(t, err)
	assert.Empty(t, none)
}

func keyIDs(keys []identity.APIKey) []string {
	ids := []string{}
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}

func testOrganizations(t *testing.T, s identity.Store) {
	ctx := t.Context()
	o := identity.Organization{ID: "org-a", DisplayName: "Acme", CreateTime: t0, UpdateTime: t0}
	_, err := s.GetOrganization(ctx, "org-a")
	assert.ErrorIs(t, err, identity.ErrNotFound, "an organisation has no record until one is created")
	require.NoError(t, s.CreateOrganization(ctx, o))
	assert.ErrorIs(t, s.CreateOrganization(ctx, o), identity.ErrAlreadyExists)
	got, err := s.GetOrganization(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, o, got)
	assert.Equal(t, o.Etag(), got.Etag())

	before, after, err := s.UpdateOrganization(ctx, "org-a", func(cur identity.Organization) (identity.Organization, error) {
		cur.DisplayName, cur.UpdateTime = "Acme Bank", t0.Add(time.Hour)
		return cur, nil
	})
	require.NoError(t, err)
	assert.Equal(t, "Acme", before.DisplayName)
	assert.Equal(t, "Acme Bank", after.DisplayName)
	assert.NotEqual(t, before.Etag(), after.Etag())
	got, err = s.GetOrganization(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, after, got)

	_, _, err = s.UpdateOrganization(ctx, "org-b", func(cur identity.Organization) (identity.Organization, error) { return cur, nil })
	assert.ErrorIs(t, err, identity.ErrNotFound)
	assert.Contains(t, fields(s.CreateOrganization(ctx, identity.Organization{ID: "Bad Org", CreateTime: t0, UpdateTime: t0})), "organization_id")
}

func testTeams(t *testing.T, s identity.Store) {
	ctx := t.Context()
	for _, id := range []string{"team-c", "team-a", "team-b"} {
		mustTeam(t, s, "org-a", id)
	}
	assert.ErrorIs(t, s.CreateTeam(ctx, NewTeam("org-a", "team-a")), identity.ErrAlreadyExists)
	got, err := s.GetTeam(ctx, "org-a", "team-a")
	require.NoError(t, err)
	assert.Equal(t, NewTeam("org-a", "team-a"), got)

	page, err := s.ListTeams(ctx, "org-a", identity.Page{Limit: 2})
	require.NoError(t, err)
	require.Len(t, page, 2)
	assert.Equal(t, "team-a", page[0].ID)
	page, err = s.ListTeams(ctx, "org-a", identity.Page{After: "team-b", Limit: 2})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "team-c", page[0].ID)

	_, after, err := s.UpdateTeam(ctx, "org-a", "team-a", func(cur identity.Team) (identity.Team, error) {
		cur.Attributes = map[string]string{"handles_phi": "true"}
		cur.UpdateTime = t0.Add(time.Minute)
		return cur, nil
	})
	require.NoError(t, err)
	got, err = s.GetTeam(ctx, "org-a", "team-a")
	require.NoError(t, err)
	assert.Equal(t, after, got)
	assert.Equal(t, map[string]string{"handles_phi": "true"}, got.Attributes)

	deleted, err := s.DeleteTeam(ctx, "org-a", "team-c", func(identity.Team) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, "team-c", deleted.ID)
	_, err = s.GetTeam(ctx, "org-a", "team-c")
	assert.ErrorIs(t, err, identity.ErrNotFound)

	bad := NewTeam("org-a", "team-x")
	bad.Attributes = map[string]string{"": "empty name"}
	assert.Contains(t, fields(s.CreateTeam(ctx, bad)), "attributes")
}

func testTeamsCrossTenant(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	_, err := s.GetTeam(ctx, "org-b", "team-a")
	assert.ErrorIs(t, err, identity.ErrNotFound)
	teams, err := s.ListTeams(ctx, "org-b", all)
	require.NoError(t, err)
	assert.Empty(t, teams)
	_, _, err = s.UpdateTeam(ctx, "org-b", "team-a", func(cur identity.Team) (identity.Team, error) {
		cur.DisplayName = "stolen"
		return cur, nil
	})
	assert.ErrorIs(t, err, identity.ErrNotFound)
	_, err = s.DeleteTeam(ctx, "org-b", "team-a", func(identity.Team) error { return nil })
	assert.ErrorIs(t, err, identity.ErrNotFound)
	got, err := s.GetTeam(ctx, "org-a", "team-a")
	require.NoError(t, err)
	assert.Equal(t, "Team team-a", got.DisplayName)

	// An account of org B cannot join org A's team.
	err = s.CreateAccount(ctx, NewAccount("org-b", identity.KindUser, "mallory", "team-a"))
	assert.Contains(t, fields(err), "team_id")
	mustTeam(t, s, "org-b", "team-a") // The same id in another organisation is another team.
}

func testAccounts(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	alice := NewAccount("org-a", identity.KindUser, "alice", "team-a", identity.RoleDeveloper)
	mustAccount(t, s, alice)
	mustAccount(t, s, NewAccount("org-a", identity.KindUser, "bob", ""))
	// A service account may have a user's id: kinds are apart.
	bot := NewAccount("org-a", identity.KindServiceAccount, "alice", "", identity.RoleViewer)
	mustAccount(t, s, bot)
	assert.ErrorIs(t, s.CreateAccount(ctx, alice), identity.ErrAlreadyExists)

	got, err := s.GetAccount(ctx, "org-a", identity.KindUser, "alice")
	require.NoError(t, err)
	assert.Equal(t, alice, got)
	assert.Equal(t, alice.Etag(), got.Etag())
	got, err = s.GetAccount(ctx, "org-a", identity.KindServiceAccount, "alice")
	require.NoError(t, err)
	assert.Equal(t, bot, got)
	_, err = s.GetAccount(ctx, "org-b", identity.KindUser, "alice")
	assert.ErrorIs(t, err, identity.ErrNotFound)

	users, err := s.ListAccounts(ctx, "org-a", identity.KindUser, identity.Page{Limit: 1})
	require.NoError(t, err)
	require.Len(t, users, 1)
	assert.Equal(t, "alice", users[0].ID)
	users, err = s.ListAccounts(ctx, "org-a", identity.KindUser, identity.Page{After: "alice", Limit: 10})
	require.NoError(t, err)
	require.Len(t, users, 1)
	assert.Equal(t, "bob", users[0].ID)
	sas, err := s.ListAccounts(ctx, "org-a", identity.KindServiceAccount, all)
	require.NoError(t, err)
	assert.Len(t, sas, 1)
	others, err := s.ListAccounts(ctx, "org-b", identity.KindUser, all)
	require.NoError(t, err)
	assert.Empty(t, others)

	before, after, err := s.UpdateAccount(ctx, "org-a", identity.KindUser, "alice", func(cur identity.Account) (identity.Account, error) {
		cur.Disabled, cur.Roles, cur.Attributes = true, nil, nil
		cur.UpdateTime = t0.Add(time.Hour)
		return cur, nil
	})
	require.NoError(t, err)
	assert.Equal(t, alice, before)
	got, err = s.GetAccount(ctx, "org-a", identity.KindUser, "alice")
	require.NoError(t, err)
	assert.Equal(t, after, got)
	assert.True(t, got.Disabled)
	assert.Empty(t, got.Roles)

	invalid := NewAccount("org-a", identity.KindServiceAccount, "svc", "", "developer", "developer")
	invalid.Email = "svc@example.com"
	assert.ElementsMatch(t, []string{"email", "roles[1]"}, fields(s.CreateAccount(ctx, invalid)))
}

func testAccountRefs(t *testing.T, s identity.Store) {
	ctx := t.Context()
	a := NewAccount("org-a", identity.KindUser, "alice", "team-a", identity.RoleViewer, "clerk")
	err := s.CreateAccount(ctx, a)
	assert.ElementsMatch(t, []string{"team_id", "roles[1]"}, fields(err))
	assert.ErrorContains(t, err, `team "team-a" does not exist`)
	assert.ErrorContains(t, err, `role "clerk" does not exist`)
	_, err = s.GetAccount(ctx, "org-a", identity.KindUser, "alice")
	assert.ErrorIs(t, err, identity.ErrNotFound)

	mustTeam(t, s, "org-a", "team-a")
	require.NoError(t, s.CreateRole(ctx, NewRole("org-b", "clerk", identity.ScopeTeam, identity.PermEulaAccept)))
	assert.Equal(t, []string{"roles[1]"}, fields(s.CreateAccount(ctx, a)), "another organisation's role does not count")
	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "clerk", identity.ScopeTeam, identity.PermEulaAccept)))
	mustAccount(t, s, a)

	_, _, err = s.UpdateAccount(ctx, "org-a", identity.KindUser, "alice", func(cur identity.Account) (identity.Account, error) {
		cur.TeamID, cur.Roles = "team-z", []string{"ghost"}
		return cur, nil
	})
	assert.ElementsMatch(t, []string{"team_id", "roles[0]"}, fields(err))
	got, err := s.GetAccount(ctx, "org-a", identity.KindUser, "alice")
	require.NoError(t, err)
	assert.Equal(t, a, got, "a refused update changes nothing")
}

func testUpdateFailure(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "clerk", identity.ScopeTeam, identity.PermEulaAccept)))
	boom := errors.New("boom")
	_, _, err := s.UpdateTeam(ctx, "org-a", "team-a", func(cur identity.Team) (identity.Team, error) {
		cur.DisplayName = "changed"
		return cur, boom
	})
	assert.ErrorIs(t, err, boom)
	_, _, err = s.UpdateRole(ctx, "org-a", "clerk", func(cur identity.Role) (identity.Role, error) {
		cur.Permissions = []identity.Permission{"models.fly"}
		return cur, nil
	})
	assert.Contains(t, fields(err), "permissions")
	_, err = s.DeleteTeam(ctx, "org-a", "team-a", func(identity.Team) error { return boom })
	assert.ErrorIs(t, err, boom)
	team, err := s.GetTeam(ctx, "org-a", "team-a")
	require.NoError(t, err)
	assert.Equal(t, NewTeam("org-a", "team-a"), team)
	role, err := s.GetRole(ctx, "org-a", "clerk")
	require.NoError(t, err)
	assert.Equal(t, []identity.Permission{identity.PermEulaAccept}, role.Permissions)
}

func testDeleteTeamInUse(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	mustAccount(t, s, NewAccount("org-a", identity.KindUser, "alice", "team-a"))
	mustAccount(t, s, NewAccount("org-a", identity.KindServiceAccount, "bot", "team-a"))
	_, err := s.DeleteTeam(ctx, "org-a", "team-a", func(identity.Team) error { return nil })
	var inUse *identity.InUseError
	require.ErrorAs(t, err, &inUse)
	assert.Equal(t, []string{"svc:bot", "user:alice"}, inUse.HeldBy)
	_, err = s.GetTeam(ctx, "org-a", "team-a")
	require.NoError(t, err, "the team is still there")

	_, err = s.DeleteAccount(ctx, "org-a", identity.KindUser, "alice", t0, func(identity.Account) error { return nil })
	require.NoError(t, err)
	_, _, err = s.UpdateAccount(ctx, "org-a", identity.KindServiceAccount, "bot", func(cur identity.Account) (identity.Account, error) {
		cur.TeamID = ""
		return cur, nil
	})
	require.NoError(t, err)
	_, err = s.DeleteTeam(ctx, "org-a", "team-a", func(identity.Team) error { return nil })
	require.NoError(t, err)
}

func testRoles(t *testing.T, s identity.Store) {
	ctx := t.Context()
	r := NewRole("org-a", "clerk", identity.ScopeTeam, identity.PermEulaAccept, identity.PermModelsRead)
	require.NoError(t, s.CreateRole(ctx, r))
	assert.ErrorIs(t, s.CreateRole(ctx, r), identity.ErrAlreadyExists)
	got, err := s.GetRole(ctx, "org-a", "clerk")
	require.NoError(t, err)
	assert.Equal(t, r, got)
	assert.Equal(t, r.Etag(), got.Etag())
	_, err = s.GetRole(ctx, "org-b", "clerk")
	assert.ErrorIs(t, err, identity.ErrNotFound)
	_, err = s.GetRole(ctx, "org-a", identity.RoleViewer)
	assert.ErrorIs(t, err, identity.ErrNotFound, "the store holds custom roles only")

	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "auditor-lite", identity.ScopeOrganization, identity.PermAuditRead)))
	roles, err := s.ListRoles(ctx, "org-a", all)
	require.NoError(t, err)
	require.Len(t, roles, 2)
	assert.Equal(t, "auditor-lite", roles[0].ID)
	roles, err = s.ListRoles(ctx, "org-a", identity.Page{After: "auditor-lite", Limit: 5})
	require.NoError(t, err)
	require.Len(t, roles, 1)

	_, after, err := s.UpdateRole(ctx, "org-a", "clerk", func(cur identity.Role) (identity.Role, error) {
		cur.Scope, cur.Permissions = identity.ScopeOrganization, []identity.Permission{identity.PermKeysRead}
		return cur, nil
	})
	require.NoError(t, err)
	got, err = s.GetRole(ctx, "org-a", "clerk")
	require.NoError(t, err)
	assert.Equal(t, after, got)
	assert.Equal(t, identity.ScopeOrganization, got.Scope)

	_, err = s.DeleteRole(ctx, "org-a", "clerk", func(identity.Role) error { return nil })
	require.NoError(t, err)
	_, err = s.DeleteRole(ctx, "org-a", "clerk", func(identity.Role) error { return nil })
	assert.ErrorIs(t, err, identity.ErrNotFound)

	clash := NewRole("org-a", identity.RoleOrgAdmin, identity.ScopeOrganization, identity.PermModelsRead, identity.PermModelsRead)
	clash.Scope = ""
	assert.ElementsMatch(t, []string{"id", "scope", "permissions"}, fields(s.CreateRole(ctx, clash)))
}

func testDeleteRoleInUse(t *testing.T, s identity.Store) {
	ctx := t.Context()
	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "clerk", identity.ScopeTeam, identity.PermEulaAccept)))
	require.NoError(t, s.CreateRole(ctx, NewRole("org-b", "clerk", identity.ScopeTeam, identity.PermEulaAccept)))
	mustAccount(t, s, NewAccount("org-a", identity.KindUser, "alice", "", "clerk"))
	mustAccount(t, s, NewAccount("org-a", identity.KindServiceAccount, "bot", "", identity.RoleViewer, "clerk"))
	mustAccount(t, s, NewAccount("org-b", identity.KindUser, "zed", "", "clerk"))

	_, err := s.DeleteRole(ctx, "org-a", "clerk", func(identity.Role) error { return nil })
	var inUse *identity.InUseError
	require.ErrorAs(t, err, &inUse)
	assert.Equal(t, []string{"svc:bot", "user:alice"}, inUse.HeldBy, "holders of this organisation only")
	assert.ErrorContains(t, err, "user:alice")

	for _, a := range []struct {
		kind identity.Kind
		id   string
	}{{identity.KindUser, "alice"}, {identity.KindServiceAccount, "bot"}} {
		_, _, err := s.UpdateAccount(ctx, "org-a", a.kind, a.id, func(cur identity.Account) (identity.Account, error) {
			cur.Roles = nil
			return cur, nil
		})
		require.NoError(t, err)
	}
	_, err = s.DeleteRole(ctx, "org-a", "clerk", func(identity.Role) error { return nil })
	require.NoError(t, err)
	_, err = s.GetRole(ctx, "org-b", "clerk")
	require.NoError(t, err, "org B's role of the same id stays")
}

func testCreateKeyOwner(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	mustTeam(t, s, "org-a", "team-b")
	mustAccount(t, s, NewAccount("org-a", identity.KindUser, "alice", "team-a"))
	disabled := NewAccount("org-a", identity.KindServiceAccount, "old-bot", "")
	disabled.Disabled = true
	mustAccount(t, s, disabled)

	var oe *identity.OwnerError
	err := s.CreateAPIKey(ctx, ownedKey(t, "org-a", "k1", identity.KindUser, "nobody"), true)
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, "nobody", oe.ID)
	require.ErrorAs(t, s.CreateAPIKey(ctx, ownedKey(t, "org-b", "k1", identity.KindUser, "alice"), true), &oe,
		"another organisation's user is not an owner")
	require.ErrorAs(t, s.CreateAPIKey(ctx, ownedKey(t, "org-a", "k1", identity.KindServiceAccount, "alice"), true), &oe,
		"a user is not a service account")
	err = s.CreateAPIKey(ctx, ownedKey(t, "org-a", "k1", identity.KindServiceAccount, "old-bot"), true)
	require.ErrorAs(t, err, &oe)
	assert.True(t, oe.Disabled)
	inB := ownedKey(t, "org-a", "k1", identity.KindUser, "alice")
	inB.TeamID = "team-b"
	require.ErrorAs(t, s.CreateAPIKey(ctx, inB, true), &oe, "alice is not in team-b")
	assert.Equal(t, "team-b", oe.TeamID)
	keys, err := listKeys(ctx, s, "org-a")
	require.NoError(t, err)
	assert.Empty(t, keys, "no refused key was stored")

	inA := ownedKey(t, "org-a", "k1", identity.KindUser, "alice")
	inA.TeamID = "team-a"
	require.NoError(t, s.CreateAPIKey(ctx, inA, true))
	k2 := ownedKey(t, "org-a", "k2", identity.KindUser, "alice")
	require.NoError(t, s.CreateAPIKey(ctx, k2, true))
	got, err := s.GetAPIKey(ctx, "org-a", "k2")
	require.NoError(t, err)
	assert.Equal(t, "team-a", got.TeamID, "the key takes its owner's team")
	assert.Equal(t, "alice", got.OwnerID())
}

func testKeysFollowTeam(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	mustTeam(t, s, "org-a", "team-b")
	mustAccount(t, s, NewAccount("org-a", identity.KindUser, "alice", "team-a"))
	mustAccount(t, s, NewAccount("org-a", identity.KindServiceAccount, "alice", "team-a"))
	require.NoError(t, s.CreateAPIKey(ctx, ownedKey(t, "org-a", "user-key", identity.KindUser, "alice"), true))
	require.NoError(t, s.CreateAPIKey(ctx, ownedKey(t, "org-a", "svc-key", identity.KindServiceAccount, "alice"), true))
	// A seeded key whose owner is stored takes the owner's team too.
	seeded := ownedKey(t, "org-a", "seeded", identity.KindUser, "alice")
	seeded.TeamID = "team-z"
	put(t, s, seeded)

	_, _, err := s.UpdateAccount(ctx, "org-a", identity.KindUser, "alice", func(cur identity.Account) (identity.Account, error) {
		cur.TeamID = "team-b"
		return cur, nil
	})
	require.NoError(t, err)
	inB, err := s.ListAPIKeys(ctx, "org-a", "team-b", all)
	require.NoError(t, err)
	assert.Equal(t, []string{"seeded", "user-key"}, keyIDs(inB))
	inA, err := s.ListAPIKeys(ctx, "org-a", "team-a", all)
	require.NoError(t, err)
	assert.Equal(t, []string{"svc-key"}, keyIDs(inA), "the service account of the same id stays")
}

func testDeleteAccountRevokes(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustAccount(t, s, NewAccount("org-a", identity.KindUser, "alice", ""))
	mustAccount(t, s, NewAccount("org-b", identity.KindUser, "alice", ""))
	require.NoError(t, s.CreateAPIKey(ctx, ownedKey(t, "org-a", "k1", identity.KindUser, "alice"), true))
	require.NoError(t, s.CreateAPIKey(ctx, ownedKey(t, "org-b", "k1", identity.KindUser, "alice"), true))
	earlier := ownedKey(t, "org-a", "k0", identity.KindUser, "alice")
	earlier.RevokeTime = t0
	put(t, s, earlier)
	ch, err := s.SubscribeRevocations(ctx)
	require.NoError(t, err)

	at := t0.Add(time.Hour)
	_, err = s.DeleteAccount(ctx, "org-a", identity.KindUser, "alice", at, func(identity.Account) error { return errors.New("no") })
	require.Error(t, err)
	k, err := s.GetAPIKey(ctx, "org-a", "k1")
	require.NoError(t, err)
	assert.True(t, k.RevokeTime.IsZero(), "a refused delete revokes nothing")

	deleted, err := s.DeleteAccount(ctx, "org-a", identity.KindUser, "alice", at, func(identity.Account) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, "alice", deleted.ID)
	r := next(t, ch)
	assert.Equal(t, identity.Revocation{OrganizationID: "org-a", KeyID: "k1", RevokeTime: r.RevokeTime}, r)
	assertTime(t, at, r.RevokeTime, "revoke_time")
	k, err = s.GetAPIKey(ctx, "org-a", "k0")
	require.NoError(t, err)
	assertTime(t, t0, k.RevokeTime, "an earlier revocation stays")
	k, err = s.GetAPIKey(ctx, "org-b", "k1")
	require.NoError(t, err)
	assert.True(t, k.RevokeTime.IsZero(), "org B's alice keeps her key")
	_, err = s.DeleteAccount(ctx, "org-a", identity.KindUser, "alice", at, func(identity.Account) error { return nil })
	assert.ErrorIs(t, err, identity.ErrNotFound)
}

func testCredentialOwner(t *testing.T, s identity.Store) {
	ctx := t.Context()
	team := NewTeam("org-a", "team-a")
	team.Attributes = map[string]string{"jurisdiction": "eu", "handles_phi": "true"}
	require.NoError(t, s.CreateTeam(ctx, team))
	clerk := NewRole("org-a", "clerk", identity.ScopeTeam, identity.PermEulaAccept)
	require.NoError(t, s.CreateRole(ctx, clerk))
	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "unused", identity.ScopeTeam, identity.PermKeysRead)))
	alice := NewAccount("org-a", identity.KindUser, "alice", "team-a", identity.RoleViewer, "clerk")
	mustAccount(t, s, alice)
	k, secret := NewKey(t, "org-a", "k1", t0)
	k.Kind, k.Subject = identity.KindUser, "user:alice"
	require.NoError(t, s.CreateAPIKey(ctx, k, true))
	accepted := identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "team-a", Model: "llama-3",
		LicenseName: "Llama 3 Community", LicenseVersion: "1", AcceptedBy: "user:alice", AcceptTime: t0}
	_, _, err := s.AcceptLicense(ctx, accepted)
	require.NoError(t, err)
	_, _, err = s.AcceptLicense(ctx, identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "team-b", Model: "other",
		LicenseName: "x", LicenseVersion: "1", AcceptedBy: "user:bob", AcceptTime: t0})
	require.NoError(t, err)

	c, err := s.GetCredential(ctx, identity.HashKey(secret))
	require.NoError(t, err)
	assert.Equal(t, "k1", c.Key.ID)
	require.NotNil(t, c.Owner)
	assert.Equal(t, alice, *c.Owner)
	require.Len(t, c.Grants.CustomRoles, 1, "only the custom roles the owner holds")
	assert.Equal(t, "clerk", c.Grants.CustomRoles[0].ID)
	assert.Equal(t, clerk.Permissions, c.Grants.CustomRoles[0].Permissions)
	assert.Equal(t, identity.ScopeTeam, c.Grants.CustomRoles[0].Scope)
	assert.Equal(t, team.Attributes, c.Grants.TeamAttributes)
	require.Len(t, c.Grants.Licenses, 1, "only the owner's team's acceptances")
	assert.Equal(t, accepted, c.Grants.Licenses[0])

	// A disabled owner is still returned: Authenticate refuses it.
	_, _, err = s.UpdateAccount(ctx, "org-a", identity.KindUser, "alice", func(cur identity.Account) (identity.Account, error) {
		cur.Disabled, cur.TeamID, cur.Roles = true, "", nil
		return cur, nil
	})
	require.NoError(t, err)
	c, err = s.GetCredential(ctx, identity.HashKey(secret))
	require.NoError(t, err)
	require.NotNil(t, c.Owner)
	assert.True(t, c.Owner.Disabled)
	assert.Empty(t, c.Grants.CustomRoles)
	assert.Empty(t, c.Grants.Licenses, "no team, no acceptances")
	assert.Nil(t, c.Grants.TeamAttributes)
}

func testCredentialNoOwner(t *testing.T, s identity.Store) {
	ctx := t.Context()
	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "generate", identity.ScopeOrganization, identity.PermModelsUse)))
	k, secret := NewKey(t, "org-a", "seeded", t0) // Roles generate and read, team team-a.
	put(t, s, k)
	_, _, err := s.AcceptLicense(ctx, identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "team-a", Model: "m",
		LicenseName: "l", LicenseVersion: "2", AcceptedBy: "svc:seeded", AcceptTime: t0})
	require.NoError(t, err)
	c, err := s.GetCredential(ctx, identity.HashKey(secret))
	require.NoError(t, err)
	assert.Nil(t, c.Owner)
	require.Len(t, c.Grants.CustomRoles, 1, "the key's own roles")
	assert.Equal(t, "generate", c.Grants.CustomRoles[0].ID)
	require.Len(t, c.Grants.Licenses, 1, "the key's own team")
	assert.Nil(t, c.Grants.TeamAttributes, "team-a is not stored")
}

func testGrantsScoped(t *testing.T, s identity.Store) {
	ctx := t.Context()
	mustTeam(t, s, "org-a", "team-a")
	require.NoError(t, s.CreateRole(ctx, NewRole("org-a", "clerk", identity.ScopeTeam, identity.PermEulaAccept)))
	require.NoError(t, s.CreateRole(ctx, NewRole("org-b", "spy", identity.ScopeOrganization, identity.PermAuditRead)))
	for _, org := range []string{"org-a", "org-b"} {
		_, _, err := s.AcceptLicense(ctx, identity.LicenseAcceptance{OrganizationID: org, TeamID: "team-a", Model: "m-" + org,
			LicenseName: "l", LicenseVersion: "1", AcceptedBy: "user:x", AcceptTime: t0})
		require.NoError(t, err)
	}
	g, err := s.Grants(ctx, "org-a", "team-a", []string{"clerk", "spy", identity.RoleViewer, "ghost"})
	require.NoError(t, err)
	require.Len(t, g.CustomRoles, 1)
	assert.Equal(t, "clerk", g.CustomRoles[0].ID)
	require.Len(t, g.Licenses, 1)
	assert.Equal(t, "m-org-a", g.Licenses[0].Model)
	assert.Equal(t, map[string]string{"jurisdiction": "eu"}, g.TeamAttributes)

	g, err = s.Grants(ctx, "org-a", "", nil)
	require.NoError(t, err)
	assert.Equal(t, identity.Grants{}, g)
}

// testGrantsLicensesByKey: a team's acceptances come in key order whatever order they were
// accepted and revoked in.
func testGrantsLicensesByKey(t *testing.T, s identity.Store) {
	ctx := t.Context()
	accept := func(model, version string) identity.LicenseAcceptance {
		a := identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "team-a", Model: model, LicenseName: "l",
			LicenseVersion: version, AcceptedBy: "user:x", AcceptTime: t0}
		_, _, err := s.AcceptLicense(ctx, a)
		require.NoError(t, err)
		return a
	}
	b1, a2, a1, c1 := accept("b", "1"), accept("a", "2"), accept("a", "1"), accept("c", "1")
	g, err := s.Grants(ctx, "org-a", "team-a", nil)
	require.NoError(t, err)
	assert.Equal(t, []identity.LicenseAcceptance{a1, a2, b1, c1}, g.Licenses)

	_, err = s.RevokeLicenseAcceptance(ctx, "org-a", a2.Key())
	require.NoError(t, err)
	g, err = s.Grants(ctx, "org-a", "team-a", nil)
	require.NoError(t, err)
	assert.Equal(t, []identity.LicenseAcceptance{a1, b1, c1}, g.Licenses)
}

func testLicenses(t *testing.T, s identity.Store) {
	ctx := t.Context()
	a := identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "team-a", Model: "llama-3",
		LicenseName: "Llama 3 Community", LicenseVersion: "1", AcceptedBy: "user:alice", AcceptTime: t0}
	stored, existed, err := s.AcceptLicense(ctx, a)
	require.NoError(t, err)
	assert.False(t, existed)
	assert.Equal(t, a, stored)

	again := a
	again.AcceptedBy, again.AcceptTime = "user:bob", t0.Add(time.Hour)
	stored, existed, err = s.AcceptLicense(ctx, again)
	require.NoError(t, err)
	assert.True(t, existed, "accepting twice is harmless")
	assert.Equal(t, a, stored, "and keeps the first acceptance")

	v2 := a
	v2.LicenseVersion = "2"
	_, existed, err = s.AcceptLicense(ctx, v2)
	require.NoError(t, err)
	assert.False(t, existed, "a new version is a new acceptance")

	_, err = s.RevokeLicenseAcceptance(ctx, "org-b", a.Key())
	assert.ErrorIs(t, err, identity.ErrNotFound, "another organisation cannot revoke it")
	revoked, err := s.RevokeLicenseAcceptance(ctx, "org-a", a.Key())
	require.NoError(t, err)
	assert.Equal(t, a, revoked)
	_, err = s.RevokeLicenseAcceptance(ctx, "org-a", a.Key())
	assert.ErrorIs(t, err, identity.ErrNotFound)
	left, err := s.ListLicenseAcceptances(ctx, "org-a", identity.LicensePage{Limit: 10})
	require.NoError(t, err)
	assert.Equal(t, []identity.LicenseAcceptance{v2}, left)

	// Reported as stored: the time to the microsecond, truncated (not rounded), as listed.
	precise := a
	precise.Model, precise.AcceptTime = "precise", t0.Add(1500*time.Nanosecond)
	stored, _, err = s.AcceptLicense(ctx, precise)
	require.NoError(t, err)
	assert.Equal(t, t0.Add(time.Microsecond), stored.AcceptTime)
	listed, err := s.ListLicenseAcceptances(ctx, "org-a", identity.LicensePage{Limit: 10})
	require.NoError(t, err)
	assert.Contains(t, listed, stored)

	bad := identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "Team A"}
	_, _, err = s.AcceptLicense(ctx, bad)
	assert.ElementsMatch(t, []string{"team_id", "model", "license_name", "license_version", "accepted_by", "accept_time"}, fields(err))
}

func testLicensesPage(t *testing.T, s identity.Store) {
	ctx := t.Context()
	var want []identity.LicenseKey
	for _, team := range []string{"team-b", "team-a"} {
		for _, model := range []string{"m2", "m1"} {
			for _, v := range []string{"2", "1"} {
				a := identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: team, Model: model, LicenseName: "l",
					LicenseVersion: v, AcceptedBy: "user:x", AcceptTime: t0}
				_, _, err := s.AcceptLicense(ctx, a)
				require.NoError(t, err)
				want = append(want, a.Key())
			}
		}
	}
	_, _, err := s.AcceptLicense(ctx, identity.LicenseAcceptance{OrganizationID: "org-b", TeamID: "team-a", Model: "m1",
		LicenseName: "l", LicenseVersion: "1", AcceptedBy: "user:x", AcceptTime: t0})
	require.NoError(t, err)

	var got []identity.LicenseKey
	p := identity.LicensePage{Limit: 3}
	for range 10 {
		page, err := s.ListLicenseAcceptances(ctx, "org-a", p)
		require.NoError(t, err)
		for _, a := range page {
			assert.Equal(t, "org-a", a.OrganizationID)
			got = append(got, a.Key())
		}
		if len(page) < p.Limit {
			break
		}
		last := page[len(page)-1].Key()
		p.After = &last
	}
	require.Len(t, got, len(want))
	for i := 1; i < len(got); i++ {
		assert.Negative(t, got[i-1].Compare(got[i]), "ordered by team, model, name and version: %v", got)
	}
	assert.Equal(t, identity.LicenseKey{TeamID: "team-a", Model: "m1", LicenseName: "l", LicenseVersion: "1"}, got[0])

	teamB, err := s.ListLicenseAcceptances(ctx, "org-a", identity.LicensePage{TeamID: "team-b", Limit: 100})
	require.NoError(t, err)
	assert.Len(t, teamB, 4)
	for _, a := range teamB {
		assert.Equal(t, "team-b", a.TeamID, fmt.Sprint(a))
	}
}
