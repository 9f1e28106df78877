// Package dispatchtest holds the conformance suite every dispatch.CredentialStore passes.
package dispatchtest

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/seal"
	"github.com/fmgate/fmgate/services/dispatch"
)

// TestCredentialStore runs the conformance suite against stores made by newStore, which
// returns a new, empty store for each subtest.
func TestCredentialStore(t *testing.T, newStore func(t *testing.T) dispatch.CredentialStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s dispatch.CredentialStore)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutSameBytesChangesNothing", testPutSame},
		{"PutOtherBytes", testPutOther},
		{"NotFound", testNotFound},
		{"Invalid", testInvalid},
		{"ListOrder", testList},
		{"Delete", testDelete},
		{"CrossTenant", testCrossTenant},
		{"SealAndResolve", testSealAndResolve},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// at is a time Postgres keeps exactly (microseconds, UTC).
var at = time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC)

func testRoundTrip(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	changed, err := s.PutSealed(ctx, "org-a", "openai-key", []byte{1, 2, 3}, at)
	require.NoError(t, err)
	assert.True(t, changed)

	got, err := s.GetSealed(ctx, "org-a", "openai-key")
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 2, 3}, got)
	got[0] = 9
	again, err := s.GetSealed(ctx, "org-a", "openai-key")
	require.NoError(t, err)
	assert.Equal(t, []byte{1, 2, 3}, again, "a caller cannot change the stored value through what it was given")

	list, err := s.ListCredentials(ctx, "org-a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "openai-key", list[0].Name)
	assert.True(t, at.Equal(list[0].UpdateTime), "update time %s, want %s", list[0].UpdateTime, at)
	assert.Equal(t, time.UTC, list[0].UpdateTime.Location())
}

func testPutSame(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	_, err := s.PutSealed(ctx, "org-a", "k", []byte("sealed"), at)
	require.NoError(t, err)
	changed, err := s.PutSealed(ctx, "org-a", "k", []byte("sealed"), at.Add(time.Hour))
	require.NoError(t, err)
	assert.False(t, changed)
	list, err := s.ListCredentials(ctx, "org-a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.True(t, at.Equal(list[0].UpdateTime), "an unchanged credential keeps its update time")
}

func testPutOther(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	_, err := s.PutSealed(ctx, "org-a", "k", []byte("first"), at)
	require.NoError(t, err)
	later := at.Add(time.Hour)
	changed, err := s.PutSealed(ctx, "org-a", "k", []byte("second"), later)
	require.NoError(t, err)
	assert.True(t, changed)
	got, err := s.GetSealed(ctx, "org-a", "k")
	require.NoError(t, err)
	assert.Equal(t, []byte("second"), got)
	list, err := s.ListCredentials(ctx, "org-a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.True(t, later.Equal(list[0].UpdateTime))
}

func testNotFound(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	_, err := s.GetSealed(ctx, "org-a", "missing")
	assert.ErrorIs(t, err, dispatch.ErrNotFound)
	assert.ErrorIs(t, s.DeleteCredential(ctx, "org-a", "missing"), dispatch.ErrNotFound)
	list, err := s.ListCredentials(ctx, "org-a")
	require.NoError(t, err)
	assert.Empty(t, list)
}

func testInvalid(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	for name, tc := range map[string]struct {
		org, name string
		sealed    []byte
	}{
		"no organization": {"", "k", []byte("x")},
		"no name":         {"org-a", "", []byte("x")},
		"name with slash": {"org-a", "a/b", []byte("x")},
		"name with NUL":   {"org-a", "a\x00b", []byte("x")},
		"name too long":   {"org-a", strings.Repeat("k", 129), []byte("x")},
		"leading dot":     {"org-a", ".k", []byte("x")},
		"empty value":     {"org-a", "k", nil},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := s.PutSealed(ctx, tc.org, tc.name, tc.sealed, at)
			assert.ErrorIs(t, err, dispatch.ErrInvalidCredential)
		})
	}
	list, err := s.ListCredentials(ctx, "org-a")
	require.NoError(t, err)
	assert.Empty(t, list, "nothing invalid was stored")
}

func testList(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	for _, name := range []string{"b", "a.key", "C", "a_key", "a-key"} {
		_, err := s.PutSealed(ctx, "org-a", name, []byte("v-"+name), at)
		require.NoError(t, err)
	}
	list, err := s.ListCredentials(ctx, "org-a")
	require.NoError(t, err)
	var names []string
	for _, c := range list {
		names = append(names, c.Name)
	}
	assert.Equal(t, []string{"C", "a-key", "a.key", "a_key", "b"}, names, "by name, bytewise")
}

func testDelete(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	for _, name := range []string{"k1", "k2"} {
		_, err := s.PutSealed(ctx, "org-a", name, []byte("v"), at)
		require.NoError(t, err)
	}
	require.NoError(t, s.DeleteCredential(ctx, "org-a", "k1"))
	_, err := s.GetSealed(ctx, "org-a", "k1")
	assert.ErrorIs(t, err, dispatch.ErrNotFound)
	assert.ErrorIs(t, s.DeleteCredential(ctx, "org-a", "k1"), dispatch.ErrNotFound)
	_, err = s.GetSealed(ctx, "org-a", "k2")
	assert.NoError(t, err, "other credentials stay")
	changed, err := s.PutSealed(ctx, "org-a", "k1", []byte("v"), at)
	require.NoError(t, err)
	assert.True(t, changed, "a deleted credential can be created again")
}

