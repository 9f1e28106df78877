// Package registrytest holds the conformance suite every registry.Store passes, and fixtures
// for tests of code that uses a registry.
package registrytest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/registry"
)

// Model returns a valid, approved model of org served by the given endpoints.
func Model(org, name string, endpointIDs ...string) registry.Model {
	return registry.Model{
		OrganizationID:        org,
		Name:                  name,
		DisplayName:           "Model " + name,
		Vendor:                "acme",
		LifecycleState:        registry.LifecycleApproved,
		ContextWindow:         128000,
		InputPricePerMillion:  2.5,
		OutputPricePerMillion: 10,
		EndpointIDs:           endpointIDs,
	}
}

// Endpoint returns a valid endpoint of org.
func Endpoint(org, id string) registry.Endpoint {
	return registry.Endpoint{
		OrganizationID: org,
		ID:             id,
		Provider:       registry.ProviderOpenAICompatible,
		BaseURL:        "http://127.0.0.1:8081/v1",
		UpstreamModel:  "upstream-" + id,
		CredentialRef:  "env:FMGATE_TEST_KEY",
		Region:         "eu-west-1",
	}
}

// TestStore runs the conformance suite against stores made by newStore, which returns a
// new, empty store for each subtest.
func TestStore(t *testing.T, newStore func(t *testing.T) registry.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s registry.Store)
	}{
		{"ModelRoundTrip", testModelRoundTrip},
		{"ModelUpsert", testModelUpsert},
		{"ModelNotFound", testModelNotFound},
		{"ModelInvalid", testModelInvalid},
		{"ListModelsOrderAndPages", testListModelsPages},
		{"ListModelsFilter", testListModelsFilter},
		{"ListModelsDefaultPageSize", testListModelsDefaultPageSize},
		{"ListInvalidToken", testListInvalidToken},
		{"ModelFallbacks", testModelFallbacks},
		{"EndpointRoundTrip", testEndpointRoundTrip},
		{"EndpointRouting", testEndpointRouting},
		{"EndpointProviders", testEndpointProviders},
		{"EndpointInvalidRouting", testEndpointInvalidRouting},
		{"EndpointNotFoundAndInvalid", testEndpointNotFoundAndInvalid},
		{"GetEndpointsOrder", testGetEndpointsOrder},
		{"ListEndpointsPages", testListEndpointsPages},
		{"CrossTenant", testCrossTenant},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range append(tests, adminTests...) {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, newStore(t)) })
	}
}

func testModelRoundTrip(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "meta/llama-3.1:8b", "ep-2", "ep-1")
	require.NoError(t, s.PutModel(ctx, m))
	got, err := s.GetModel(ctx, "org-a", m.Name)
	require.NoError(t, err)
	assert.Equal(t, m, got)

	// The returned value shares no memory with the store.
	got.EndpointIDs[0] = "mutated"
	m.EndpointIDs[1] = "mutated"
	again, err := s.GetModel(ctx, "org-a", m.Name)
	require.NoError(t, err)
	assert.Equal(t, []string{"ep-2", "ep-1"}, again.EndpointIDs)

	// No endpoints at all reads back as empty, whichever way the store keeps it.
	bare := Model("org-a", "bare")
	require.NoError(t, s.PutModel(ctx, bare))
	got, err = s.GetModel(ctx, "org-a", "bare")
	require.NoError(t, err)
	assert.Empty(t, got.EndpointIDs)
}

func testModelUpsert(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o", "ep-1")
	require.NoError(t, s.PutModel(ctx, m))
	require.NoError(t, s.PutModel(ctx, m), "putting the same value again is idempotent")
	got, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, m, got)

	m.LifecycleState = registry.LifecycleDeprecated
	m.DisplayName = "GPT-4o (old)"
	m.EndpointIDs = []string{"ep-3", "ep-1"}
	m.ContextWindow = 0
	m.InputPricePerMillion = 0.125
	require.NoError(t, s.PutModel(ctx, m))
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, m, got)

	page, _, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Len(t, page, 1, "an upsert replaces, it does not add")
}

