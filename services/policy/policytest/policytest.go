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
		{"Create", testCreate},
		{"UpdateEtag", testUpdateEtag},
		{"DeleteEtag", testDeleteEtag},
		{"History", testHistory},
		{"Page", testPage},
		{"ConcurrentUpdatesSameEtag", testConcurrentUpdates},
		{"Obligations", testObligations},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

// content drops the fields the store sets.
func content(p policy.Policy) policy.Policy {
	p.UpdateTime, p.CreateTime, p.Revision, p.Etag, p.UpdatedBy = time.Time{}, time.Time{}, 0, "", ""
	return p
}

func testRoundTrip(t *testing.T, s policy.Store) {
	ctx := t.Context()
	p := sample("org-a", "p1")
	p.UpdateTime = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC) // ignored
	before := time.Now().Add(-time.Minute)
	ch, err := s.PutPolicy(ctx, p)
	require.NoError(t, err)
	assert.True(t, ch.Changed)
	assert.Nil(t, ch.Before)
	require.NotNil(t, ch.After)

	got, err := s.GetPolicy(ctx, "org-a", "p1")
	assert.Equal(t, *ch.After, got, "the write returns what a read sees")
	assert.Equal(t, int64(1), got.Revision)
	assert.NotEmpty(t, got.Etag)
	assert.Equal(t, got.UpdateTime, got.CreateTime)
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
	ch, err := s.PutPolicy(ctx, p)
	require.NoError(t, err)
	assert.False(t, ch.Changed)
	require.NotNil(t, ch.Before)
	assert.Equal(t, first, *ch.Before)
	assert.Equal(t, first, *ch.After)
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
		"condition":          func(p *policy.Policy) { p.Condition = `request.stream` },
		"regions":            func(p *policy.Policy) { p.AllowedEndpointRegions = []string{"eu-*"} },
		"modalities":         func(p *policy.Policy) { p.AllowedModalities = []string{"text"} },
		"retention set":      func(p *policy.Policy) { p.LogRetention = policy.RetainFor(0) },
		"log_group":          func(p *policy.Policy) { p.LogGroup = "eu/audit" },
		"mask":               func(p *policy.Policy) { p.MaskPersonalData = true },
		"baa":                func(p *policy.Policy) { p.RequireBAACoverage = true },
		"constrain":          func(p *policy.Policy) { p.Effect = policy.EffectConstrain },
	}
	for name, edit := range edits {
		v1, err := s.Version(ctx, "org-a")
		require.NoError(t, err)
		p := sample("org-a", "p1")
		edit(&p)
		ch, err := s.PutPolicy(ctx, p)
		require.NoError(t, err, name)
		assert.True(t, ch.Changed, name)
		assert.Equal(t, prev, *ch.Before, name)
		v2, err := s.Version(ctx, "org-a")
		require.NoError(t, err)
		assert.NotEqual(t, v1, v2, "%s: a change bumps the version", name)
		got, err := s.GetPolicy(ctx, "org-a", "p1")
		require.NoError(t, err)
		assert.Equal(t, content(p), content(got), name)
		assert.False(t, got.UpdateTime.Before(prev.UpdateTime), name)
		assert.Equal(t, prev.Revision+1, got.Revision, name)
		assert.NotEqual(t, prev.Etag, got.Etag, name)
		assert.Equal(t, prev.CreateTime, got.CreateTime, name)
		// Back to the base, which is a change again.
		ch, err = s.PutPolicy(ctx, base)
		require.NoError(t, err)
		assert.True(t, ch.Changed, name)
		prev = *ch.After
	}
}