// testCrossTenant: one organisation's reads, writes and deletes never reach another's
// credentials, even under the same name.
func testCrossTenant(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	_, err := s.PutSealed(ctx, "org-a", "openai-key", []byte("a-value"), at)
	require.NoError(t, err)

	_, err = s.GetSealed(ctx, "org-b", "openai-key")
	assert.ErrorIs(t, err, dispatch.ErrNotFound, "org-b cannot read org-a's credential")
	list, err := s.ListCredentials(ctx, "org-b")
	require.NoError(t, err)
	assert.Empty(t, list, "org-b does not see org-a's names")
	assert.ErrorIs(t, s.DeleteCredential(ctx, "org-b", "openai-key"), dispatch.ErrNotFound, "org-b cannot delete org-a's credential")

	changed, err := s.PutSealed(ctx, "org-b", "openai-key", []byte("b-value"), at.Add(time.Hour))
	require.NoError(t, err)
	assert.True(t, changed)
	a, err := s.GetSealed(ctx, "org-a", "openai-key")
	require.NoError(t, err)
	assert.Equal(t, []byte("a-value"), a, "org-b's write left org-a's credential alone")
	b, err := s.GetSealed(ctx, "org-b", "openai-key")
	require.NoError(t, err)
	assert.Equal(t, []byte("b-value"), b)

	require.NoError(t, s.DeleteCredential(ctx, "org-b", "openai-key"))
	_, err = s.GetSealed(ctx, "org-a", "openai-key")
	assert.NoError(t, err, "org-b's delete left org-a's credential alone")
	// A prefix of another organisation's name is another organisation.
	_, err = s.GetSealed(ctx, "org-", "openai-key")
	assert.ErrorIs(t, err, dispatch.ErrNotFound)
}

// testSealAndResolve: a credential sealed into the store resolves for its own organisation
// and name only; sealing the same value again changes nothing.
func testSealAndResolve(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	box := NewBox(t)
	const secret = "sk-dispatchtest-0123456789"
	changed, err := dispatch.SealCredential(ctx, s, box, "org-a", "openai-key", dispatch.NewCredential(secret), at)
	require.NoError(t, err)
	assert.True(t, changed)
	stored, err := s.GetSealed(ctx, "org-a", "openai-key")
	require.NoError(t, err)
	assert.NotContains(t, string(stored), secret, "the store holds the value sealed")

	changed, err = dispatch.SealCredential(ctx, s, box, "org-a", "openai-key", dispatch.NewCredential(secret), at.Add(time.Hour))
	require.NoError(t, err)
	assert.False(t, changed, "sealing the same value again is no change, whatever its nonce")
	again, err := s.GetSealed(ctx, "org-a", "openai-key")
	require.NoError(t, err)
	assert.Equal(t, stored, again)

	r := dispatch.StoreResolver{Store: s, Box: box}
	c, err := r.Resolve(ctx, "org-a", "store:openai-key")
	require.NoError(t, err)
	assert.Equal(t, secret, c.Reveal())

	// The sealed bytes copied to another organisation, or another name, do not open.
	_, err = s.PutSealed(ctx, "org-b", "openai-key", stored, at)
	require.NoError(t, err)
	_, err = s.PutSealed(ctx, "org-a", "other-key", stored, at)
	require.NoError(t, err)
	for _, tc := range []struct{ org, ref string }{{"org-b", "store:openai-key"}, {"org-a", "store:other-key"}} {
		_, err := r.Resolve(ctx, tc.org, tc.ref)
		require.ErrorIs(t, err, dispatch.ErrCredentialUnavailable, tc)
		assert.NotContains(t, err.Error(), secret)
	}

	changed, err = dispatch.SealCredential(ctx, s, box, "org-a", "openai-key", dispatch.NewCredential(secret+"-rotated"), at)
	require.NoError(t, err)
	assert.True(t, changed, "a new value is a change")
	c, err = r.Resolve(ctx, "org-a", "store:openai-key")
	require.NoError(t, err)
	assert.Equal(t, secret+"-rotated", c.Reveal())
}

func testConcurrent(t *testing.T, s dispatch.CredentialStore) {
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			org := fmt.Sprintf("org-%d", i%2)
			for j := range 20 {
				name := fmt.Sprintf("k%d", j%4)
				_, err := s.PutSealed(ctx, org, name, []byte(fmt.Sprintf("v%d-%d", i, j)), at)
				assert.NoError(t, err)
				_, err = s.GetSealed(ctx, org, name)
				assert.NoError(t, err)
				_, err = s.ListCredentials(ctx, org)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	for _, org := range []string{"org-0", "org-1"} {
		list, err := s.ListCredentials(ctx, org)
		require.NoError(t, err)
		assert.Len(t, list, 4)
	}
}

// NewBox returns a box with a new random master key.
func NewBox(t testing.TB) *seal.Box {
	t.Helper()
	key := make([]byte, seal.KeySize)
	_, _ = rand.Read(key)
	box, err := seal.New(key)
	require.NoError(t, err)
	return box
}
