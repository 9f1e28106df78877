package registry_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrymem"
	"github.com/fmgate/fmgate/services/registry/registrytest"
)

// routing builds a registry of org-a whose models exercise priorities and fallbacks.
func routing(t *testing.T) registry.Store {
	t.Helper()
	ctx := t.Context()
	s := registrymem.New()
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
	model("fb-2", registry.LifecycleDeprecated, []string{"g1"}, "fb-3")
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
	return s
}

func ids(resp *registryv1.ResolveRouteResponse) []string {
	var out []string
	for _, e := range resp.GetEndpoints() {
		out = append(out, e.GetId())
	}
	return out
}

func TestResolveRouteOrder(t *testing.T) {
	log, logs := grpctest.Logger(t)
	srv := registry.NewServer(routing(t), log)
	client := registryv1.NewRegistryServiceClient(grpctest.Serve(t, srv.Register))
	ctx := t.Context()

	tests := []struct {
		model string
		want  []string
		tiers []int32 // one per priority group of each model; a fallback model starts a new one
	}{
		{"prio", []string{"a1", "a2", "b1", "b2", "c1"}, []int32{0, 0, 1, 1, 2}},
		{"main", []string{"a1", "f2", "f1", "g1"}, []int32{0, 1, 2, 3}},
		{"fb-1", []string{"a1", "f2", "f1", "g1"}, []int32{0, 0, 1, 2}}, // fb-2 is its own fallback here
		{"only-fallbacks", []string{"g1"}, []int32{0}},
	}
	for _, tt := range tests {
		t.Run(tt.model, func(t *testing.T) {
			resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: tt.model})
			require.NoError(t, err)
			assert.Equal(t, tt.model, resp.GetModel().GetName(), "the model is the one asked for, not a fallback")
			assert.Equal(t, tt.want, ids(resp))
			assert.Equal(t, tt.tiers, resp.GetEndpointTiers())
		})
	}

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