func testNotFound(t *testing.T, s policy.Store) {
	_, err := s.GetPolicy(t.Context(), "org-a", "nope")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	_, err = s.DeletePolicy(t.Context(), "org-a", "nope", "", "alice")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	_, err = s.UpdatePolicy(t.Context(), sample("org-a", "nope"), "")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	_, err = s.ListRevisions(t.Context(), "org-a", "nope", 0, 10)
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
	deny.ModerationProfile, deny.MaxOutputTokens, deny.MaskPersonalData = "strict", 10, true
	_, err = s.PutPolicy(ctx, deny)
	require.ErrorAs(t, err, &ve)
	assert.Len(t, ve.Violations, 3, "obligations belong to allow and constrain policies")

	for _, cond := range []string{`principal.subject ==`, `principal.no_such_field == "x"`, `request.message_count`} {
		bad := Allow("org-a", "c", []string{"*"}, []string{"*"})
		bad.Condition = cond
		_, err = s.PutPolicy(ctx, bad)
		require.ErrorAs(t, err, &ve, cond)
		require.Len(t, ve.Violations, 1, cond)
		assert.Equal(t, "condition", ve.Violations[0].Field, cond)
		_, err = s.CreatePolicy(ctx, bad)
		assert.ErrorAs(t, err, &ve, cond)
	}
	ob := Allow("org-a", "o", []string{"*"}, []string{"*"})
	ob.AllowedEndpointRegions = []string{"EU-West", "eu-*-1", ""}
	ob.AllowedModalities = []string{"Text"}
	ob.LogRetention = policy.RetainFor(-time.Second)
	ob.LogGroup = "has space"
	_, err = s.PutPolicy(ctx, ob)
	require.ErrorAs(t, err, &ve)
	fields = nil
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	assert.ElementsMatch(t, []string{"allowed_endpoint_regions[0]", "allowed_endpoint_regions[1]", "allowed_endpoint_regions[2]",
		"allowed_modalities[0]", "log_retention", "log_group"}, fields)

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

	before, err := s.DeletePolicy(ctx, "org-a", "p1", "", "alice")
	require.NoError(t, err)
	assert.Equal(t, "p1", before.ID)
	v2, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.NotEqual(t, v1, v2, "a delete bumps the version")
	_, err = s.GetPolicy(ctx, "org-a", "p1")
	assert.ErrorIs(t, err, policy.ErrNotFound)

	_, err = s.DeletePolicy(ctx, "org-a", "p1", "", "alice")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	v3, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v2, v3, "deleting nothing changes nothing")

	list, _, err := s.ListPolicies(ctx, "org-a")
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, "p2", list[0].ID)

	// Putting a deleted policy back is a change.
	ch, err := s.PutPolicy(ctx, sample("org-a", "p1"))
	require.NoError(t, err)
	assert.True(t, ch.Changed)
	assert.Nil(t, ch.Before)
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
		_, err = s.DeletePolicy(ctx, "org-a", "p", "", "alice")
		require.NoError(t, err)
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
	_, err = s.DeletePolicy(ctx, "org-b", "a-only", "", "mallory")
	assert.ErrorIs(t, err, policy.ErrNotFound)
	aOnly, err := s.GetPolicy(ctx, "org-a", "a-only")
	require.NoError(t, err)
	_, err = s.DeletePolicy(ctx, "org-b", "a-only", aOnly.Etag, "mallory")
	assert.ErrorIs(t, err, policy.ErrNotFound, "knowing the etag does not help")
	stolen := aOnly
	stolen.OrganizationID, stolen.Effect, stolen.ModerationProfile, stolen.MaxOutputTokens = "org-b", policy.EffectDeny, "", 0
	_, err = s.UpdatePolicy(ctx, stolen, aOnly.Etag)
	assert.ErrorIs(t, err, policy.ErrNotFound)
	_, err = s.ListRevisions(ctx, "org-b", "a-only", 0, 10)
	assert.ErrorIs(t, err, policy.ErrNotFound)
	page, err := s.PagePolicies(ctx, "org-b", "", 10)
	require.NoError(t, err)
	assert.Empty(t, page)

	b := Deny("org-b", "shared", []string{"*"}, []string{"*"})
	ch, err := s.PutPolicy(ctx, b)
	require.NoError(t, err)
	assert.True(t, ch.Changed, "org B's policy of the same id is its own")
	assert.Nil(t, ch.Before)
	_, err = s.CreatePolicy(ctx, Deny("org-b", "a-only", []string{"*"}, []string{"*"}))
	require.NoError(t, err, "org A's ids do not exist for org B")

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
	_, err = s.DeletePolicy(ctx, "org-b", "shared", "", "bob")
	require.NoError(t, err)
	revs, err := s.ListRevisions(ctx, "org-a", "shared", 0, 10)
	require.NoError(t, err)
	assert.Len(t, revs, 1, "org B's history of the same id is its own")
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
			ch, err := s.PutPolicy(ctx, sample("org-a", id))
			errs <- err
			if id == "same" {
				changes <- ch.Changed
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

func testCreate(t *testing.T, s policy.Store) {
	ctx := t.Context()
	p := sample("org-a", "p1")
	p.UpdatedBy = "alice"
	created, err := s.CreatePolicy(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, int64(1), created.Revision)
	assert.Equal(t, "alice", created.UpdatedBy)
	got, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)
	assert.Equal(t, created, got)

	v, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	_, err = s.CreatePolicy(ctx, sample("org-a", "p1"))
	assert.ErrorIs(t, err, policy.ErrAlreadyExists)
	v2, err := s.Version(ctx, "org-a")
	require.NoError(t, err)
	assert.Equal(t, v, v2, "a failed create changes nothing")
}

