// Package policytest holds the conformance suite every policy.Store passes, and fixtures
// for tests of code that uses policies.
package policytest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/policy"
)

// Allow returns a valid policy of org granting models to subjects.
func Allow(org, id string, subjects, models []string) policy.Policy {
	return policy.Policy{ID: id, OrganizationID: org, Description: "grants " + id,
		Effect: policy.EffectAllow, Subjects: subjects, Models: models}
}

// Deny returns a valid policy of org refusing models to subjects.
func Deny(org, id string, subjects, models []string) policy.Policy {
	return policy.Policy{ID: id, OrganizationID: org, Description: "refuses " + id,
		Effect: policy.EffectDeny, Subjects: subjects, Models: models}
}

func sample(org, id string) policy.Policy {
	p := Allow(org, id, []string{"team:risk", "role:analyst", "subject:svc:bot", "api_key:k1"}, []string{"gpt-4o", "meta/*"})
	p.ModerationProfile = "strict"
	p.MaxOutputTokens = 1024
	return p
}

// TestStore runs the conformance suite against stores made by newStore, which returns a
// new, empty store for each subtest.
func TestStore(t *testing.T, newStore func(t *testing.T) policy.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s policy.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"PutSameContentChangesNothing", testPutIdempotent},
		{"PutChangedContent", testPutChanged},
		{"NotFound", testNotFound},
		{"Invalid", testInvalid},
		{"ListOrderAndVersion", testList},
		{"Delete", testDelete},
		{"VersionsNeverRepeat", testVersionsNeverRepeat},
		{"CrossTenant", testCrossTenant},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// content drops UpdateTime, which the store sets.
func content(p policy.Policy) policy.Policy {
	p.UpdateTime = time.Time{}
	return p
}

func testRoundTrip(t *testing.T, s policy.Store) {
	ctx := t.Context()
	p := sample("org-a", "p1")
	p.UpdateTime = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // ignored
	before := time.Now().Add(-time.Minute)
	changed, err := s.PutPolicy(ctx, p)
	require.NoError(t, err)
	assert.True(t, changed)

	got, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)
	assert.Equal(t, content(p), content(got))
	assert.True(t, got.UpdateTime.After(before), "the store sets UpdateTime, got %s", got.UpdateTime)
	assert.Equal(t, time.UTC, got.UpdateTime.Location())

	got.Subjects[0] = "mutated"
	p.Models[0] = "mutated"
	again, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)
	assert.Equal(t, sample("org-a", "p1").Subjects, again.Subjects, "returned values share no memory with the store")
	assert.Equal(t, sample("org-a", "p1").Models, again.Models, "stored values share no memory with the caller")
}

func testPutIdempotent(t *testing.T, s policy.Store) {
	ctx := t.Context()
	p := sample("org-a", "p1")
	_, err := s.PutPolicy(ctx, p)
	require.NoError(t, err)
	v1, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	first, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)

	p.UpdateTime = time.Now().Add(time.Hour) // not content
	changed, err := s.PutPolicy(ctx, p)
	require.NoError(t, err)
	assert.False(t, changed)
	v2, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v1, v2, "the same content does not bump the version")
	second, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)
	assert.Equal(t, first, second, "nor the update time")
}