func testModelNotFound(t *testing.T, s registry.Store) {
	_, err := s.GetModel(t.Context(), "org-a", "nope")
	require.ErrorIs(t, err, registry.ErrNotFound)
	var nf *registry.NotFoundError
	require.ErrorAs(t, err, &nf)
	assert.Equal(t, registry.ResourceModel, nf.Resource)
	assert.Equal(t, "nope", nf.Name)
}

func testModelInvalid(t *testing.T, s registry.Store) {
	ctx := t.Context()
	bad := registry.Model{Name: "-bad name", LifecycleState: "live", ContextWindow: -1, EndpointIDs: []string{"a", "a"}}
	err := s.PutModel(ctx, bad)
	var ve *registry.ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	assert.ElementsMatch(t, []string{"organization_id", "name", "lifecycle_state", "context_window", "endpoint_ids[1]"}, fields)
	page, _, err := s.ListModels(ctx, "", registry.ModelFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Empty(t, page, "an invalid model is not stored")
}

// Names whose byte order differs from common collations' order.
var orderedNames = []string{"B-model", "Z", "a", "a-b", "a.b", "a/b", "a_b", "b"}

func testListModelsPages(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for _, i := range []int{5, 2, 7, 0, 3, 6, 1, 4} {
		require.NoError(t, s.PutModel(ctx, Model("org-a", orderedNames[i])))
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4, "paging does not end")
		page, next, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{Size: 3, Token: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 3)
		for _, m := range page {
			got = append(got, m.Name)
			assert.Equal(t, Model("org-a", m.Name), m)
		}
		if next == "" {
			assert.Equal(t, 2, pages, "8 models in pages of 3 take 3 pages")
			break
		}
		token = next
	}
	assert.Equal(t, orderedNames, got)

	// A page that ends exactly at the last item has no next page.
	page, next, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{Size: len(orderedNames)})
	require.NoError(t, err)
	assert.Len(t, page, len(orderedNames))
	assert.Empty(t, next)
}

func testListModelsFilter(t *testing.T, s registry.Store) {
	ctx := t.Context()
	states := []registry.LifecycleState{registry.LifecycleProposed, registry.LifecycleEvaluating,
		registry.LifecycleApproved, registry.LifecycleDeprecated, registry.LifecycleRetired}
	for i, st := range states {
		m := Model("org-a", fmt.Sprintf("m%d-%s", i, st))
		m.LifecycleState = st
		require.NoError(t, s.PutModel(ctx, m))
	}
	page, next, err := s.ListModels(ctx, "org-a", registry.ModelFilter{States: registry.RoutableStates}, registry.Page{Size: 1})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "m2-approved", page[0].Name)
	require.NotEmpty(t, next)
	page, next, err = s.ListModels(ctx, "org-a", registry.ModelFilter{States: registry.RoutableStates}, registry.Page{Size: 1, Token: next})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, "m3-deprecated", page[0].Name)
	assert.Empty(t, next, "no routable model follows")

	all, _, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Len(t, all, len(states))
}

func testListModelsDefaultPageSize(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for i := range registry.DefaultPageSize + 1 {
		require.NoError(t, s.PutModel(ctx, Model("org-a", fmt.Sprintf("m%03d", i))))
	}
	page, next, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Len(t, page, registry.DefaultPageSize)
	require.NotEmpty(t, next)
	page, next, err = s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{Token: next})
	require.NoError(t, err)
	require.Len(t, page, 1)
	assert.Equal(t, fmt.Sprintf("m%03d", registry.DefaultPageSize), page[0].Name)
	assert.Empty(t, next)
}

func testListInvalidToken(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for _, tok := range []string{"garbage!", "bm90LW91cnM", registry.EncodePageToken("")[:2]} {
		_, _, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{Token: tok})
		assert.ErrorIs(t, err, registry.ErrInvalidPageToken, "models, token %q", tok)
		_, _, err = s.ListEndpoints(ctx, "org-a", registry.Page{Token: tok})
		assert.ErrorIs(t, err, registry.ErrInvalidPageToken, "endpoints, token %q", tok)
	}
}

