package registrytest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/registry"
)

// Card returns a model card with every field set.
func Card() registry.ModelCard {
	days := int32(30)
	return registry.ModelCard{
		Family:            "gpt-4",
		Version:           "2024-08-06",
		InputModalities:   []registry.Modality{registry.ModalityText, registry.ModalityImage},
		OutputModalities:  []registry.Modality{registry.ModalityText},
		MaxOutputTokens:   16384,
		Capabilities:      registry.Capabilities{Tools: true, Vision: true, JSONOutput: true},
		PricePerImage:     0.003825,
		Regions:           []string{"eu-west-1", "us-east-1"},
		IntendedUses:      []string{"summarisation of internal documents"},
		UseCaseTags:       []string{"summarisation", "chat"},
		Limitations:       []string{"may invent citations"},
		EvaluationMetrics: map[string]float64{"mmlu": 0.887, "internal/halluc-rate": 0.021},
		License:           registry.License{Name: "OpenAI Terms", URL: "https://openai.com/policies/terms?x=1", Version: "2024-01", AcceptanceRequired: true},
		DataHandling:      registry.DataHandling{RetentionDays: &days, UsedForTraining: false},
		SuccessorModel:    "gpt-5",
		VendorModelID:     "gpt-4o-2024-08-06",
	}
}

// HostingRequest returns a valid, submitted hosting request of org.
func HostingRequest(org, id string) registry.HostingRequest {
	t := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	return registry.HostingRequest{
		OrganizationID: org, ID: id, Requester: "alice@example.com", Model: "meta/llama-3.1:70b",
		RequestsPerMinute: 600, TokensPerMinute: 2_000_000, Region: "eu-central-1",
		Justification: "patient-record summarisation must stay in our tenancy", State: registry.HostingSubmitted,
		UpdatedBy: "alice@example.com", CreateTime: t, UpdateTime: t, TeamID: "radiology",
	}
}

var adminTests = []struct {
	name string
	fn   func(t *testing.T, s registry.Store)
}{
	{"ModelCardRoundTrip", testModelCardRoundTrip},
	{"ModelCardInvalid", testModelCardInvalid},
	{"ListModelsVendorAndTag", testListModelsVendorAndTag},
	{"CreateModel", testCreateModel},
	{"UpdateModel", testUpdateModel},
	{"UpdateModelConcurrent", testUpdateModelConcurrent},
	{"DeleteModel", testDeleteModel},
	{"Transitions", testTransitions},
	{"EndpointCRUD", testEndpointCRUD},
	{"HostingRequests", testHostingRequests},
	{"HostingRequestsList", testHostingRequestsList},
}

func testModelCardRoundTrip(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o", "ep-1")
	m.Card = Card()
	require.NoError(t, s.PutModel(ctx, m))
	got, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, m, got)
	assert.Equal(t, m.Etag(), got.Etag(), "the etag survives the store")

	// The card shares no memory with the store.
	*got.Card.DataHandling.RetentionDays = 99
	got.Card.EvaluationMetrics["mmlu"] = 0
	got.Card.Regions[0] = "mutated"
	again, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, m, again)

	// Unknown retention (nil) differs from zero retention.
	zero := int32(0)
	m.Card.DataHandling.RetentionDays = &zero
	require.NoError(t, s.PutModel(ctx, m))
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	require.NotNil(t, got.Card.DataHandling.RetentionDays)
	assert.Equal(t, int32(0), *got.Card.DataHandling.RetentionDays)
	m.Card = registry.ModelCard{}
	require.NoError(t, s.PutModel(ctx, m))
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Nil(t, got.Card.DataHandling.RetentionDays)
	assert.Equal(t, m, got, "clearing the card is an update")
}

