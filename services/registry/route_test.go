package registry_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrymem"
	"github.com/fmgate/fmgate/services/registry/registrypg"
	"github.com/fmgate/fmgate/services/registry/registrytest"
)

// routeStores are the stores routes are resolved from: the server's route code is the same
// for both, and both must give it the same cards.
var routeStores = []struct {
	name string
	new  func(t *testing.T) registry.Store
}{
	{"memory", func(*testing.T) registry.Store { return registrymem.New() }},
	{"postgres", func(t *testing.T) registry.Store {
		pool, schema := pgtest.Schema(t, "registry")
		require.NoError(t, registrypg.Migrate(t.Context(), pool, schema))
		return registrypg.New(pool, schema)
	}},
}

// routing fills s with models of org-a that exercise priorities and fallbacks.
func routing(t *testing.T, s registry.Store) registry.Store {
	t.Helper()
	ctx := t.Context()
	ep := func(id string, priority, weight int32) {
		e := registrytest.Endpoint("org-a", id)
		e.Priority, e.Weight = priority, weight
		require.NoError(t, s.PutEndpoint(ctx, e))
	}
	// Listed order b1, a1, b2, a2, c1: priority 0 (a*) before 1 (b*) before 5 (c*), listed
	// order kept within a priority.
	ep("b1", 1, 10)
	ep("a1", 0, 3)
	ep("b2", 1, 0)
	ep("a2", 0, 7)
	ep("c1", 5, 0)
	ep("f1", 1, 0)
	ep("f2", 0, 0)
	ep("g1", 0, 0)
	ep("h1", 0, 0)
	ep("other-org", 0, 0)
	require.NoError(t, s.PutEndpoint(ctx, registrytest.Endpoint("org-b", "b-only")))

	model := func(name string, state registry.LifecycleState, endpoints []string, fallbacks ...string) {
		m := registrytest.Model("org-a", name, endpoints...)
		m.LifecycleState, m.FallbackModels = state, fallbacks
		require.NoError(t, s.PutModel(ctx, m))
	}
	model("prio", registry.LifecycleApproved, []string{"b1", "a1", "b2", "a2", "c1"})
	// Fallbacks in order; missing, retired and proposed ones skipped; another org's model of
	// the same name is invisible; an endpoint shared with an earlier model is tried once.
	model("main", registry.LifecycleApproved, []string{"a1", "gone"},
		"missing", "fb-retired", "fb-1", "fb-other-org", "fb-2")
	model("fb-1", registry.LifecycleApproved, []string{"f1", "a1", "f2"}, "fb-2") // not followed transitively
	fb2 := registrytest.Model("org-a", "fb-2", "g1")
	fb2.LifecycleState, fb2.FallbackModels = registry.LifecycleDeprecated, []string{"fb-3"}
	fb2.Card.License = registry.License{Name: "Acme Research Licence", Version: "2", AcceptanceRequired: true}
	require.NoError(t, s.PutModel(ctx, fb2))
	model("fb-3", registry.LifecycleApproved, []string{"h1"})
	model("fb-retired", registry.LifecycleRetired, []string{"h1"})
	model("fb-proposed", registry.LifecycleProposed, []string{"h1"})
	mb := registrytest.Model("org-b", "fb-other-org", "b-only")
	require.NoError(t, s.PutModel(ctx, mb))
	// Only the requested model's own state decides.
	model("retired-with-fallback", registry.LifecycleRetired, []string{"a1"}, "fb-1")
	model("proposed-with-fallback", registry.LifecycleProposed, []string{"a1"}, "fb-1")
	model("only-fallbacks", registry.LifecycleApproved, nil, "fb-2")
	model("dead-fallbacks", registry.LifecycleApproved, []string{"gone"}, "missing", "fb-retired", "fb-proposed")
	// fb-1 only repeats endpoints the model already lists: it serves none of them.
	model("shared", registry.LifecycleApproved, []string{"f1", "a1", "f2"}, "fb-1", "fb-3")
	return s
}

func ids(resp *registryv1.ResolveRouteResponse) []string {
	var out []string
	for _, e := range resp.GetEndpoints() {
		out = append(out, e.GetId())
	}
	return out
}

func fallbackNames(resp *registryv1.ResolveRouteResponse) []string {
	var out []string
	for _, m := range resp.GetFallbackModels() {
		out = append(out, m.GetName())
	}
	return out
}

func TestResolveRouteOrder(t *testing.T) {
	for _, st := range routeStores {
		t.Run(st.name, func(t *testing.T) { testResolveRouteOrder(t, st.new(t)) })
	}
}

