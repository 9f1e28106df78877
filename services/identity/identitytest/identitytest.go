// Package identitytest holds the conformance suite every identity.Store passes, and helpers
// for tests that need API keys.
package identitytest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/identity"
)

// NewKey returns a valid key of organisation org with id id, created at the given time, and
// its secret.
func NewKey(t testing.TB, org, id string, created time.Time) (identity.APIKey, string) {
	t.Helper()
	secret, err := identity.NewKey()
	require.NoError(t, err)
	return identity.APIKey{
		ID:             id,
		OrganizationID: org,
		DisplayName:    "key " + id,
		Subject:        "svc:" + id,
		Kind:           identity.KindServiceAccount,
		TeamID:         "team-a",
		Roles:          []string{"generate", "read"},
		Attributes:     map[string]string{"jurisdiction": "eu", "cost_centre": "cc-42"},
		Prefix:         identity.Prefix(secret),
		Hash:           identity.HashKey(secret),
		CreateTime:     created,
	}, secret
}

// TestStore runs the conformance suite against stores that newStore returns, one fresh,
// empty store per subtest.
func TestStore(t *testing.T, newStore func(t *testing.T) identity.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s identity.Store)
	}{
		{"PutThenGet", testPutThenGet},
		{"PutIsIdempotent", testPutIsIdempotent},
		{"PutSameKeyConcurrently", testPutSameKeyConcurrently},
		{"PutReplacesAndKeepsCreateTime", testPutReplaces},
		{"PutNeverUndoesRevocation", testPutKeepsRevocation},
		{"PutSameHashIsAlreadyExists", testPutSameHash},
		{"PutInvalid", testPutInvalid},
		{"GetByHash", testGetByHash},
		{"GetNotFound", testGetNotFound},
		{"List", testList},
		{"Revoke", testRevoke},
		{"CrossTenantRead", testCrossTenantRead},
		{"CrossTenantRevoke", testCrossTenantRevoke},
		{"CrossTenantSameID", testCrossTenantSameID},
		{"ReturnedKeysAreCopies", testReturnedKeysAreCopies},
		{"Concurrent", testConcurrent},
		{"ScopesRoundTrip", testScopes},
		{"Create", testCreate},
		{"CreateInvalid", testCreateInvalid},
		{"RevocationsDelivered", testRevocationsDelivered},
		{"RevocationsEndWithContext", testRevocationsEnd},
		{"ListAPIKeysPagesAndTeams", testListKeysPages},
		{"Organizations", testOrganizations},
		{"Teams", testTeams},
		{"TeamsCrossTenant", testTeamsCrossTenant},
		{"Accounts", testAccounts},
		{"AccountReferences", testAccountRefs},
		{"UpdateFailureChangesNothing", testUpdateFailure},
		{"DeleteTeamInUse", testDeleteTeamInUse},
		{"Roles", testRoles},
		{"DeleteRoleInUse", testDeleteRoleInUse},
		{"CreateAPIKeyRequiresOwner", testCreateKeyOwner},
		{"KeysFollowOwnerTeam", testKeysFollowTeam},
		{"DeleteAccountRevokesKeys", testDeleteAccountRevokes},
		{"CredentialWithOwner", testCredentialOwner},
		{"CredentialWithoutOwner", testCredentialNoOwner},
		{"GrantsAreScoped", testGrantsScoped},
		{"GrantsLicensesByKey", testGrantsLicensesByKey},
		{"Licenses", testLicenses},
		{"LicensesPageAndFilter", testLicensesPage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, newStore(t)) })
	}
}

// t0 has no sub-microsecond part, which Postgres would drop.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// assertKey compares keys as a user would: times by instant, nil and empty alike.
func assertKey(t *testing.T, want, got identity.APIKey) {
	t.Helper()
	assert.Equal(t, want.ID, got.ID)
	assert.Equal(t, want.OrganizationID, got.OrganizationID)
	assert.Equal(t, want.DisplayName, got.DisplayName)
	assert.Equal(t, want.Subject, got.Subject)
	assert.Equal(t, want.Kind, got.Kind)
	assert.Equal(t, want.TeamID, got.TeamID)
	assert.ElementsMatch(t, want.Roles, got.Roles)
	if len(want.Attributes) == 0 {
		assert.Empty(t, got.Attributes)
	} else {
		assert.Equal(t, want.Attributes, got.Attributes)
	}
	assert.Equal(t, want.Prefix, got.Prefix)
	assert.Equal(t, want.Hash, got.Hash)
	assertTime(t, want.ExpireTime, got.ExpireTime, "expire_time")
	assertTime(t, want.RevokeTime, got.RevokeTime, "revoke_time")
	assertTime(t, want.CreateTime, got.CreateTime, "create_time")
}

