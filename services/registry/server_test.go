package registry_test

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrymem"
	"github.com/fmgate/fmgate/services/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs the registry over store on a real grpc.Server on bufconn and returns a client.
func serve(t *testing.T, store registry.Store) registryv1.RegistryServiceClient {
	t.Helper()
	srv := registry.NewServer(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	return registryv1.NewRegistryServiceClient(grpctest.Serve(t, srv.Register))
}

func seed(t *testing.T) registry.Store {
	t.Helper()
	ctx := t.Context()
	s := registrymem.New()
	put := func(m registry.Model, state registry.LifecycleState) {
		m.LifecycleState = state
		require.NoError(t, s.PutModel(ctx, m))
	}
	put(registrytest.Model("org-a", "gpt-4o", "ep-2", "ep-gone", "ep-1"), registry.LifecycleApproved)
	put(registrytest.Model("org-a", "gpt-3.5", "ep-1"), registry.LifecycleDeprecated)
	put(registrytest.Model("org-a", "llama-next", "ep-1"), registry.LifecycleProposed)
	put(registrytest.Model("org-a", "mistral-eval", "ep-1"), registry.LifecycleEvaluating)
	put(registrytest.Model("org-a", "davinci", "ep-1"), registry.LifecycleRetired)
	put(registrytest.Model("org-a", "orphan", "ep-gone"), registry.LifecycleApproved)
	put(registrytest.Model("org-a", "bare"), registry.LifecycleApproved)
	for _, id := range []string{"ep-1", "ep-2"} {
		require.NoError(t, s.PutEndpoint(ctx, registrytest.Endpoint("org-a", id)))
	}
	return s
}

func TestResolveRoute(t *testing.T) {
	client := serve(t, seed(t))
	ctx := t.Context()

	resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "gpt-4o"})
	require.NoError(t, err)
	assert.Equal(t, "gpt-4o", resp.GetModel().GetName())
	assert.Equal(t, registryv1.LifecycleState_LIFECYCLE_STATE_APPROVED, resp.GetModel().GetLifecycleState())
	assert.Equal(t, []string{"ep-2", "ep-gone", "ep-1"}, resp.GetModel().GetEndpointIds())
	assert.InDelta(t, 2.5, resp.GetModel().GetInputPricePerMillion(), 0)
	require.Len(t, resp.GetEndpoints(), 2, "endpoints that do not exist are skipped")
	assert.Equal(t, "ep-2", resp.GetEndpoints()[0].GetId())
	assert.Equal(t, "ep-1", resp.GetEndpoints()[1].GetId())
	ep := resp.GetEndpoints()[1]
	assert.Equal(t, registryv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE, ep.GetProvider())
	assert.Equal(t, "http://127.0.0.1:8081/v1", ep.GetBaseUrl())
	assert.Equal(t, "upstream-ep-1", ep.GetUpstreamModel())
	assert.Equal(t, "env:FMGATE_TEST_KEY", ep.GetCredentialRef())
	assert.Equal(t, "eu-west-1", ep.GetRegion())
	assert.Equal(t, "org-a", ep.GetOrganizationId())

	resp, err = client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "gpt-3.5"})
	require.NoError(t, err, "deprecated models stay routable")
	assert.Equal(t, registryv1.LifecycleState_LIFECYCLE_STATE_DEPRECATED, resp.GetModel().GetLifecycleState())

	tests := []struct {
		org, model string
		code       codes.Code
		reason     string
		message    string
	}{
		{"org-a", "nope", codes.NotFound, "MODEL_NOT_FOUND", `model "nope" not found`},
		{"org-b", "gpt-4o", codes.NotFound, "MODEL_NOT_FOUND", `model "gpt-4o" not found`},
		{"org-a", "llama-next", codes.FailedPrecondition, "MODEL_NOT_ROUTABLE", "is proposed"},
		{"org-a", "mistral-eval", codes.FailedPrecondition, "MODEL_NOT_ROUTABLE", "is evaluating"},
		{"org-a", "davinci", codes.FailedPrecondition, "MODEL_RETIRED", "retired"},
		{"org-a", "orphan", codes.FailedPrecondition, "NO_ENDPOINT", "no endpoint"},
		{"org-a", "bare", codes.FailedPrecondition, "NO_ENDPOINT", "no endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.org+"/"+tt.model, func(t *testing.T) {
			_, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: tt.org, Model: tt.model})
			require.Error(t, err)
			assert.Equal(t, tt.code, status.Code(err))
			assert.Equal(t, tt.reason, grpctest.ErrorInfo(err).GetReason())
			assert.Contains(t, status.Convert(err).Message(), tt.message)
		})
	}
}