func testEndpointRoundTrip(t *testing.T, s registry.Store) {
	ctx := t.Context()
	e := Endpoint("org-a", "ep-1")
	require.NoError(t, s.PutEndpoint(ctx, e))
	require.NoError(t, s.PutEndpoint(ctx, e), "putting the same value again is idempotent")
	got, err := s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, e, got)

	e.Provider = registry.ProviderOpenAI
	e.BaseURL = "https://api.openai.com/v1"
	e.CredentialRef = "file:/run/secrets/openai"
	e.Region = ""
	require.NoError(t, s.PutEndpoint(ctx, e))
	got, err = s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, e, got)

	// BAA coverage is stored, changed by a put, and read back by every read.
	e.CoveredByBAA = true
	require.NoError(t, s.PutEndpoint(ctx, e))
	got, err = s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.True(t, got.CoveredByBAA)
	eps, err := s.GetEndpoints(ctx, "org-a", []string{"ep-1"})
	require.NoError(t, err)
	assert.Equal(t, []registry.Endpoint{e}, eps)
	page, _, err := s.ListEndpoints(ctx, "org-a", registry.Page{})
	require.NoError(t, err)
	assert.Equal(t, []registry.Endpoint{e}, page)
	e.CoveredByBAA = false
	require.NoError(t, s.PutEndpoint(ctx, e))
	got, err = s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.False(t, got.CoveredByBAA, "a put withdraws coverage")
}

func testModelFallbacks(t *testing.T, s registry.Store) {
	ctx := t.Context()
	m := Model("org-a", "gpt-4o", "ep-1")
	m.FallbackModels = []string{"claude", "meta/llama-3.1:8b"}
	require.NoError(t, s.PutModel(ctx, m))
	got, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, m, got)

	// The returned value shares no memory with the store.
	got.FallbackModels[0] = "mutated"
	m.FallbackModels[1] = "mutated"
	again, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, []string{"claude", "meta/llama-3.1:8b"}, again.FallbackModels)

	// Changing only the fallbacks (order included) is an update, and so is removing them.
	m.FallbackModels = []string{"meta/llama-3.1:8b", "claude"}
	require.NoError(t, s.PutModel(ctx, m))
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, []string{"meta/llama-3.1:8b", "claude"}, got.FallbackModels)
	m.FallbackModels = nil
	require.NoError(t, s.PutModel(ctx, m))
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Empty(t, got.FallbackModels)

	// Invalid fallbacks are refused, each named.
	bad := Model("org-a", "gpt-4o", "ep-1")
	bad.FallbackModels = []string{"gpt-4o", "claude", "claude", "bad name!"}
	var ve *registry.ValidationError
	require.ErrorAs(t, s.PutModel(ctx, bad), &ve)
	assert.ElementsMatch(t, []string{"fallback_models[0]", "fallback_models[2]", "fallback_models[3]"}, fieldsOf(ve))
	bad.FallbackModels = []string{"f1", "f2", "f3", "f4", "f5", "f6"}
	require.ErrorAs(t, s.PutModel(ctx, bad), &ve)
	assert.Equal(t, []string{"fallback_models"}, fieldsOf(ve))
	got, err = s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Empty(t, got.FallbackModels, "an invalid model does not replace the stored one")
}

func fieldsOf(ve *registry.ValidationError) []string {
	var fields []string
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	return fields
}

func testEndpointRouting(t *testing.T, s registry.Store) {
	ctx := t.Context()
	e := Endpoint("org-a", "ep-1")
	e.Weight, e.Priority, e.APIVersion = 250, 3, "2024-10-21"
	require.NoError(t, s.PutEndpoint(ctx, e))
	got, err := s.GetEndpoint(ctx, "org-a", "ep-1")
	require.NoError(t, err)
	assert.Equal(t, e, got)

	// Each routing field alone is an update.
	for _, change := range []func(*registry.Endpoint){
		func(e *registry.Endpoint) { e.Weight = registry.MaxWeight },
		func(e *registry.Endpoint) { e.Priority = registry.MaxPriority },
		func(e *registry.Endpoint) { e.APIVersion = "2025-01-01-preview" },
		func(e *registry.Endpoint) { e.Weight, e.Priority, e.APIVersion = 0, 0, "" },
	} {
		change(&e)
		require.NoError(t, s.PutEndpoint(ctx, e))
		got, err := s.GetEndpoint(ctx, "org-a", "ep-1")
		require.NoError(t, err)
		assert.Equal(t, e, got)
		eps, err := s.GetEndpoints(ctx, "org-a", []string{"ep-1"})
		require.NoError(t, err)
		assert.Equal(t, []registry.Endpoint{e}, eps)
	}
}