func assertTime(t *testing.T, want, got time.Time, name string) {
	t.Helper()
	assert.Truef(t, want.Equal(got), "%s: want %v, got %v", name, want, got)
}

// all is a page large enough for every record a test writes.
var all = identity.Page{Limit: 1000}

func listKeys(ctx context.Context, s identity.Store, org string) ([]identity.APIKey, error) {
	return s.ListAPIKeys(ctx, org, "", all)
}

func getByHash(s identity.Store, ctx context.Context, hash [32]byte) (identity.APIKey, error) {
	c, err := s.GetCredential(ctx, hash)
	return c.Key, err
}

func put(t *testing.T, s identity.Store, k identity.APIKey) {
	t.Helper()
	require.NoError(t, s.PutAPIKey(t.Context(), k))
}

func testPutThenGet(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	k.ExpireTime = t0.Add(90 * 24 * time.Hour)
	put(t, s, k)
	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertKey(t, k, got)

	// A minimal key: no team, roles, attributes or expiry.
	m, _ := NewKey(t, "org-a", "key-2", t0)
	m.TeamID, m.Roles, m.Attributes, m.DisplayName = "", nil, nil, ""
	m.Kind = identity.KindUser
	put(t, s, m)
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-2")
	require.NoError(t, err)
	assertKey(t, m, got)
}

func testPutIsIdempotent(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, k)
	put(t, s, k)
	keys, err := listKeys(t.Context(), s, "org-a")
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assertKey(t, k, keys[0])
}

// testPutSameKeyConcurrently puts one key from several callers at once, as replicas seeding
// the same resources file on one database do when they start together: every put succeeds.
func testPutSameKeyConcurrently(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "acme", "seeded", time.Now())
	for range 5 {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.PutAPIKey(t.Context(), k)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		k.ID += "-again"
		k, _ = NewKey(t, "acme", k.ID, time.Now())
	}
}

func testPutReplaces(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, k)

	// Rotate the secret and change the attributes under the same id.
	k2, _ := NewKey(t, "org-a", "key-1", t0.Add(time.Hour))
	k2.Roles = []string{"admin"}
	k2.Attributes = map[string]string{"jurisdiction": "us"}
	k2.Kind = identity.KindUser
	put(t, s, k2)

	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	want := k2
	want.CreateTime = k.CreateTime
	assertKey(t, want, got)

	_, err = getByHash(s, t.Context(), k.Hash)
	assert.ErrorIs(t, err, identity.ErrNotFound, "the replaced secret must stop working")
	byHash, err := getByHash(s, t.Context(), k2.Hash)
	require.NoError(t, err)
	assert.Equal(t, "key-1", byHash.ID)
}

func testPutKeepsRevocation(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, k)
	revoked := t0.Add(time.Hour)
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-a", "key-1", revoked))

	put(t, s, k) // k.RevokeTime is zero: re-applying must not bring the key back.
	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertTime(t, revoked, got.RevokeTime, "revoke_time")

	k.RevokeTime = t0.Add(30 * time.Minute) // An earlier revocation wins.
	put(t, s, k)
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertTime(t, k.RevokeTime, got.RevokeTime, "revoke_time")
}

func testPutSameHash(t *testing.T, s identity.Store) {
	a, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, a)

	sameOrg := a
	sameOrg.ID = "key-2"
	assert.ErrorIs(t, s.PutAPIKey(t.Context(), sameOrg), identity.ErrAlreadyExists)

	otherOrg := a
	otherOrg.OrganizationID = "org-b"
	assert.ErrorIs(t, s.PutAPIKey(t.Context(), otherOrg), identity.ErrAlreadyExists)

	keys, err := listKeys(t.Context(), s, "org-b")
	require.NoError(t, err)
	assert.Empty(t, keys)
	got, err := getByHash(s, t.Context(), a.Hash)
	require.NoError(t, err)
	assertKey(t, a, got)
}

func testPutInvalid(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	k.OrganizationID = ""
	k.Hash = [32]byte{}
	err := s.PutAPIKey(t.Context(), k)
	var ve *identity.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.ErrorContains(t, err, "organization_id")
	assert.ErrorContains(t, err, "hash")

	err = s.RevokeAPIKey(t.Context(), "org-a", "key-1", time.Time{})
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, "revoke_time", ve.Field)
}