func TestResolveRouteInvalid(t *testing.T) {
	client := serve(t, registrymem.New())
	_, err := client.ResolveRoute(t.Context(), &registryv1.ResolveRouteRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"organization_id", "model"}, grpctest.BadRequestFields(err))
	assert.Contains(t, status.Convert(err).Message(), "organization_id")

	_, err = client.ResolveRoute(t.Context(), &registryv1.ResolveRouteRequest{OrganizationId: "org-a"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"model"}, grpctest.BadRequestFields(err))
}

func TestListModels(t *testing.T) {
	client := serve(t, seed(t))
	ctx := t.Context()

	resp, err := client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-a"})
	require.NoError(t, err)
	var names []string
	for _, m := range resp.GetModels() {
		names = append(names, m.GetName())
	}
	assert.Equal(t, []string{"bare", "gpt-3.5", "gpt-4o", "orphan"}, names, "only approved and deprecated models, by name")
	assert.Empty(t, resp.GetNextPageToken())

	names = nil
	token := ""
	for range 5 {
		resp, err := client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-a", PageSize: 3, PageToken: token})
		require.NoError(t, err)
		for _, m := range resp.GetModels() {
			names = append(names, m.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	assert.Equal(t, []string{"bare", "gpt-3.5", "gpt-4o", "orphan"}, names)

	resp, err = client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-b"})
	require.NoError(t, err)
	assert.Empty(t, resp.GetModels(), "another organization sees nothing")

	_, err = client.ListModels(ctx, &registryv1.ListModelsRequest{PageSize: -1})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"organization_id", "page_size"}, grpctest.BadRequestFields(err))

	_, err = client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-a", PageToken: "forged"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"page_token"}, grpctest.BadRequestFields(err))
}

func TestListModelsPageSizes(t *testing.T) {
	s := registrymem.New()
	for i := range registry.MaxPageSize + 1 {
		require.NoError(t, s.PutModel(t.Context(), registrytest.Model("org-a", fmt.Sprintf("m%04d", i))))
	}
	client := serve(t, s)
	for _, tt := range []struct {
		size int32
		want int
	}{{0, 50}, {7, 7}, {1000, 1000}, {5000, 1000}} {
		resp, err := client.ListModels(t.Context(), &registryv1.ListModelsRequest{OrganizationId: "org-a", PageSize: tt.size})
		require.NoError(t, err)
		assert.Len(t, resp.GetModels(), tt.want, "page_size %d", tt.size)
		assert.NotEmpty(t, resp.GetNextPageToken())
	}
}

func TestGetEndpoint(t *testing.T) {
	client := serve(t, seed(t))
	ctx := t.Context()

	resp, err := client.GetEndpoint(ctx, &registryv1.GetEndpointRequest{OrganizationId: "org-a", Id: "ep-2"})
	require.NoError(t, err)
	assert.Equal(t, "ep-2", resp.GetEndpoint().GetId())
	assert.Equal(t, "upstream-ep-2", resp.GetEndpoint().GetUpstreamModel())

	for _, req := range []*registryv1.GetEndpointRequest{
		{OrganizationId: "org-a", Id: "ep-gone"},
		{OrganizationId: "org-b", Id: "ep-2"},
	} {
		_, err = client.GetEndpoint(ctx, req)
		assert.Equal(t, codes.NotFound, status.Code(err))
		assert.Equal(t, "ENDPOINT_NOT_FOUND", grpctest.ErrorInfo(err).GetReason())
	}

	_, err = client.GetEndpoint(ctx, &registryv1.GetEndpointRequest{})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"organization_id", "id"}, grpctest.BadRequestFields(err))
}