func testModelCardInvalid(t *testing.T, s registry.Store) {
	m := Model("org-a", "gpt-4o")
	neg := int32(-1)
	m.Card = registry.ModelCard{
		InputModalities:   []registry.Modality{"text", "smell", "text"},
		MaxOutputTokens:   200000,
		PricePerImage:     -1,
		Regions:           []string{"eu west"},
		UseCaseTags:       []string{""},
		EvaluationMetrics: map[string]float64{"bad name": 1},
		License:           registry.License{URL: "ftp://x", AcceptanceRequired: true},
		DataHandling:      registry.DataHandling{RetentionDays: &neg},
		SuccessorModel:    "gpt-4o",
	}
	var ve *registry.ValidationError
	require.ErrorAs(t, s.PutModel(t.Context(), m), &ve)
	assert.ElementsMatch(t, []string{"input_modalities[1]", "input_modalities[2]", "max_output_tokens", "price_per_image",
		"regions[0]", "use_case_tags[0]", "evaluation_metrics[bad name]", "license.url", "license.name",
		"data_handling.retention_days", "successor_model"}, fieldsOf(ve))
	_, err := s.GetModel(t.Context(), "org-a", "gpt-4o")
	assert.ErrorIs(t, err, registry.ErrNotFound)
}

func testListModelsVendorAndTag(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for i, tt := range []struct {
		vendor string
		tags   []string
	}{{"openai", []string{"chat", "code"}}, {"openai", nil}, {"meta", []string{"chat"}}, {"meta", []string{"chatbot"}}} {
		m := Model("org-a", fmt.Sprintf("m%d", i))
		m.Vendor, m.Card.UseCaseTags = tt.vendor, tt.tags
		require.NoError(t, s.PutModel(ctx, m))
	}
	m := Model("org-b", "m9")
	m.Vendor, m.Card.UseCaseTags = "openai", []string{"chat"}
	require.NoError(t, s.PutModel(ctx, m))
	names := func(f registry.ModelFilter) []string {
		page, _, err := s.ListModels(ctx, "org-a", f, registry.Page{})
		require.NoError(t, err)
		var out []string
		for _, m := range page {
			out = append(out, m.Name)
		}
		return out
	}
	assert.Equal(t, []string{"m0", "m1"}, names(registry.ModelFilter{Vendor: "openai"}))
	assert.Equal(t, []string{"m0", "m2"}, names(registry.ModelFilter{UseCaseTag: "chat"}), "tags match whole")
	assert.Equal(t, []string{"m0"}, names(registry.ModelFilter{Vendor: "openai", UseCaseTag: "chat"}))
	assert.Empty(t, names(registry.ModelFilter{Vendor: "openai", States: []registry.LifecycleState{registry.LifecycleRetired}}))
	// Paging with a filter.
	page, next, err := s.ListModels(ctx, "org-a", registry.ModelFilter{UseCaseTag: "chat"}, registry.Page{Size: 1})
	require.NoError(t, err)
	require.Len(t, page, 1)
	page, next, err = s.ListModels(ctx, "org-a", registry.ModelFilter{UseCaseTag: "chat"}, registry.Page{Size: 1, Token: next})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "m2", page[0].Name)
	assert.Empty(t, next)
}

func testCreateModel(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o")
	m.Card = Card()
	require.NoError(t, s.CreateModel(ctx, m))
	err := s.CreateModel(ctx, Model("org-a", "gpt-4o", "other"))
	require.ErrorIs(t, err, registry.ErrAlreadyExists)
	var ae *registry.AlreadyExistsError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, registry.ResourceModel, ae.Resource)
	got, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, m, got, "a refused create changes nothing")
	require.NoError(t, s.CreateModel(ctx, Model("org-b", "gpt-4o")), "another organization has its own names")
	var ve *registry.ValidationError
	require.ErrorAs(t, s.CreateModel(ctx, registry.Model{OrganizationID: "org-a", Name: "x"}), &ve)
	assert.Equal(t, []string{"lifecycle_state"}, fieldsOf(ve))
}