func testEndpointProviders(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for _, p := range registry.Providers {
		e := Endpoint("org-a", "ep-"+string(p))
		e.Provider = p
		e.APIVersion = "2024-10-21" // required by azure_openai, allowed for every provider
		require.NoError(t, s.PutEndpoint(ctx, e), p)
		got, err := s.GetEndpoint(ctx, "org-a", e.ID)
		require.NoError(t, err)
		assert.Equal(t, e, got)
	}
	page, _, err := s.ListEndpoints(ctx, "org-a", registry.Page{})
	require.NoError(t, err)
	assert.Len(t, page, len(registry.Providers))
}

func testEndpointInvalidRouting(t *testing.T, s registry.Store) {
	ctx := t.Context()
	tests := []struct {
		name   string
		change func(*registry.Endpoint)
		fields []string
	}{
		{"weight too low", func(e *registry.Endpoint) { e.Weight = -1 }, []string{"weight"}},
		{"weight too high", func(e *registry.Endpoint) { e.Weight = registry.MaxWeight + 1 }, []string{"weight"}},
		{"priority too low", func(e *registry.Endpoint) { e.Priority = -1 }, []string{"priority"}},
		{"priority too high", func(e *registry.Endpoint) { e.Priority = registry.MaxPriority + 1 }, []string{"priority"}},
		{"azure without api version", func(e *registry.Endpoint) { e.Provider = registry.ProviderAzureOpenAI }, []string{"api_version"}},
		{"api version not a version", func(e *registry.Endpoint) { e.APIVersion = "2024&x=1" }, []string{"api_version"}},
		{"bedrock without region", func(e *registry.Endpoint) { e.Provider, e.Region = registry.ProviderBedrock, "" }, []string{"region"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Endpoint("org-a", "ep-bad")
			tt.change(&e)
			var ve *registry.ValidationError
			require.ErrorAs(t, s.PutEndpoint(ctx, e), &ve)
			assert.Equal(t, tt.fields, fieldsOf(ve))
			_, err := s.GetEndpoint(ctx, "org-a", "ep-bad")
			assert.ErrorIs(t, err, registry.ErrNotFound, "an invalid endpoint is not stored")
		})
	}
}

func testEndpointNotFoundAndInvalid(t *testing.T, s registry.Store) {
	ctx := t.Context()
	_, err := s.GetEndpoint(ctx, "org-a", "nope")
	require.ErrorIs(t, err, registry.ErrNotFound)
	var nf *registry.NotFoundError
	require.ErrorAs(t, err, &nf)
	assert.Equal(t, registry.ResourceEndpoint, nf.Resource)

	bad := registry.Endpoint{OrganizationID: "org-a", ID: "ep", Provider: "vertex",
		BaseURL: "ftp://x", CredentialRef: "sk-live-secret"}
	err = s.PutEndpoint(ctx, bad)
	var ve *registry.ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	assert.ElementsMatch(t, []string{"provider", "base_url", "upstream_model", "credential_ref"}, fields)
	_, err = s.GetEndpoint(ctx, "org-a", "ep")
	assert.ErrorIs(t, err, registry.ErrNotFound, "an invalid endpoint is not stored")
}