func testUpdateEtag(t *testing.T, s policy.Store) {
	ctx := t.Context()
	created, err := s.CreatePolicy(ctx, sample("org-a", "p1"))
	require.NoError(t, err)

	next := sample("org-a", "p1")
	next.Description, next.UpdatedBy = "second", "bob"
	ch, err := s.UpdatePolicy(ctx, next, created.Etag)
	require.NoError(t, err)
	require.True(t, ch.Changed)
	assert.Equal(t, created, *ch.Before)
	assert.Equal(t, int64(2), ch.After.Revision)
	assert.Equal(t, "bob", ch.After.UpdatedBy)
	assert.Equal(t, created.CreateTime, ch.After.CreateTime)

	stale := sample("org-a", "p1")
	stale.Description = "third"
	_, err = s.UpdatePolicy(ctx, stale, created.Etag)
	assert.ErrorIs(t, err, policy.ErrConflict, "the first etag is no longer current")
	got, err := s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err)
	assert.Equal(t, *ch.After, got, "a refused update changes nothing")

	same, err := s.UpdatePolicy(ctx, next, ch.After.Etag)
	require.NoError(t, err)
	assert.False(t, same.Changed, "the same content makes no revision")
	assert.Equal(t, *ch.After, *same.After)

	ch3, err := s.UpdatePolicy(ctx, stale, "")
	require.NoError(t, err, "no etag: unconditional")
	assert.Equal(t, int64(3), ch3.After.Revision)
}

func testDeleteEtag(t *testing.T, s policy.Store) {
	ctx := t.Context()
	created, err := s.CreatePolicy(ctx, sample("org-a", "p1"))
	require.NoError(t, err)
	_, err = s.DeletePolicy(ctx, "org-a", "p1", "stale", "alice")
	assert.ErrorIs(t, err, policy.ErrConflict)
	_, err = s.GetPolicy(ctx, "org-a", "p1")
	require.NoError(t, err, "a refused delete leaves the policy")
	before, err := s.DeletePolicy(ctx, "org-a", "p1", created.Etag, "alice")
	require.NoError(t, err)
	assert.Equal(t, created, before)
}

func testHistory(t *testing.T, s policy.Store) {
	ctx := t.Context()
	p := sample("org-a", "p1")
	p.UpdatedBy = "alice"
	first, err := s.CreatePolicy(ctx, p)
	require.NoError(t, err)
	p.Description, p.UpdatedBy = "second", "bob"
	ch, err := s.UpdatePolicy(ctx, p, first.Etag)
	require.NoError(t, err)
	second := *ch.After
	_, err = s.DeletePolicy(ctx, "org-a", "p1", second.Etag, "carol")
	require.NoError(t, err)
	p.Description, p.UpdatedBy = "reborn", "dave"
	reborn, err := s.CreatePolicy(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, int64(4), reborn.Revision, "a policy created again continues its history")

	revs, err := s.ListRevisions(ctx, "org-a", "p1", 0, 10)
	require.NoError(t, err)
	require.Len(t, revs, 4)
	var nums []int64
	var authors []string
	for _, r := range revs {
		nums = append(nums, r.Policy.Revision)
		authors = append(authors, r.Policy.UpdatedBy)
	}
	assert.Equal(t, []int64{4, 3, 2, 1}, nums, "newest first")
	assert.Equal(t, []string{"dave", "carol", "bob", "alice"}, authors)
	assert.Equal(t, []bool{false, true, false, false}, []bool{revs[0].Deleted, revs[1].Deleted, revs[2].Deleted, revs[3].Deleted})
	assert.Equal(t, reborn, revs[0].Policy)
	assert.Equal(t, second, revs[2].Policy)
	assert.Equal(t, first, revs[3].Policy)
	assert.Equal(t, "second", revs[1].Policy.Description, "a deletion keeps the content it deleted")
	etags := map[string]bool{}
	for _, r := range revs {
		etags[r.Policy.Etag] = true
	}
	assert.Len(t, etags, 4, "every revision has its own etag")

	page, err := s.ListRevisions(ctx, "org-a", "p1", 3, 2)
	require.NoError(t, err)
	require.Len(t, page, 2)
	assert.Equal(t, []int64{2, 1}, []int64{page[0].Policy.Revision, page[1].Policy.Revision})
}