func testResolveRouteOrder(t *testing.T, store registry.Store) {
	log, logs := grpctest.Logger(t)
	srv := registry.NewServer(routing(t, store), log)
	client := registryv1.NewRegistryServiceClient(grpctest.Serve(t, srv.Register))
	ctx := t.Context()

	tests := []struct {
		model string
		want  []string
		tiers []int32 // one per priority group of each model; a fallback model starts a new one
		// The model each endpoint is routed for, and the fallbacks that contributed any.
		models    []string
		fallbacks []string
	}{
		{"prio", []string{"a1", "a2", "b1", "b2", "c1"}, []int32{0, 0, 1, 1, 2},
			[]string{"prio", "prio", "prio", "prio", "prio"}, nil},
		{"main", []string{"a1", "f2", "f1", "g1"}, []int32{0, 1, 2, 3},
			[]string{"main", "fb-1", "fb-1", "fb-2"}, []string{"fb-1", "fb-2"}},
		{"fb-1", []string{"a1", "f2", "f1", "g1"}, []int32{0, 0, 1, 2}, // fb-2 is its own fallback here
			[]string{"fb-1", "fb-1", "fb-1", "fb-2"}, []string{"fb-2"}},
		{"only-fallbacks", []string{"g1"}, []int32{0}, []string{"fb-2"}, []string{"fb-2"}},
		{"shared", []string{"a1", "f2", "f1", "h1"}, []int32{0, 0, 1, 3}, // tiers rise, not necessarily by one
			[]string{"shared", "shared", "shared", "fb-3"}, []string{"fb-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: tt.model})
			require.NoError(t, err)
			assert.Equal(t, tt.model, resp.GetModel().GetName(), "the model is the one asked for, not a fallback")
			assert.Equal(t, tt.want, ids(resp))
			assert.Equal(t, tt.tiers, resp.GetEndpointTiers())
			assert.Equal(t, tt.models, resp.GetEndpointModels())
			assert.Equal(t, tt.fallbacks, fallbackNames(resp))
		})
	}

	t.Run("fallback cards are whole", func(t *testing.T) {
		resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "main"})
		require.NoError(t, err)
		require.Len(t, resp.GetFallbackModels(), 2)
		fb2 := resp.GetFallbackModels()[1]
		assert.Equal(t, "org-a", fb2.GetOrganizationId())
		assert.Equal(t, registryv1.LifecycleState_LIFECYCLE_STATE_DEPRECATED, fb2.GetLifecycleState())
		assert.Equal(t, []string{"g1"}, fb2.GetEndpointIds())
		lic := fb2.GetLicense()
		assert.Equal(t, "Acme Research Licence", lic.GetName())
		assert.Equal(t, "2", lic.GetVersion())
		assert.True(t, lic.GetAcceptanceRequired(), "the licence the edge checks travels with the fallback")
		assert.False(t, resp.GetFallbackModels()[0].GetLicense().GetAcceptanceRequired())
	})

	t.Run("weights and priorities travel with the endpoints", func(t *testing.T) {
		resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "prio"})
		require.NoError(t, err)
		type wp struct{ weight, priority int32 }
		var got []wp
		for _, e := range resp.GetEndpoints() {
			got = append(got, wp{e.GetWeight(), e.GetPriority()})
		}
		assert.Equal(t, []wp{{3, 0}, {7, 0}, {10, 1}, {0, 1}, {0, 5}}, got)
	})

	t.Run("fallbacks are listed on the model", func(t *testing.T) {
		resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "main"})
		require.NoError(t, err)
		assert.Equal(t, []string{"missing", "fb-retired", "fb-1", "fb-other-org", "fb-2"},
			resp.GetModel().GetFallbackModels())
		for _, skipped := range []string{`"fallback":"missing"`, `"fallback":"fb-retired"`, `"fallback":"fb-other-org"`} {
			assert.Contains(t, logs.String(), skipped, "a skipped fallback is logged")
		}
		assert.NotContains(t, logs.String(), `"fallback":"fb-1"`)
	})

	errs := []struct {
		model  string
		code   codes.Code
		reason string
	}{
		{"retired-with-fallback", codes.FailedPrecondition, "MODEL_RETIRED"},
		{"proposed-with-fallback", codes.FailedPrecondition, "MODEL_NOT_ROUTABLE"},
		{"dead-fallbacks", codes.FailedPrecondition, "NO_ENDPOINT"},
		{"fb-other-org", codes.NotFound, "MODEL_NOT_FOUND"},
	}
	for _, tt := range errs {
		t.Run(tt.model, func(t *testing.T) {
			_, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: tt.model})
			assert.Equal(t, tt.code, status.Code(err))
			assert.Equal(t, tt.reason, grpctest.ErrorInfo(err).GetReason())
		})
	}
	assert.Contains(t, logs.String(), `"fallback":"fb-proposed"`, "dead-fallbacks logged its proposed fallback")
}

func TestOrderByPriorityIsStable(t *testing.T) {
	eps := []registry.Endpoint{{ID: "x", Priority: 2}, {ID: "y", Priority: 0}, {ID: "z", Priority: 2}, {ID: "w", Priority: 0}}
	registry.OrderByPriority(eps)
	var got []string
	for _, e := range eps {
		got = append(got, e.ID)
	}
	assert.Equal(t, []string{"y", "w", "x", "z"}, got)
}