func testUpdateModel(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o", "ep-1")
	require.NoError(t, s.PutModel(ctx, m))

	before, after, err := s.UpdateModel(ctx, "org-a", "gpt-4o", func(cur registry.Model) (registry.ModelChange, error) {
		assert.Equal(t, m, cur)
		cur.Card = Card()
		cur.ContextWindow = 200000
		return registry.ModelChange{Model: cur}, nil
	})
	require.NoError(t, err)
	assert.Equal(t, m, before)
	want := m
	want.Card, want.ContextWindow = Card(), 200000
	assert.Equal(t, want, after)
	got, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// The callback's error is returned as is, and nothing is written.
	boom := errors.New("boom")
	_, _, err = s.UpdateModel(ctx, "org-a", "gpt-4o", func(cur registry.Model) (registry.ModelChange, error) {
		return registry.ModelChange{}, boom
	})
	assert.Same(t, boom, err)
	for _, change := range []func(*registry.Model){
		func(m *registry.Model) { m.Name = "renamed" },
		func(m *registry.Model) { m.OrganizationID = "org-b" },
		func(m *registry.Model) { m.ContextWindow = -5 },
	} {
		_, _, err = s.UpdateModel(ctx, "org-a", "gpt-4o", func(cur registry.Model) (registry.ModelChange, error) {
			change(&cur)
			return registry.ModelChange{Model: cur}, nil
		})
		var ve *registry.ValidationError
		require.ErrorAs(t, err, &ve)
	}
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, want, got, "refused updates change nothing")
	_, err = s.GetModel(ctx, "org-b", "gpt-4o")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	_, _, err = s.UpdateModel(ctx, "org-b", "gpt-4o", func(cur registry.Model) (registry.ModelChange, error) {
		t.Error("the callback runs only for a model that exists")
		return registry.ModelChange{Model: cur}, nil
	})
	assert.ErrorIs(t, err, registry.ErrNotFound, "another organization cannot update it")
}

func testUpdateModelConcurrent(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "counter")
	m.ContextWindow = 0
	require.NoError(t, s.PutModel(ctx, m))
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			_, _, err := s.UpdateModel(ctx, "org-a", "counter", func(cur registry.Model) (registry.ModelChange, error) {
				cur.ContextWindow++
				return registry.ModelChange{Model: cur}, nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	got, err := s.GetModel(ctx, "org-a", "counter")
	require.NoError(t, err)
	assert.Equal(t, int32(workers), got.ContextWindow, "no update is lost")
}

func testDeleteModel(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o")
	require.NoError(t, s.PutModel(ctx, m))
	refuse := errors.New("refused")
	_, err := s.DeleteModel(ctx, "org-a", "gpt-4o", func(registry.Model) error { return refuse })
	assert.Same(t, refuse, err)
	_, err = s.DeleteModel(ctx, "org-b", "gpt-4o", func(registry.Model) error { return nil })
	assert.ErrorIs(t, err, registry.ErrNotFound, "another organization cannot delete it")
	_, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)

	deleted, err := s.DeleteModel(ctx, "org-a", "gpt-4o", func(cur registry.Model) error {
		assert.Equal(t, m, cur)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, m, deleted)
	_, err = s.GetModel(ctx, "org-a", "gpt-4o")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.DeleteModel(ctx, "org-a", "gpt-4o", func(registry.Model) error { return nil })
	assert.ErrorIs(t, err, registry.ErrNotFound)
}

func testTransitions(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o")
	m.LifecycleState = registry.LifecycleProposed
	require.NoError(t, s.PutModel(ctx, m))
	at := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	var want []registry.Transition
	for i, to := range []registry.LifecycleState{registry.LifecycleEvaluating, registry.LifecycleApproved,
		registry.LifecycleDeprecated, registry.LifecycleRetired} {
		_, after, err := s.UpdateModel(ctx, "org-a", "gpt-4o", func(cur registry.Model) (registry.ModelChange, error) {
			next, tr, err := cur.Transition(to, "admin@example.com", fmt.Sprintf("evidence %d", i), at.Add(time.Duration(i)*time.Hour))
			return registry.ModelChange{Model: next, Transition: &tr}, err
		})
		require.NoError(t, err)
		assert.Equal(t, to, after.LifecycleState)
		want = append(want, registry.Transition{OrganizationID: "org-a", Model: "gpt-4o", From: m.LifecycleState, To: to,
			Actor: "admin@example.com", EvidenceNote: fmt.Sprintf("evidence %d", i), Time: at.Add(time.Duration(i) * time.Hour)})
		m.LifecycleState = to
	}
	// A failed update records no transition.
	_, _, err := s.UpdateModel(ctx, "org-a", "gpt-4o", func(cur registry.Model) (registry.ModelChange, error) {
		tr := registry.Transition{From: cur.LifecycleState, To: registry.LifecycleApproved, Actor: "x", EvidenceNote: "x", Time: at}
		cur.ContextWindow = -1
		return registry.ModelChange{Model: cur, Transition: &tr}, nil
	})
	require.Error(t, err)

	var got []registry.Transition
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 3)
		page, next, err := s.ListTransitions(ctx, "org-a", "gpt-4o", registry.Page{Size: 3, Token: token})
		require.NoError(t, err)
		got = append(got, page...)
		if token = next; token == "" {
			break
		}
	}
	assert.Equal(t, want, got)

	// Another organization sees none of it; the history outlives the model.
	other, _, err := s.ListTransitions(ctx, "org-b", "gpt-4o", registry.Page{})
	require.NoError(t, err)
	assert.Empty(t, other)
	_, err = s.DeleteModel(ctx, "org-a", "gpt-4o", func(registry.Model) error { return nil })
	require.NoError(t, err)
	got, _, err = s.ListTransitions(ctx, "org-a", "gpt-4o", registry.Page{})
	require.NoError(t, err)
	assert.Len(t, got, 4)
	_, _, err = s.ListTransitions(ctx, "org-a", "gpt-4o", registry.Page{Token: "junk!"})
	assert.ErrorIs(t, err, registry.ErrInvalidPageToken)
}