func testPutChanged(t *testing.T, s policy.Store) {
	ctx := t.Context()
	base := sample("org-a", "p1")
	_, err := s.PutPolicy(ctx, base)
	require.NoError(t, err)
	prev, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)

	edits := map[string]func(p *policy.Policy){
		"description":        func(p *policy.Policy) { p.Description = "new words" },
		"effect":             func(p *policy.Policy) { p.Effect, p.ModerationProfile, p.MaxOutputTokens = policy.EffectDeny, "", 0 },
		"subjects order":     func(p *policy.Policy) { p.Subjects = []string{"role:analyst", "team:risk"} },
		"models":             func(p *policy.Policy) { p.Models = []string{"*"} },
		"moderation_profile": func(p *policy.Policy) { p.ModerationProfile = "lenient" },
		"max_output_tokens":  func(p *policy.Policy) { p.MaxOutputTokens = 0 },
	}
	for name, edit := range edits {
		v1, err := s.Version(ctx, "org-a")
		require.NoError(t, err)
		p := sample("org-a", "p1")
		edit(&p)
		changed, err := s.PutPolicy(ctx, p)
		require.NoError(t, err, name)
		assert.True(t, changed, name)
		v2, err := s.Version(ctx, "org-a")
		require.NoError(t, err)
		assert.NotEqual(t, v1, v2, "%s: a change bumps the version", name)
		got, err := s.GetPolicy(ctx, "org-a", "p1")
		require.NoError(t, err)
		assert.Equal(t, content(p), content(got), name)
		assert.False(t, got.UpdateTime.Before(prev.UpdateTime), name)
		prev = got
		// Back to the base, which is a change again.
		changed, err = s.PutPolicy(ctx, base)
		require.NoError(t, err)
		assert.True(t, changed, name)
	}
}

func testNotFound(t *testing.T, s policy.Store) {
	_, err := s.GetPolicy(t.Context(), "org-a", "nope")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	err = s.DeletePolicy(t.Context(), "org-a", "nope")
	assert.ErrorIs(t, err, policy.ErrNotFound)
}

func testInvalid(t *testing.T, s policy.Store) {
	ctx := t.Context()
	v1, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	bad := policy.Policy{ID: "bad id", OrganizationID: "org-a", Effect: "maybe",
		Subjects: []string{"*", "group:x", "team:"}, Models: []string{"[", ""}, MaxOutputTokens: -1}
	_, err = s.PutPolicy(ctx, bad)
	var ve *policy.ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	assert.ElementsMatch(t, []string{"id", "effect", "subjects[1]", "subjects[2]", "models[0]", "models[1]", "max_output_tokens"}, fields)

	deny := Deny("org-a", "d", []string{"*"}, []string{"*"})
	deny.ModerationProfile, deny.MaxOutputTokens = "strict", 10
	_, err = s.PutPolicy(ctx, deny)
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Violations, 2, "obligations belong to allow policies")

	empty := Allow("org-a", "e", nil, nil)
	_, err = s.PutPolicy(ctx, empty)
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Violations, 2, "subjects and models are required")

	v2, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v1, v2)
	list, _, err := s.ListPolicies(ctx, "org-a")
	require.NoError(t, err)
	assert.Empty(t, list, "invalid policies are not stored")
}

func testList(t *testing.T, s policy.Store) {
	ctx := t.Context()
	list, v0, err := s.ListPolicies(ctx, "org-a")
	require.NoError(t, err)
	assert.Empty(t, list)
	v, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v, v0)

	ids := []string{"b", "B", "a-1", "a.1", "a_1", "a"}
	for _, id := range ids {
		_, err := s.PutPolicy(ctx, sample("org-a", id))
		require.NoError(t, err)
	}
	list, v1, err := s.ListPolicies(ctx, "org-a")
	require.NoError(t, err)
	var got []string
	for _, p := range list {
		got = append(got, p.ID)
		assert.Equal(t, content(sample("org-a", p.ID)), content(p))
	}
	assert.Equal(t, []string{"B", "a", "a-1", "a.1", "a_1", "b"}, got, "byte order of ids")
	v, err = s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v, v1, "the list carries the current version")
	assert.NotEqual(t, v0, v1)
}

