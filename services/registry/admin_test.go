package registry_test

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/registry"
	"github.com/fmgate/fmgate/services/registry/registrymem"
	"github.com/fmgate/fmgate/services/registry/registrytest"
)

var fixedNow = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

func serveWith(t *testing.T, store registry.Store, cfg registry.Config) registryv1.RegistryServiceClient {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	srv := registry.NewServerWithConfig(store, slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	return registryv1.NewRegistryServiceClient(grpctest.Serve(t, srv.Register))
}

type (
	LS = registryv1.LifecycleState
)

const (
	proposed   = registryv1.LifecycleState_LIFECYCLE_STATE_PROPOSED
	evaluating = registryv1.LifecycleState_LIFECYCLE_STATE_EVALUATING
	approved   = registryv1.LifecycleState_LIFECYCLE_STATE_APPROVED
	deprecated = registryv1.LifecycleState_LIFECYCLE_STATE_DEPRECATED
	retired    = registryv1.LifecycleState_LIFECYCLE_STATE_RETIRED
)

func TestLifecycleTransitions(t *testing.T) {
	all := []LS{proposed, evaluating, approved, deprecated, retired}
	allowed := map[LS][]LS{
		proposed:   {evaluating, retired},
		evaluating: {approved, proposed, retired},
		approved:   {deprecated},
		deprecated: {approved, retired},
	}
	for _, from := range all {
		for _, to := range all {
			ok := false
			for _, a := range allowed[from] {
				ok = ok || a == to
			}
			t.Run(from.String()+"→"+to.String(), func(t *testing.T) {
				s := registrymem.New()
				m := registrytest.Model("org-a", "m", "ep-1")
				m.LifecycleState = registry.LifecycleStateFromProto(from)
				require.NoError(t, s.PutModel(t.Context(), m))
				client := serveWith(t, s, registry.Config{})
				resp, err := client.TransitionModel(t.Context(), &registryv1.TransitionModelRequest{
					OrganizationId: "org-a", Name: "m", ToState: to, EvidenceNote: "eval run 42", Actor: "admin@example.com"})
				if !ok {
					assert.Equal(t, codes.FailedPrecondition, status.Code(err))
					assert.Equal(t, "INVALID_TRANSITION", grpctest.ErrorInfo(err).GetReason())
					return
				}
				require.NoError(t, err)
				assert.Equal(t, from, resp.GetBefore().GetLifecycleState())
				assert.Equal(t, to, resp.GetAfter().GetLifecycleState())
				tr := resp.GetTransition()
				assert.Equal(t, "admin@example.com", tr.GetActor())
				assert.Equal(t, "eval run 42", tr.GetEvidenceNote())
				assert.Equal(t, fixedNow, tr.GetCreateTime().AsTime())
				assert.Equal(t, from, tr.GetFromState())
			})
		}
	}
}

func TestTransitionHistoryAndRouting(t *testing.T) {
	ctx := t.Context()
	s := registrymem.New()
	require.NoError(t, s.PutEndpoint(ctx, registrytest.Endpoint("org-a", "ep-1")))
	succ := registrytest.Model("org-a", "gpt-5", "ep-1")
	require.NoError(t, s.PutModel(ctx, succ))
	client := serveWith(t, s, registry.Config{})
	created, err := client.CreateModel(ctx, &registryv1.CreateModelRequest{Model: &registryv1.Model{
		OrganizationId: "org-a", Name: "gpt-4o", EndpointIds: []string{"ep-1"}, SuccessorModel: "gpt-5"}})
	require.NoError(t, err)
	assert.Equal(t, proposed, created.GetAfter().GetLifecycleState())
	assert.Nil(t, created.GetBefore())

	move := func(to LS) error {
		_, err := client.TransitionModel(ctx, &registryv1.TransitionModelRequest{
			OrganizationId: "org-a", Name: "gpt-4o", ToState: to, EvidenceNote: "ticket GOV-" + to.String(), Actor: "root"})
		return err
	}
	_, err = client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "gpt-4o"})
	assert.Equal(t, "MODEL_NOT_ROUTABLE", grpctest.ErrorInfo(err).GetReason())
	require.NoError(t, move(evaluating))
	require.NoError(t, move(approved))
	resp, err := client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "gpt-4o"})
	require.NoError(t, err)
	assert.Nil(t, resp.GetDeprecation(), "approved models carry no deprecation")

	// The successor must be approved before callers are sent to it.
	_, _, err = s.UpdateModel(ctx, "org-a", "gpt-5", func(cur registry.Model) (registry.ModelChange, error) {
		cur.LifecycleState = registry.LifecycleEvaluating
		return registry.ModelChange{Model: cur}, nil
	})
	require.NoError(t, err)
	err = move(deprecated)
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Equal(t, "SUCCESSOR_NOT_ROUTABLE", grpctest.ErrorInfo(err).GetReason())
	require.NoError(t, s.PutModel(ctx, succ))

	require.NoError(t, move(deprecated))
	resp, err = client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "gpt-4o"})
	require.NoError(t, err, "deprecated models stay routable")
	assert.Equal(t, "gpt-5", resp.GetDeprecation().GetSuccessorModel())
	assert.Contains(t, resp.GetDeprecation().GetMessage(), `use "gpt-5"`)

	require.NoError(t, move(retired))
	_, err = client.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: "org-a", Model: "gpt-4o"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	info := grpctest.ErrorInfo(err)
	assert.Equal(t, "MODEL_RETIRED", info.GetReason())
	assert.Equal(t, map[string]string{"model": "gpt-4o", "successor_model": "gpt-5"}, info.GetMetadata())
	assert.Equal(t, codes.FailedPrecondition, status.Code(move(approved)), "retirement is final")

	hist, err := client.ListModelTransitions(ctx, &registryv1.ListModelTransitionsRequest{OrganizationId: "org-a", Name: "gpt-4o", PageSize: 3})
	require.NoError(t, err)
	require.Len(t, hist.GetTransitions(), 3)
	assert.Equal(t, proposed, hist.GetTransitions()[0].GetFromState())
	rest, err := client.ListModelTransitions(ctx, &registryv1.ListModelTransitionsRequest{OrganizationId: "org-a", Name: "gpt-4o", PageToken: hist.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, rest.GetTransitions(), 1)
	assert.Equal(t, retired, rest.GetTransitions()[0].GetToState())
	assert.Equal(t, "ticket GOV-LIFECYCLE_STATE_RETIRED", rest.GetTransitions()[0].GetEvidenceNote())
	other, err := client.ListModelTransitions(ctx, &registryv1.ListModelTransitionsRequest{OrganizationId: "org-b", Name: "gpt-4o"})
	require.NoError(t, err)
	assert.Empty(t, other.GetTransitions(), "another organization sees no history")

	_, err = client.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: "org-a", Name: "gpt-5"})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Equal(t, []string{"to_state"}, grpctest.BadRequestFields(err))
	_, err = client.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: "org-a", Name: "gpt-5", ToState: deprecated})
	assert.Equal(t, []string{"actor", "evidence_note"}, grpctest.BadRequestFields(err))
	_, err = client.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: "org-b", Name: "gpt-5",
		ToState: deprecated, Actor: "x", EvidenceNote: "y"})
	assert.Equal(t, codes.NotFound, status.Code(err), "another organization cannot move it")
}