func testEndpointCRUD(t *testing.T, s registry.Store) {
	ctx := t.Context()
	e := Endpoint("org-a", "ep-1")
	e.CoveredByBAA = true
	require.NoError(t, s.CreateEndpoint(ctx, e))
	assert.ErrorIs(t, s.CreateEndpoint(ctx, e), registry.ErrAlreadyExists)
	require.NoError(t, s.CreateEndpoint(ctx, Endpoint("org-b", "ep-1")))
	created, err := s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, e, created, "created with BAA coverage")

	before, after, err := s.UpdateEndpoint(ctx, "org-a", "ep-1", func(cur registry.Endpoint) (registry.Endpoint, error) {
		cur.Weight, cur.Priority, cur.CoveredByBAA = 7, 2, false
		return cur, nil
	})
	require.NoError(t, err)
	assert.Equal(t, e, before)
	assert.Equal(t, int32(7), after.Weight)
	assert.False(t, after.CoveredByBAA)
	got, err := s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, after, got)
	gotB, err := s.GetEndpoint(ctx, "org-b", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, Endpoint("org-b", "ep-1"), gotB, "another organization's endpoint is untouched")

	_, _, err = s.UpdateEndpoint(ctx, "org-a", "ep-1", func(cur registry.Endpoint) (registry.Endpoint, error) {
		cur.BaseURL = "ftp://nope"
		return cur, nil
	})
	var ve *registry.ValidationError
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"base_url"}, fieldsOf(ve))
	_, _, err = s.UpdateEndpoint(ctx, "org-a", "nope", func(cur registry.Endpoint) (registry.Endpoint, error) { return cur, nil })
	assert.ErrorIs(t, err, registry.ErrNotFound)

	deleted, err := s.DeleteEndpoint(ctx, "org-a", "ep-1", func(registry.Endpoint) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, after, deleted)
	_, err = s.GetEndpoint(ctx, "org-a", "ep-1")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.GetEndpoint(ctx, "org-b", "ep-1")
	assert.NoError(t, err)
}