func testGetByHash(t *testing.T, s identity.Store) {
	a, secretA := NewKey(t, "org-a", "key-1", t0)
	b, secretB := NewKey(t, "org-b", "key-1", t0)
	put(t, s, a)
	put(t, s, b)

	got, err := getByHash(s, t.Context(), identity.HashKey(secretA))
	require.NoError(t, err)
	assertKey(t, a, got)
	got, err = getByHash(s, t.Context(), identity.HashKey(secretB))
	require.NoError(t, err)
	assertKey(t, b, got)

	_, err = getByHash(s, t.Context(), identity.HashKey(secretA+"x"))
	assert.ErrorIs(t, err, identity.ErrNotFound)
}

func testGetNotFound(t *testing.T, s identity.Store) {
	_, err := s.GetAPIKey(t.Context(), "org-a", "missing")
	assert.ErrorIs(t, err, identity.ErrNotFound)
	assert.ErrorIs(t, s.RevokeAPIKey(t.Context(), "org-a", "missing", t0), identity.ErrNotFound)
	keys, err := listKeys(t.Context(), s, "org-a")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func testList(t *testing.T, s identity.Store) {
	for _, id := range []string{"key-c", "key-a", "key-b"} {
		k, _ := NewKey(t, "org-a", id, t0)
		put(t, s, k)
	}
	other, _ := NewKey(t, "org-b", "key-0", t0)
	put(t, s, other)
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-a", "key-b", t0))

	keys, err := listKeys(t.Context(), s, "org-a")
	require.NoError(t, err)
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
		assert.Equal(t, "org-a", k.OrganizationID)
	}
	assert.Equal(t, []string{"key-a", "key-b", "key-c"}, ids, "ordered by id, revoked included")
}

func testRevoke(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, k)
	at := t0.Add(2 * time.Hour)
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-a", "key-1", at))
	got, err := getByHash(s, t.Context(), k.Hash)
	require.NoError(t, err, "a revoked key is still found; Authenticate refuses it")
	assertTime(t, at, got.RevokeTime, "revoke_time")

	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-a", "key-1", at.Add(time.Hour)))
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertTime(t, at, got.RevokeTime, "a later revocation keeps the earlier time")

	earlier := at.Add(-time.Hour)
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-a", "key-1", earlier))
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertTime(t, earlier, got.RevokeTime, "an earlier revocation wins")
}

func testCrossTenantRead(t *testing.T, s identity.Store) {
	a, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, a)
	_, err := s.GetAPIKey(t.Context(), "org-b", "key-1")
	assert.ErrorIs(t, err, identity.ErrNotFound)
	keys, err := listKeys(t.Context(), s, "org-b")
	require.NoError(t, err)
	assert.Empty(t, keys)
}

func testCrossTenantRevoke(t *testing.T, s identity.Store) {
	a, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, a)
	assert.ErrorIs(t, s.RevokeAPIKey(t.Context(), "org-b", "key-1", t0), identity.ErrNotFound)
	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assert.True(t, got.RevokeTime.IsZero(), "org B must not revoke org A's key")
}

func testCrossTenantSameID(t *testing.T, s identity.Store) {
	a, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, a)
	b, _ := NewKey(t, "org-b", "key-1", t0.Add(time.Hour))
	b.Roles = []string{"admin"}
	put(t, s, b) // The same id in another organisation is another key.

	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertKey(t, a, got)
	got, err = s.GetAPIKey(t.Context(), "org-b", "key-1")
	require.NoError(t, err)
	assertKey(t, b, got)

	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-b", "key-1", t0))
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assert.True(t, got.RevokeTime.IsZero())
}

func testReturnedKeysAreCopies(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	put(t, s, k)
	k.Roles[0] = "changed-after-put"
	k.Attributes["jurisdiction"] = "changed-after-put"

	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	got.Roles[0] = "changed-after-get"
	got.Attributes["jurisdiction"] = "changed-after-get"

	again, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"generate", "read"}, again.Roles)
	assert.Equal(t, "eu", again.Attributes["jurisdiction"])
}