func testDelete(t *testing.T, s policy.Store) {
	ctx := t.Context()
	_, err := s.PutPolicy(ctx, sample("org-a", "p1"))
	require.NoError(t, err)
	_, err = s.PutPolicy(ctx, sample("org-a", "p2"))
	require.NoError(t, err)
	v1, err := s.Version(ctx, "org-a")
	require.NoError(t, err)

	require.NoError(t, s.DeletePolicy(ctx, "org-a", "p1"))
	v2, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.NotEqual(t, v1, v2, "a delete bumps the version")
	_, err = s.GetPolicy(ctx, "org-a", "p1")
	assert.ErrorIs(t, err, policy.ErrNotFound)

	assert.ErrorIs(t, s.DeletePolicy(ctx, "org-a", "p1"), policy.ErrNotFound)
	v3, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v2, v3, "deleting nothing changes nothing")

	list, _, err := s.ListPolicies(ctx, "org-a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "p2", list[0].ID)

	// Putting a deleted policy back is a change.
	changed, err := s.PutPolicy(ctx, sample("org-a", "p1"))
	require.NoError(t, err)
	assert.True(t, changed)
}

func testVersionsNeverRepeat(t *testing.T, s policy.Store) {
	ctx := t.Context()
	seen := map[string]bool{}
	record := func() {
		v, err := s.Version(ctx, "org-a")
		require.NoError(t, err)
		assert.False(t, seen[v], "version %q repeats", v)
		seen[v] = true
	}
	record()
	for i := range 3 {
		_, err := s.PutPolicy(ctx, sample("org-a", "p"))
		require.NoError(t, err)
		if i == 0 {
			record()
		}
		require.NoError(t, s.DeletePolicy(ctx, "org-a", "p"))
		record() // back to no policies, yet a new version
	}
}

func testCrossTenant(t *testing.T, s policy.Store) {
	ctx := t.Context()
	a := sample("org-a", "shared")
	_, err := s.PutPolicy(ctx, a)
	require.NoError(t, err)
	_, err = s.PutPolicy(ctx, sample("org-a", "a-only"))
	require.NoError(t, err)
	va, err := s.Version(ctx, "org-a")
	require.NoError(t, err)

	_, err = s.GetPolicy(ctx, "org-b", "a-only")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	list, _, err := s.ListPolicies(ctx, "org-b")
	require.NoError(t, err)
	assert.Empty(t, list)
	assert.ErrorIs(t, s.DeletePolicy(ctx, "org-b", "a-only"), policy.ErrNotFound)

	b := Deny("org-b", "shared", []string{"*"}, []string{"*"})
	changed, err := s.PutPolicy(ctx, b)
	require.NoError(t, err)
	assert.True(t, changed, "org B's policy of the same id is its own")

	got, err := s.GetPolicy(ctx, "org-a", "shared")
	require.NoError(t, err)
	assert.Equal(t, content(a), content(got), "org A's policy is untouched")
	_, err = s.GetPolicy(ctx, "org-a", "a-only")
	require.NoError(t, err, "org B's failed delete left org A's policy")
	va2, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, va, va2, "org B's changes do not change org A's version")

	gotB, err := s.GetPolicy(ctx, "org-b", "shared")
	require.NoError(t, err)
	assert.Equal(t, content(b), content(gotB))
	require.NoError(t, s.DeletePolicy(ctx, "org-b", "shared"))
	_, err = s.GetPolicy(ctx, "org-a", "shared")
	require.NoError(t, err, "org B's delete removed only its own policy")
}

func testConcurrent(t *testing.T, s policy.Store) {
	ctx := t.Context()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*2)
	changes := make(chan bool, workers)
	for w := range workers {
		wg.Go(func() {
			// Half the workers write the same content: exactly one of them changes it.
			id := "same"
			if w%2 == 1 {
				id = fmt.Sprintf("p%d", w)
			}
			changed, err := s.PutPolicy(ctx, sample("org-a", id))
			errs <- err
			if id == "same" {
				changes <- changed
			}
			_, _, err = s.ListPolicies(ctx, "org-a")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	close(changes)
	for err := range errs {
		require.NoError(t, err)
	}
	n := 0
	for c := range changes {
		if c {
			n++
		}
	}
	assert.Equal(t, 1, n, "one of the identical writes creates, the others change nothing")
	list, _, err := s.ListPolicies(ctx, "org-a")
	require.NoError(t, err)
	assert.Len(t, list, 1+workers/2)
}