func testPage(t *testing.T, s policy.Store) {
	ctx := t.Context()
	for i := range 5 {
		_, err := s.PutPolicy(ctx, sample("org-a", fmt.Sprintf("p%d", i)))
		require.NoError(t, err)
	}
	_, err := s.PutPolicy(ctx, sample("org-b", "p9"))
	require.NoError(t, err)
	var got []string
	after := ""
	for {
		page, err := s.PagePolicies(ctx, "org-a", after, 2)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 2)
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			got = append(got, p.ID)
		}
		after = page[len(page)-1].ID
	}
	assert.Equal(t, []string{"p0", "p1", "p2", "p3", "p4"}, got)
}

func testConcurrentUpdates(t *testing.T, s policy.Store) {
	ctx := t.Context()
	created, err := s.CreatePolicy(ctx, sample("org-a", "p1"))
	require.NoError(t, err)
	const writers = 8
	results := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			p := sample("org-a", "p1")
			p.Description = fmt.Sprintf("writer %d", w)
			_, err := s.UpdatePolicy(ctx, p, created.Etag)
			results <- err
		})
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		if err == nil {
			won++
			continue
		}
		assert.ErrorIs(t, err, policy.ErrConflict)
	}
	assert.Equal(t, 1, won, "exactly one of the updates with the same etag wins")
	revs, err := s.ListRevisions(ctx, "org-a", "p1", 0, 10)
	require.NoError(t, err)
	assert.Len(t, revs, 2)
}

func testObligations(t *testing.T, s policy.Store) {
	ctx := t.Context()
	p := Allow("org-a", "full", []string{"*"}, []string{"*"})
	p.Condition = `principal.attributes.?jurisdiction.orValue("") == "EU" && endpoints.exists(e, e.region.startsWith("eu-"))`
	p.ModerationProfile, p.MaxOutputTokens = "pii-mask", 100
	p.AllowedEndpointRegions = []string{"eu-*", "europe-west4"}
	p.AllowedModalities = []string{"text", "image"}
	p.LogRetention = policy.RetainFor(0)
	p.LogGroup = "eu/gen"
	p.MaskPersonalData, p.RequireBAACoverage = true, true
	_, err := s.PutPolicy(ctx, p)
	require.NoError(t, err)
	got, err := s.GetPolicy(ctx, "org-a", "full")
	require.NoError(t, err)
	assert.Equal(t, content(p), content(got))
	d, ok := got.LogRetention.Limit()
	assert.True(t, ok, "a zero retention is a limit")
	assert.Zero(t, d)

	c := Allow("org-a", "unset", []string{"*"}, []string{"*"})
	c.Effect = policy.EffectConstrain
	c.LogRetention = policy.RetainFor(90 * 24 * time.Hour)
	_, err = s.PutPolicy(ctx, c)
	require.NoError(t, err)
	got, err = s.GetPolicy(ctx, "org-a", "unset")
	require.NoError(t, err)
	assert.Equal(t, content(c), content(got))
	ch, err := s.PutPolicy(ctx, c)
	require.NoError(t, err)
	assert.False(t, ch.Changed, "the new fields read back as written")
}