func testConcurrent(t *testing.T, s identity.Store) {
	const n = 8
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	keys := make([]identity.APIKey, n)
	for i := range keys {
		keys[i], _ = NewKey(t, "org-a", fmt.Sprintf("key-%d", i), t0)
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.PutAPIKey(ctx, keys[i])
			errs <- s.PutAPIKey(ctx, keys[i])
			_, err := getByHash(s, ctx, keys[i].Hash)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	got, err := listKeys(context.WithoutCancel(ctx), s, "org-a")
	require.NoError(t, err)
	assert.Len(t, got, n)
}

func testScopes(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	k.Scopes = identity.Scopes{Models: []string{"gpt-*", "claude-3"}, Operations: []identity.Operation{identity.OperationGenerate, identity.OperationEmbed}}
	put(t, s, k)
	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assert.Equal(t, k.Scopes, got.Scopes)
	byHash, err := getByHash(s, t.Context(), k.Hash)
	require.NoError(t, err)
	assert.Equal(t, k.Scopes, byHash.Scopes)

	k.Scopes = identity.Scopes{}
	put(t, s, k)
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assert.Empty(t, got.Scopes.Models)
	assert.Empty(t, got.Scopes.Operations)
}

func testCreate(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	require.NoError(t, s.CreateAPIKey(t.Context(), k, false))
	got, err := s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assertKey(t, k, got)

	again, _ := NewKey(t, "org-a", "key-1", t0.Add(time.Hour))
	assert.ErrorIs(t, s.CreateAPIKey(t.Context(), again, false), identity.ErrAlreadyExists, "create never replaces")
	got, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	require.NoError(t, err)
	assert.Equal(t, k.Hash, got.Hash)

	sameHash := k
	sameHash.OrganizationID, sameHash.ID = "org-b", "key-2"
	assert.ErrorIs(t, s.CreateAPIKey(t.Context(), sameHash, false), identity.ErrAlreadyExists)

	other, _ := NewKey(t, "org-b", "key-1", t0)
	require.NoError(t, s.CreateAPIKey(t.Context(), other, false), "the same id in another organisation is another key")
}

func testCreateInvalid(t *testing.T, s identity.Store) {
	k, _ := NewKey(t, "org-a", "key-1", t0)
	k.Scopes = identity.Scopes{Models: []string{"[bad"}, Operations: []identity.Operation{"delete"}}
	err := s.CreateAPIKey(t.Context(), k, false)
	var ve *identity.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.ErrorContains(t, err, "scopes.models")
	assert.ErrorContains(t, err, "scopes.operations")
	assert.ErrorAs(t, s.PutAPIKey(t.Context(), k), &ve)
	_, err = s.GetAPIKey(t.Context(), "org-a", "key-1")
	assert.ErrorIs(t, err, identity.ErrNotFound)
}

// next returns the next revocation on ch, failing the test after a second.
func next(t *testing.T, ch <-chan identity.Revocation) identity.Revocation {
	t.Helper()
	select {
	case r, ok := <-ch:
		require.True(t, ok, "the channel closed")
		return r
	case <-time.After(time.Second):
		require.FailNow(t, "no revocation within a second")
	}
	return identity.Revocation{}
}

func testRevocationsDelivered(t *testing.T, s identity.Store) {
	a, _ := NewKey(t, "org-a", "key-1", t0)
	b, _ := NewKey(t, "org-b", "key-1", t0)
	put(t, s, a)
	put(t, s, b)
	ch, err := s.SubscribeRevocations(t.Context())
	require.NoError(t, err)
	ch2, err := s.SubscribeRevocations(t.Context())
	require.NoError(t, err)

	at := t0.Add(time.Hour)
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-b", "key-1", at))
	for _, c := range []<-chan identity.Revocation{ch, ch2} {
		r := next(t, c)
		assert.Equal(t, "org-b", r.OrganizationID, "the revocation names its organisation")
		assert.Equal(t, "key-1", r.KeyID)
		assertTime(t, at, r.RevokeTime, "revoke_time")
	}

	// A revocation applied through PutAPIKey is recorded too.
	a.RevokeTime = at.Add(time.Minute)
	put(t, s, a)
	r := next(t, ch)
	assert.Equal(t, identity.Revocation{OrganizationID: "org-a", KeyID: "key-1", RevokeTime: r.RevokeTime}, r)
	assertTime(t, a.RevokeTime, r.RevokeTime, "revoke_time")

	// So is a new key created revoked.
	c, _ := NewKey(t, "org-a", "key-2", t0)
	c.RevokeTime = at
	require.NoError(t, s.CreateAPIKey(t.Context(), c, false))
	assert.Equal(t, "key-2", next(t, ch).KeyID)

	// A later revocation of a revoked key changes nothing; an earlier one is news.
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-b", "key-1", at.Add(time.Hour)))
	require.NoError(t, s.RevokeAPIKey(t.Context(), "org-b", "key-1", at.Add(-time.Hour)))
	r = next(t, ch)
	assert.Equal(t, "org-b", r.OrganizationID)
	assertTime(t, at.Add(-time.Hour), r.RevokeTime, "the earlier revocation, not the ignored later one")
}

func testRevocationsEnd(t *testing.T, s identity.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := s.SubscribeRevocations(ctx)
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool {
		select {
		case _, ok := <-ch:
			return !ok
		default:
			return false
		}
	}, time.Second, 5*time.Millisecond, "the channel closes when the context ends")

	_, err = s.SubscribeRevocations(ctx)
	assert.ErrorIs(t, err, context.Canceled)
}