func testGetEndpointsOrder(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, s.PutEndpoint(ctx, Endpoint("org-a", id)))
	}
	got, err := s.GetEndpoints(ctx, "org-a", []string{"c", "missing", "a", "b"})
	require.NoError(t, err)
	assert.Equal(t, []registry.Endpoint{Endpoint("org-a", "c"), Endpoint("org-a", "a"), Endpoint("org-a", "b")}, got)

	got, err = s.GetEndpoints(ctx, "org-a", nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testListEndpointsPages(t *testing.T, s registry.Store) {
	ctx := t.Context()
	for _, id := range []string{"e3", "e1", "e2"} {
		require.NoError(t, s.PutEndpoint(ctx, Endpoint("org-a", id)))
	}
	page, next, err := s.ListEndpoints(ctx, "org-a", registry.Page{Size: 2})
	require.NoError(t, err)
	assert.Equal(t, []registry.Endpoint{Endpoint("org-a", "e1"), Endpoint("org-a", "e2")}, page)
	require.NotEmpty(t, next)
	page, next, err = s.ListEndpoints(ctx, "org-a", registry.Page{Size: 2, Token: next})
	require.NoError(t, err)
	assert.Equal(t, []registry.Endpoint{Endpoint("org-a", "e3")}, page)
	assert.Empty(t, next)
}

func testCrossTenant(t *testing.T, s registry.Store) {
	ctx := t.Context()
	require.NoError(t, s.PutModel(ctx, Model("org-a", "shared-name", "ep-a")))
	require.NoError(t, s.PutModel(ctx, Model("org-a", "a-only", "ep-a")))
	require.NoError(t, s.PutEndpoint(ctx, Endpoint("org-a", "ep-a")))

	// Org B sees none of org A's records.
	_, err := s.GetModel(ctx, "org-b", "a-only")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	_, err = s.GetEndpoint(ctx, "org-b", "ep-a")
	assert.ErrorIs(t, err, registry.ErrNotFound)
	eps, err := s.GetEndpoints(ctx, "org-b", []string{"ep-a"})
	require.NoError(t, err)
	assert.Empty(t, eps)
	models, _, err := s.ListModels(ctx, "org-b", registry.ModelFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Empty(t, models)
	endpoints, _, err := s.ListEndpoints(ctx, "org-b", registry.Page{})
	require.NoError(t, err)
	assert.Empty(t, endpoints)

	// Org B writing the same names creates its own records and leaves org A's alone.
	mb := Model("org-b", "shared-name", "ep-a")
	mb.LifecycleState = registry.LifecycleRetired
	mb.Vendor = "other"
	require.NoError(t, s.PutModel(ctx, mb))
	eb := Endpoint("org-b", "ep-a")
	eb.BaseURL = "http://127.0.0.1:9999"
	require.NoError(t, s.PutEndpoint(ctx, eb))

	gotA, err := s.GetModel(ctx, "org-a", "shared-name")
	require.NoError(t, err)
	assert.Equal(t, Model("org-a", "shared-name", "ep-a"), gotA)
	gotEA, err := s.GetEndpoint(ctx, "org-a", "ep-a")
	require.NoError(t, err)
	assert.Equal(t, Endpoint("org-a", "ep-a"), gotEA)
	gotB, err := s.GetModel(ctx, "org-b", "shared-name")
	require.NoError(t, err)
	assert.Equal(t, mb, gotB)

	// A page token from one org does not reveal the other's rows.
	page, next, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{Size: 1})
	require.NoError(t, err)
	require.Len(t, page, 1)
	rest, _, err := s.ListModels(ctx, "org-b", registry.ModelFilter{}, registry.Page{Token: next})
	require.NoError(t, err)
	for _, m := range rest {
		assert.Equal(t, "org-b", m.OrganizationID)
	}
}

func testConcurrent(t *testing.T, s registry.Store) {
	ctx := t.Context()
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers*3)
	for w := range workers {
		wg.Go(func() {
			name := fmt.Sprintf("m%d", w%2) // two models written by four workers each
			errs <- s.PutModel(ctx, Model("org-a", name, "ep"))
			errs <- s.PutEndpoint(ctx, Endpoint("org-a", "ep"))
			_, err := s.GetModel(ctx, "org-a", name)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	models, _, err := s.ListModels(ctx, "org-a", registry.ModelFilter{}, registry.Page{})
	require.NoError(t, err)
	assert.Len(t, models, 2)
}