func TestModelAdmin(t *testing.T) {
	ctx := t.Context()
	client := serveWith(t, registrymem.New(), registry.Config{})

	_, err := client.CreateModel(ctx, &registryv1.CreateModelRequest{Model: &registryv1.Model{
		OrganizationId: "org-a", Name: "m", LifecycleState: approved}})
	assert.Equal(t, []string{"model.lifecycle_state"}, grpctest.BadRequestFields(err), "new models start proposed")
	_, err = client.CreateModel(ctx, &registryv1.CreateModelRequest{Model: &registryv1.Model{
		OrganizationId: "org-a", Name: "bad name", ContextWindow: -1, License: &registryv1.License{Url: "nope"}}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.ElementsMatch(t, []string{"model.name", "model.context_window", "model.license.url"}, grpctest.BadRequestFields(err))

	in := &registryv1.Model{OrganizationId: "org-a", Name: "m", Vendor: "openai", ContextWindow: 8192,
		UseCaseTags: []string{"chat"}, EvaluationMetrics: map[string]float64{"mmlu": 0.8}}
	created, err := client.CreateModel(ctx, &registryv1.CreateModelRequest{Model: in})
	require.NoError(t, err)
	_, err = client.CreateModel(ctx, &registryv1.CreateModelRequest{Model: in})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))

	got, err := client.GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: "org-a", Name: "m"})
	require.NoError(t, err)
	assert.Equal(t, created.GetAfter().GetEtag(), got.GetModel().GetEtag())
	assert.InDelta(t, 0.8, got.GetModel().GetEvaluationMetrics()["mmlu"], 0)
	_, err = client.GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: "org-b", Name: "m"})
	assert.Equal(t, codes.NotFound, status.Code(err))

	// A masked update changes only the named fields.
	upd, err := client.UpdateModel(ctx, &registryv1.UpdateModelRequest{
		Model:      &registryv1.Model{OrganizationId: "org-a", Name: "m", Family: "gpt-4", ContextWindow: 1, Etag: got.GetModel().GetEtag()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"family", "license.name"}},
	})
	require.NoError(t, err)
	assert.Equal(t, "gpt-4", upd.GetAfter().GetFamily())
	assert.Equal(t, int32(8192), upd.GetAfter().GetContextWindow(), "fields outside the mask stay")
	assert.Empty(t, upd.GetBefore().GetFamily())
	assert.NotEqual(t, upd.GetBefore().GetEtag(), upd.GetAfter().GetEtag())

	// The stale etag is refused.
	_, err = client.UpdateModel(ctx, &registryv1.UpdateModelRequest{
		Model:      &registryv1.Model{OrganizationId: "org-a", Name: "m", Family: "x", Etag: got.GetModel().GetEtag()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"family"}},
	})
	assert.Equal(t, codes.Aborted, status.Code(err))
	assert.Equal(t, "ETAG_MISMATCH", grpctest.ErrorInfo(err).GetReason())

	_, err = client.UpdateModel(ctx, &registryv1.UpdateModelRequest{
		Model:      &registryv1.Model{OrganizationId: "org-a", Name: "m"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"lifecycle_state", "nope", "name"}},
	})
	assert.Equal(t, []string{"update_mask.paths[0]", "update_mask.paths[1]", "update_mask.paths[2]"}, grpctest.BadRequestFields(err))
	_, err = client.UpdateModel(ctx, &registryv1.UpdateModelRequest{
		Model:      &registryv1.Model{OrganizationId: "org-a", Name: "m", MaxOutputTokens: -3},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"max_output_tokens"}},
	})
	assert.Equal(t, []string{"model.max_output_tokens"}, grpctest.BadRequestFields(err))
	_, err = client.UpdateModel(ctx, &registryv1.UpdateModelRequest{
		Model: &registryv1.Model{OrganizationId: "org-b", Name: "m"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"family"}}})
	assert.Equal(t, codes.NotFound, status.Code(err), "another organization cannot update it")

	// An empty mask replaces every updatable field, never the state.
	full, err := client.UpdateModel(ctx, &registryv1.UpdateModelRequest{Model: &registryv1.Model{
		OrganizationId: "org-a", Name: "m", DisplayName: "M", LifecycleState: approved}})
	require.NoError(t, err)
	assert.Equal(t, "M", full.GetAfter().GetDisplayName())
	assert.Empty(t, full.GetAfter().GetFamily())
	assert.Equal(t, proposed, full.GetAfter().GetLifecycleState())

	// Lists: every state on request, routable ones by default.
	list, err := client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-a"})
	require.NoError(t, err)
	assert.Empty(t, list.GetModels())
	list, err = client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-a", LifecycleStates: []LS{proposed}, Vendor: "openai"})
	require.NoError(t, err)
	require.Len(t, list.GetModels(), 0, "the empty-mask update cleared the vendor")
	list, err = client.ListModels(ctx, &registryv1.ListModelsRequest{OrganizationId: "org-a", LifecycleStates: []LS{proposed, 42}})
	assert.Equal(t, []string{"lifecycle_states[1]"}, grpctest.BadRequestFields(err))

	// Deletion: only proposed or retired models, with a matching etag.
	_, err = client.DeleteModel(ctx, &registryv1.DeleteModelRequest{OrganizationId: "org-a", Name: "m", Etag: got.GetModel().GetEtag()})
	assert.Equal(t, codes.Aborted, status.Code(err))
	_, err = client.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: "org-a", Name: "m",
		ToState: evaluating, Actor: "a", EvidenceNote: "n"})
	require.NoError(t, err)
	_, err = client.DeleteModel(ctx, &registryv1.DeleteModelRequest{OrganizationId: "org-a", Name: "m"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Equal(t, "MODEL_IN_USE", grpctest.ErrorInfo(err).GetReason())
	_, err = client.TransitionModel(ctx, &registryv1.TransitionModelRequest{OrganizationId: "org-a", Name: "m",
		ToState: retired, Actor: "a", EvidenceNote: "rejected"})
	require.NoError(t, err)
	_, err = client.DeleteModel(ctx, &registryv1.DeleteModelRequest{OrganizationId: "org-b", Name: "m"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	del, err := client.DeleteModel(ctx, &registryv1.DeleteModelRequest{OrganizationId: "org-a", Name: "m"})
	require.NoError(t, err)
	assert.Equal(t, retired, del.GetBefore().GetLifecycleState())
	assert.Nil(t, del.GetAfter())
}

func TestEndpointAdmin(t *testing.T) {
	ctx := t.Context()
	client := serveWith(t, registrymem.New(), registry.Config{})
	ep := &registryv1.Endpoint{OrganizationId: "org-a", Id: "ep-1", Provider: registryv1.ProviderKind_PROVIDER_KIND_OPENAI,
		BaseUrl: "https://api.openai.com/v1", UpstreamModel: "gpt-4o", CredentialRef: "env:OPENAI_API_KEY"}
	created, err := client.CreateEndpoint(ctx, &registryv1.CreateEndpointRequest{Endpoint: ep})
	require.NoError(t, err)
	_, err = client.CreateEndpoint(ctx, &registryv1.CreateEndpointRequest{Endpoint: ep})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))
	_, err = client.CreateEndpoint(ctx, &registryv1.CreateEndpointRequest{Endpoint: &registryv1.Endpoint{OrganizationId: "org-a", Id: "x"}})
	assert.ElementsMatch(t, []string{"endpoint.provider", "endpoint.base_url", "endpoint.upstream_model"}, grpctest.BadRequestFields(err))

	upd, err := client.UpdateEndpoint(ctx, &registryv1.UpdateEndpointRequest{
		Endpoint:   &registryv1.Endpoint{OrganizationId: "org-a", Id: "ep-1", Weight: 9, Etag: created.GetAfter().GetEtag()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}}})
	require.NoError(t, err)
	assert.Equal(t, int32(9), upd.GetAfter().GetWeight())
	assert.Equal(t, "gpt-4o", upd.GetAfter().GetUpstreamModel())
	_, err = client.UpdateEndpoint(ctx, &registryv1.UpdateEndpointRequest{
		Endpoint:   &registryv1.Endpoint{OrganizationId: "org-a", Id: "ep-1", Weight: 3, Etag: created.GetAfter().GetEtag()},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}}})
	assert.Equal(t, codes.Aborted, status.Code(err))

	// BAA coverage: set by its own mask path, left alone by other paths, read back.
	assert.False(t, upd.GetAfter().GetCoveredByBaa())
	baa, err := client.UpdateEndpoint(ctx, &registryv1.UpdateEndpointRequest{
		Endpoint:   &registryv1.Endpoint{OrganizationId: "org-a", Id: "ep-1", CoveredByBaa: true, Weight: 1},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"covered_by_baa"}}})
	require.NoError(t, err)
	assert.True(t, baa.GetAfter().GetCoveredByBaa())
	assert.Equal(t, int32(9), baa.GetAfter().GetWeight(), "only the masked path changes")
	upd, err = client.UpdateEndpoint(ctx, &registryv1.UpdateEndpointRequest{
		Endpoint:   &registryv1.Endpoint{OrganizationId: "org-a", Id: "ep-1", Weight: 9},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"weight"}}})
	require.NoError(t, err)
	assert.True(t, upd.GetAfter().GetCoveredByBaa(), "another path leaves coverage as it was")
	got, err := client.GetEndpoint(ctx, &registryv1.GetEndpointRequest{OrganizationId: "org-a", Id: "ep-1"})
	require.NoError(t, err)
	assert.True(t, got.GetEndpoint().GetCoveredByBaa())
	covered, err := client.CreateEndpoint(ctx, &registryv1.CreateEndpointRequest{Endpoint: &registryv1.Endpoint{
		OrganizationId: "org-a", Id: "ep-baa", Provider: registryv1.ProviderKind_PROVIDER_KIND_OPENAI,
		BaseUrl: "https://api.openai.com/v1", UpstreamModel: "gpt-4o", CoveredByBaa: true}})
	require.NoError(t, err)
	assert.True(t, covered.GetAfter().GetCoveredByBaa(), "created covered")
	_, err = client.DeleteEndpoint(ctx, &registryv1.DeleteEndpointRequest{OrganizationId: "org-a", Id: "ep-baa"})
	require.NoError(t, err)

	list, err := client.ListEndpoints(ctx, &registryv1.ListEndpointsRequest{OrganizationId: "org-b"})
	require.NoError(t, err)
	assert.Empty(t, list.GetEndpoints())
	_, err = client.DeleteEndpoint(ctx, &registryv1.DeleteEndpointRequest{OrganizationId: "org-b", Id: "ep-1"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	del, err := client.DeleteEndpoint(ctx, &registryv1.DeleteEndpointRequest{OrganizationId: "org-a", Id: "ep-1", Etag: upd.GetAfter().GetEtag()})
	require.NoError(t, err)
	assert.Equal(t, int32(9), del.GetBefore().GetWeight())
	list, err = client.ListEndpoints(ctx, &registryv1.ListEndpointsRequest{OrganizationId: "org-a"})
	require.NoError(t, err)
	assert.Empty(t, list.GetEndpoints())
}

func TestHostingRequests(t *testing.T) {
	ctx := t.Context()
	client := serveWith(t, registrymem.New(), registry.Config{})
	_, err := client.CreateHostingRequest(ctx, &registryv1.CreateHostingRequestRequest{HostingRequest: &registryv1.HostingRequest{OrganizationId: "org-a"}})
	assert.ElementsMatch(t, []string{"hosting_request.requester", "hosting_request.model", "hosting_request.requests_per_minute",
		"hosting_request.region", "hosting_request.justification", "hosting_request.team_id"}, grpctest.BadRequestFields(err))

	created, err := client.CreateHostingRequest(ctx, &registryv1.CreateHostingRequestRequest{HostingRequest: &registryv1.HostingRequest{
		OrganizationId: "org-a", TeamId: "radiology", Requester: "alice", Model: "llama-70b", TokensPerMinute: 100000, Region: "eu-west-1",
		Justification: "data residency", State: registryv1.HostingState_HOSTING_STATE_ACTIVE, DecidedBy: "forged"}})
	require.NoError(t, err)
	h := created.GetAfter()
	assert.Equal(t, "radiology", h.GetTeamId())
	assert.Equal(t, registryv1.HostingState_HOSTING_STATE_SUBMITTED, h.GetState(), "the state is assigned, not taken from the request")
	assert.Empty(t, h.GetDecidedBy())
	assert.Equal(t, fixedNow, h.GetCreateTime().AsTime())
	id := h.GetId()

	_, err = client.MarkHostingRequestActive(ctx, &registryv1.MarkHostingRequestActiveRequest{OrganizationId: "org-a", Id: id, Actor: "ops"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Equal(t, "INVALID_TRANSITION", grpctest.ErrorInfo(err).GetReason())
	_, err = client.RejectHostingRequest(ctx, &registryv1.RejectHostingRequestRequest{OrganizationId: "org-a", Id: id, DecidedBy: "root"})
	assert.Equal(t, []string{"note"}, grpctest.BadRequestFields(err), "a rejection says why")
	_, err = client.ApproveHostingRequest(ctx, &registryv1.ApproveHostingRequestRequest{OrganizationId: "org-a", Id: id})
	assert.Equal(t, []string{"decided_by"}, grpctest.BadRequestFields(err))
	_, err = client.ApproveHostingRequest(ctx, &registryv1.ApproveHostingRequestRequest{OrganizationId: "org-b", Id: id, DecidedBy: "root"})
	assert.Equal(t, codes.NotFound, status.Code(err), "another organization cannot decide it")

	appr, err := client.ApproveHostingRequest(ctx, &registryv1.ApproveHostingRequestRequest{OrganizationId: "org-a", Id: id, DecidedBy: "root", Note: "ok"})
	require.NoError(t, err)
	assert.Equal(t, registryv1.HostingState_HOSTING_STATE_SUBMITTED, appr.GetBefore().GetState())
	assert.Equal(t, "root", appr.GetAfter().GetDecidedBy())
	assert.Equal(t, fixedNow, appr.GetAfter().GetDecideTime().AsTime())
	_, err = client.RejectHostingRequest(ctx, &registryv1.RejectHostingRequestRequest{OrganizationId: "org-a", Id: id, DecidedBy: "root", Note: "no"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "a decision is final")
	_, err = client.MarkHostingRequestProvisioning(ctx, &registryv1.MarkHostingRequestProvisioningRequest{OrganizationId: "org-a", Id: id, Actor: "ops"})
	require.NoError(t, err)
	act, err := client.MarkHostingRequestActive(ctx, &registryv1.MarkHostingRequestActiveRequest{OrganizationId: "org-a", Id: id, Actor: "ops", Note: "serving"})
	require.NoError(t, err)
	assert.Equal(t, registryv1.HostingState_HOSTING_STATE_ACTIVE, act.GetAfter().GetState())
	assert.Equal(t, "root", act.GetAfter().GetDecidedBy(), "the decision stays recorded")
	assert.Equal(t, "ops", act.GetAfter().GetUpdatedBy())

	got, err := client.GetHostingRequest(ctx, &registryv1.GetHostingRequestRequest{OrganizationId: "org-a", Id: id})
	require.NoError(t, err)
	assert.Equal(t, act.GetAfter().GetEtag(), got.GetHostingRequest().GetEtag())
	_, err = client.GetHostingRequest(ctx, &registryv1.GetHostingRequestRequest{OrganizationId: "org-b", Id: id})
	assert.Equal(t, codes.NotFound, status.Code(err))
	assert.Equal(t, "HOSTING_REQUEST_NOT_FOUND", grpctest.ErrorInfo(err).GetReason())
	list, err := client.ListHostingRequests(ctx, &registryv1.ListHostingRequestsRequest{OrganizationId: "org-b"})
	require.NoError(t, err)
	assert.Empty(t, list.GetHostingRequests())
	list, err = client.ListHostingRequests(ctx, &registryv1.ListHostingRequestsRequest{OrganizationId: "org-a",
		States: []registryv1.HostingState{registryv1.HostingState_HOSTING_STATE_ACTIVE}, Requester: "alice"})
	require.NoError(t, err)
	require.Len(t, list.GetHostingRequests(), 1)
}

// A request confined to a team (the admin layer fills team_id for team members) sees only
// that team's hosting requests: another team's is NOT_FOUND, as if it did not exist, and
// lists leave it out.
func TestHostingRequestsTeams(t *testing.T) {
	ctx := t.Context()
	client := serveWith(t, registrymem.New(), registry.Config{})
	create := func(team string) string {
		resp, err := client.CreateHostingRequest(ctx, &registryv1.CreateHostingRequestRequest{HostingRequest: &registryv1.HostingRequest{
			OrganizationId: "org-a", TeamId: team, Requester: "user:" + team, Model: "llama-70b", RequestsPerMinute: 60,
			Region: "eu-west-1", Justification: "data residency"}})
		require.NoError(t, err)
		return resp.GetAfter().GetId()
	}
	radiology, oncology := create("radiology"), create("oncology")

	got, err := client.GetHostingRequest(ctx, &registryv1.GetHostingRequestRequest{OrganizationId: "org-a", Id: radiology, TeamId: "radiology"})
	require.NoError(t, err)
	assert.Equal(t, "radiology", got.GetHostingRequest().GetTeamId())
	_, err = client.GetHostingRequest(ctx, &registryv1.GetHostingRequestRequest{OrganizationId: "org-a", Id: oncology, TeamId: "radiology"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	assert.Equal(t, "HOSTING_REQUEST_NOT_FOUND", grpctest.ErrorInfo(err).GetReason())
	assert.NotContains(t, status.Convert(err).Message(), "oncology", "the refusal does not say whose it is")
	_, err = client.GetHostingRequest(ctx, &registryv1.GetHostingRequestRequest{OrganizationId: "org-a", Id: oncology})
	assert.NoError(t, err, "without a team, the organisation's admins see every request")

	ids := func(team string) []string {
		list, err := client.ListHostingRequests(ctx, &registryv1.ListHostingRequestsRequest{OrganizationId: "org-a", TeamId: team})
		require.NoError(t, err)
		var out []string
		for _, h := range list.GetHostingRequests() {
			out = append(out, h.GetId())
		}
		return out
	}
	assert.Equal(t, []string{radiology}, ids("radiology"))
	assert.Equal(t, []string{oncology}, ids("oncology"))
	assert.Empty(t, ids("cardiology"))
	assert.ElementsMatch(t, []string{radiology, oncology}, ids(""))
}

func TestImportVendorModels(t *testing.T) {
	const openAIKey, awsKey = "sk-sim-secret-123", "AKIDSIM:sim-secret-key"
	oai := httptest.NewServer(simulator.New(simulator.Config{APIKey: openAIKey, Models: []string{"gpt-4o", "bad name!"}}))
	t.Cleanup(oai.Close)
	bed := httptest.NewServer(simulator.New(simulator.Config{APIKey: awsKey, Models: []string{"anthropic.claude-3-haiku-20240307-v1:0", "amazon.titan-text-express-v1"}}))
	t.Cleanup(bed.Close)
	t.Setenv("FMGATE_TEST_OPENAI_KEY", openAIKey)
	t.Setenv("FMGATE_TEST_AWS_KEY", awsKey)
	t.Setenv("FMGATE_TEST_WRONG_KEY", "sk-wrong-secret-456")

	ctx := t.Context()
	s := registrymem.New()
	put := func(id string, p registry.Provider, base, cred string) {
		e := registrytest.Endpoint("org-a", id)
		e.Provider, e.BaseURL, e.CredentialRef, e.Region = p, base, cred, "us-east-1"
		require.NoError(t, s.PutEndpoint(ctx, e))
	}
	put("oai", registry.ProviderOpenAI, oai.URL+"/v1", "env:FMGATE_TEST_OPENAI_KEY")
	put("bed", registry.ProviderBedrock, bed.URL, "env:FMGATE_TEST_AWS_KEY")
	put("wrong", registry.ProviderOpenAI, oai.URL+"/v1", "env:FMGATE_TEST_WRONG_KEY")
	put("unset", registry.ProviderOpenAI, oai.URL+"/v1", "env:FMGATE_TEST_UNSET_KEY")
	put("gem", registry.ProviderGemini, oai.URL, "")
	existing := registrytest.Model("org-a", "gpt-4o")
	require.NoError(t, s.PutModel(ctx, existing))
	logs := &grpctest.LogBuffer{}
	srv := registry.NewServerWithConfig(s, slog.New(slog.NewJSONHandler(logs, nil)), registry.Config{})
	client := registryv1.NewRegistryServiceClient(grpctest.Serve(t, srv.Register))

	resp, err := client.ImportVendorModels(ctx, &registryv1.ImportVendorModelsRequest{OrganizationId: "org-a", EndpointId: "oai"})
	require.NoError(t, err)
	assert.Empty(t, resp.GetCreated())
	assert.Equal(t, []string{"gpt-4o"}, resp.GetExisting())
	require.Len(t, resp.GetSkipped(), 1)
	assert.Equal(t, "bad name!", resp.GetSkipped()[0].GetVendorModelId())
	got, err := s.GetModel(ctx, "org-a", "gpt-4o")
	require.NoError(t, err)
	assert.Equal(t, existing, got, "an existing model is left alone")

	for range 2 { // the second import creates nothing
		resp, err = client.ImportVendorModels(ctx, &registryv1.ImportVendorModelsRequest{OrganizationId: "org-a", EndpointId: "bed"})
		require.NoError(t, err, logs.String())
		if len(resp.GetCreated()) > 0 {
			require.Len(t, resp.GetCreated(), 2)
			m := resp.GetCreated()[0]
			assert.Equal(t, "anthropic.claude-3-haiku-20240307-v1:0", m.GetName())
			assert.Equal(t, proposed, m.GetLifecycleState())
			assert.Equal(t, "fmgate", m.GetVendor())
			assert.Equal(t, "Simulated anthropic.claude-3-haiku-20240307-v1:0", m.GetDisplayName())
			assert.Equal(t, "anthropic.claude-3-haiku-20240307-v1:0", m.GetVendorModelId())
			assert.Equal(t, []registryv1.Modality{registryv1.Modality_MODALITY_TEXT}, m.GetInputModalities())
			assert.Equal(t, []string{"us-east-1"}, m.GetRegions())
			continue
		}
		assert.ElementsMatch(t, []string{"anthropic.claude-3-haiku-20240307-v1:0", "amazon.titan-text-express-v1"}, resp.GetExisting())
	}
	stored, err := s.GetModel(ctx, "org-a", "amazon.titan-text-express-v1")
	require.NoError(t, err)
	assert.Equal(t, registry.LifecycleProposed, stored.LifecycleState)
	_, err = s.GetModel(ctx, "org-b", "amazon.titan-text-express-v1")
	assert.ErrorIs(t, err, registry.ErrNotFound)

	for _, tt := range []struct {
		org, ep string
		code    codes.Code
		reason  string
	}{
		{"org-a", "wrong", codes.Unavailable, "VENDOR_UNAVAILABLE"},
		{"org-a", "unset", codes.FailedPrecondition, "CREDENTIAL_UNAVAILABLE"},
		{"org-a", "gem", codes.FailedPrecondition, "IMPORT_UNSUPPORTED"},
		{"org-b", "oai", codes.NotFound, "ENDPOINT_NOT_FOUND"},
	} {
		_, err := client.ImportVendorModels(ctx, &registryv1.ImportVendorModelsRequest{OrganizationId: tt.org, EndpointId: tt.ep})
		assert.Equal(t, tt.code, status.Code(err), tt.ep)
		assert.Equal(t, tt.reason, grpctest.ErrorInfo(err).GetReason(), tt.ep)
		assert.NotContains(t, status.Convert(err).Message(), "secret")
	}
	for _, secret := range []string{openAIKey, "sim-secret-key", "sk-wrong-secret-456"} {
		assert.NotContains(t, logs.String(), secret, "secrets never reach the logs")
	}
}