func testHostingRequests(t *testing.T, s registry.Store) {
	ctx := t.Context()
	h := HostingRequest("org-a", "hr-1")
	require.NoError(t, s.CreateHostingRequest(ctx, h))
	assert.ErrorIs(t, s.CreateHostingRequest(ctx, h), registry.ErrAlreadyExists)
	got, err := s.GetHostingRequest(ctx, "org-a", "hr-1")
	require.NoError(t, err)
	assert.Equal(t, h, got)
	_, err = s.GetHostingRequest(ctx, "org-b", "hr-1")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	at := time.Date(2025, 3, 2, 9, 0, 0, 0, time.UTC)
	before, after, err := s.UpdateHostingRequest(ctx, "org-a", "hr-1", func(cur registry.HostingRequest) (registry.HostingRequest, error) {
		return cur.Transition(registry.HostingApproved, "root@example.com", "capacity available", at)
	})
	require.NoError(t, err)
	assert.Equal(t, h, before)
	assert.Equal(t, registry.HostingApproved, after.State)
	assert.Equal(t, "root@example.com", after.DecidedBy)
	assert.Equal(t, at, after.DecideTime)
	got, err = s.GetHostingRequest(ctx, "org-a", "hr-1")
	require.NoError(t, err)
	assert.Equal(t, after, got)
	assert.Equal(t, after.Etag(), got.Etag())

	_, _, err = s.UpdateHostingRequest(ctx, "org-b", "hr-1", func(cur registry.HostingRequest) (registry.HostingRequest, error) {
		return cur, nil
	})
	assert.ErrorIs(t, err, registry.ErrNotFound, "another organization cannot decide it")
	_, _, err = s.UpdateHostingRequest(ctx, "org-a", "hr-1", func(cur registry.HostingRequest) (registry.HostingRequest, error) {
		cur.Region = ""
		return cur, nil
	})
	var ve *registry.ValidationError
	require.ErrorAs(t, err, &ve)

	// The team is fixed at creation.
	_, _, err = s.UpdateHostingRequest(ctx, "org-a", "hr-1", func(cur registry.HostingRequest) (registry.HostingRequest, error) {
		cur.TeamID = "oncology"
		return cur, nil
	})
	require.ErrorAs(t, err, &ve)
	assert.Equal(t, []string{"team_id"}, fieldsOf(ve))
	got, err = s.GetHostingRequest(ctx, "org-a", "hr-1")
	require.NoError(t, err)
	assert.Equal(t, "radiology", got.TeamID)

	var bad registry.HostingRequest
	require.ErrorAs(t, s.CreateHostingRequest(ctx, bad), &ve)
	assert.ElementsMatch(t, []string{"organization_id", "id", "requester", "model", "requests_per_minute", "region",
		"justification", "state", "team_id"}, fieldsOf(ve))
	bad = HostingRequest("org-a", "hr-2")
	bad.TeamID = "no spaces"
	require.ErrorAs(t, s.CreateHostingRequest(ctx, bad), &ve)
	assert.Equal(t, []string{"team_id"}, fieldsOf(ve))
}

func testHostingRequestsList(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for i, st := range []registry.HostingState{registry.HostingSubmitted, registry.HostingApproved,
		registry.HostingSubmitted, registry.HostingRejected} {
		h := HostingRequest("org-a", fmt.Sprintf("hr-%d", i))
		h.State = st
		if i == 2 {
			h.Requester = "bob@example.com"
		}
		if i >= 2 {
			h.TeamID = "oncology"
		}
		require.NoError(t, s.CreateHostingRequest(ctx, h))
	}
	hb := HostingRequest("org-b", "hr-9")
	hb.TeamID = "oncology"
	require.NoError(t, s.CreateHostingRequest(ctx, hb))
	ids := func(f registry.HostingFilter, size int) []string {
		var out []string
		token := ""
		for range 10 {
			page, next, err := s.ListHostingRequests(ctx, "org-a", f, registry.Page{Size: size, Token: token})
			require.NoError(t, err)
			for _, h := range page {
				out = append(out, h.ID)
			}
			if token = next; token == "" {
				break
			}
		}
		return out
	}
	assert.Equal(t, []string{"hr-0", "hr-1", "hr-2", "hr-3"}, ids(registry.HostingFilter{}, 3))
	assert.Equal(t, []string{"hr-0", "hr-2"}, ids(registry.HostingFilter{States: []registry.HostingState{registry.HostingSubmitted}}, 1))
	assert.Equal(t, []string{"hr-2"}, ids(registry.HostingFilter{Requester: "bob@example.com"}, 0))
	assert.Equal(t, []string{"hr-2", "hr-3"}, ids(registry.HostingFilter{TeamID: "oncology"}, 1), "one team's, never another organization's")
	assert.Equal(t, []string{"hr-0", "hr-1"}, ids(registry.HostingFilter{TeamID: "radiology"}, 0))
	assert.Equal(t, []string{"hr-2"}, ids(registry.HostingFilter{TeamID: "oncology", States: []registry.HostingState{registry.HostingSubmitted}}, 0))
	assert.Empty(t, ids(registry.HostingFilter{TeamID: "cardiology"}, 0))
	page, _, err := s.ListHostingRequests(ctx, "org-c", registry.HostingFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Empty(t, page)
	_, _, err = s.ListHostingRequests(ctx, "org-a", registry.HostingFilter{}, registry.Page{Token: "junk!"})
	assert.ErrorIs(t, err, registry.ErrInvalidPageToken)
}
