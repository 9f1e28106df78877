package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditmem"
)

// licenseDeps extends the fakes of edge_test.go: model "licensed" requires acceptance of
// licence "Llama 3.1 Community" version "3.1", model "open" has a licence that needs none;
// policy grants both. Model "primary" (open licence, endpoint "down-p1") falls back to model
// "guarded" (endpoint "g1"), whose licence requires acceptance; model "fallback-only" has
// no endpoint of its own and falls back to "guarded". The key "good" authenticates a
// principal of team "research" whose acceptances are what the test sets; "teamless" one of
// no team. Dispatch tries the endpoints it is given in order, as the real one does across
// tiers: those named "down-*" fail, any other answers "served by <id>".
type licenseDeps struct {
	*deps
	mu         sync.Mutex
	accepted   []*identityv1.LicenseAcceptance
	generated  int
	dispatched []*dispatchv1.GenerateRequest
}

const (
	licName    = "Llama 3.1 Community"
	licVersion = "3.1"
)

func (d *licenseDeps) accept(a ...*identityv1.LicenseAcceptance) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accepted = a
}

func acceptance(model, name, version string) *identityv1.LicenseAcceptance {
	return &identityv1.LicenseAcceptance{OrganizationId: "acme", TeamId: "research", Model: model, LicenseName: name,
		LicenseVersion: version, AcceptedBy: "user:lead"}
}

func (d *licenseDeps) Authenticate(_ context.Context, in *identityv1.AuthenticateRequest, _ ...grpc.CallOption) (*identityv1.AuthenticateResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := &identityv1.Principal{OrganizationId: "acme", Subject: "user:alice", Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER}
	switch in.GetCredential() {
	case "Bearer good":
		p.TeamId, p.AcceptedLicenses = "research", d.accepted
	case "Bearer teamless":
		p.Subject = "svc:batch"
	default:
		return nil, status.Error(codes.Unauthenticated, "invalid API key")
	}
	return &identityv1.AuthenticateResponse{Principal: p}, nil
}

func (d *licenseDeps) ResolveRoute(_ context.Context, in *registryv1.ResolveRouteRequest, _ ...grpc.CallOption) (*registryv1.ResolveRouteResponse, error) {
	lic := &registryv1.License{Name: licName, Url: "https://llama.example/license", Version: licVersion, AcceptanceRequired: true}
	guarded := &registryv1.Model{Name: "guarded", Vendor: "sim", License: lic}
	switch in.GetModel() {
	case "primary":
		return &registryv1.ResolveRouteResponse{
			Model:     &registryv1.Model{Name: "primary", Vendor: "sim", License: &registryv1.License{Name: "Apache-2.0"}, FallbackModels: []string{"guarded"}},
			Endpoints: []*registryv1.Endpoint{{Id: "down-p1"}, {Id: "g1"}}, EndpointTiers: []int32{0, 1},
			EndpointModels: []string{"primary", "guarded"}, FallbackModels: []*registryv1.Model{guarded},
		}, nil
	case "fallback-only":
		return &registryv1.ResolveRouteResponse{
			Model:     &registryv1.Model{Name: "fallback-only", Vendor: "sim", FallbackModels: []string{"guarded"}},
			Endpoints: []*registryv1.Endpoint{{Id: "g1"}}, EndpointTiers: []int32{0},
			EndpointModels: []string{"guarded"}, FallbackModels: []*registryv1.Model{guarded},
		}, nil
	case "licensed":
	case "open":
		lic = &registryv1.License{Name: "Apache-2.0", Version: "2.0"}
	default:
		return nil, status.Error(codes.NotFound, "no model "+in.GetModel())
	}
	return &registryv1.ResolveRouteResponse{
		Model:     &registryv1.Model{Name: in.GetModel(), Vendor: "sim", License: lic},
		Endpoints: []*registryv1.Endpoint{{Id: "ep1"}},
	}, nil
}

func (d *licenseDeps) Evaluate(context.Context, *policyv1.EvaluateRequest, ...grpc.CallOption) (*policyv1.EvaluateResponse, error) {
	return &policyv1.EvaluateResponse{Decision: policyv1.Decision_DECISION_ALLOW, PolicyIds: []string{"allow-all"}}, nil
}

func (d *licenseDeps) Generate(_ context.Context, in *dispatchv1.GenerateRequest, _ ...grpc.CallOption) (*dispatchv1.GenerateResponse, error) {
	d.mu.Lock()
	d.generated++
	d.dispatched = append(d.dispatched, in)
	d.mu.Unlock()
	err := status.Error(codes.Unavailable, "no endpoint")
	for _, id := range in.GetEndpointIds() {
		if strings.HasPrefix(id, "down-") {
			err = status.Errorf(codes.Unavailable, "endpoint %s: vendor answered 503", id)
			continue
		}
		return &dispatchv1.GenerateResponse{
			Message:      &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{text("served by " + id)}},
			FinishReason: typev1.FinishReason_FINISH_REASON_STOP, Usage: &typev1.Usage{InputTokens: 1, OutputTokens: 1, TotalTokens: 2},
		}, nil
	}
	return nil, err
}

// lastDispatched returns the last request dispatch received, or nil.
func (d *licenseDeps) lastDispatched() *dispatchv1.GenerateRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dispatched) == 0 {
		return nil
	}
	return d.dispatched[len(d.dispatched)-1]
}

// newLicenseServer returns an edge on licenseDeps that records audit events into memory.
func newLicenseServer(t *testing.T, cfg Config) (*Server, *licenseDeps, *auditmem.Store) {
	t.Helper()
	d := &licenseDeps{deps: &deps{}}
	store := auditmem.New()
	rec, err := audit.NewRecorder(store, AuditService, audit.RecorderConfig{Log: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	s := NewServer(Deps{Identity: d, Registry: d, Policy: d, Quota: d, Moderation: d, Dispatch: d, Log: slog.New(slog.DiscardHandler), Audit: rec}, cfg)
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s, d, store
}

// inProcess returns a client of s over an in-process channel, as the REST dialects reach it.
func inProcess(s *Server) gatewayv1.GatewayServiceClient {
	ch := new(inprocgrpc.Channel)
	gatewayv1.RegisterGatewayServiceServer(ch, s)
	return gatewayv1.NewGatewayServiceClient(ch)
}

// assertLicenseRefusal checks err is the licence refusal for team "research".
func assertLicenseRefusal(t *testing.T, err error) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
	assertLicenseMessage(t, st.Message())
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	require.NotNil(t, info, "the refusal carries an ErrorInfo")
	assert.Equal(t, ReasonLicenseNotAccepted, info.GetReason())
	assert.Equal(t, map[string]string{"model": "licensed", "license_name": licName, "license_version": licVersion, "team_id": "research"},
		info.GetMetadata())
}

func assertLicenseMessage(t *testing.T, msg string) {
	t.Helper()
	for _, want := range []string{`model "licensed"`, `licence "Llama 3.1 Community" version "3.1"`, `team "research" has not accepted`,
		"fmgate licenses accept", "AcceptLicense", "/api/v1/orgs/acme/licenseAcceptances", "permission eula.accept"} {
		assert.Contains(t, msg, want)
	}
}

// Every ingress refuses a model whose licence the team has not accepted, before anything
// reaches a vendor, and records the refusal with its reason.
func TestLicenseNotAcceptedRefusesEveryIngress(t *testing.T) {
	s, d, store := newLicenseServer(t, Config{})
	ctx := authed(t.Context(), "good")
	msgs := []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}}}

	t.Run("native", func(t *testing.T) {
		_, err := s.Generate(ctx, &gatewayv1.GenerateRequest{Model: "licensed", Messages: msgs})
		assertLicenseRefusal(t, err)
		err = s.StreamGenerate(&gatewayv1.StreamGenerateRequest{Model: "licensed", Messages: msgs}, &sentStream{ctx: ctx})
		assertLicenseRefusal(t, err)
		_, err = s.Embed(ctx, &gatewayv1.EmbedRequest{Model: "licensed", Inputs: []string{"a"}})
		assertLicenseRefusal(t, err)
	})

	gw := inProcess(s)
	openAI := httptest.NewServer(openAIHandler(gw))
	t.Cleanup(openAI.Close)
	t.Run("openai", func(t *testing.T) {
		for _, c := range []struct{ path, body string }{
			{"/v1/chat/completions", `{"model":"licensed","messages":[{"role":"user","content":"hi"}]}`},
			{"/v1/chat/completions", `{"model":"licensed","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
			{"/v1/embeddings", `{"model":"licensed","input":"hi"}`},
		} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, openAI.URL+c.path, strings.NewReader(c.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer good")
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			var e openAIError
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
			resp.Body.Close()
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, c.body)
			assert.Equal(t, "license_not_accepted", deref(e.Error.Code))
			assert.Equal(t, "permission_denied", e.Error.Type)
			assertLicenseMessage(t, e.Error.Message)
		}
	})

	t.Run("anthropic", func(t *testing.T) {
		for _, body := range []string{
			`{"model":"licensed","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"licensed","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		} {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/messages", strings.NewReader(body))
			r.Header.Set("X-Api-Key", "good")
			r.Header.Set("Anthropic-Version", "2023-06-01")
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			anthropicHandler(gw).ServeHTTP(w, r)
			assert.Equal(t, http.StatusForbidden, w.Code, w.Body.String())
			e := anthErrorOf(t, w)
			assert.Equal(t, "permission_error", e.Error.Type)
			assertLicenseMessage(t, e.Error.Message)
		}
	})

	d.mu.Lock()
	assert.Zero(t, d.generated, "no refused request reached dispatch")
	d.mu.Unlock()
	d.deps.mu.Lock()
	assert.Empty(t, d.deps.embeds)
	d.deps.mu.Unlock()

	const refusals = 3 + 3 + 2
	evs, details := events(t, store, refusals)
	for i, e := range evs {
		assert.Equal(t, ActionRefused, e.Action)
		assert.Equal(t, "licensed", e.Resource.ID)
		assert.Equal(t, "license_not_accepted", details[i].Outcome)
		assert.Equal(t, "allow", details[i].PolicyVerdict, "policy granted the model; the licence refused it")
	}
}

// Only an acceptance of that licence name and version, for that model, lets the team use
// it; a licence that needs no acceptance needs none.
func TestLicenseAcceptanceMatches(t *testing.T) {
	s, d, _ := newLicenseServer(t, Config{PrincipalTTL: -1})
	msgs := []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}}}
	gen := func(key, model string) error {
		_, err := s.Generate(authed(t.Context(), key), &gatewayv1.GenerateRequest{Model: model, Messages: msgs})
		return err
	}
	cases := []struct {
		name     string
		accepted []*identityv1.LicenseAcceptance
		ok       bool
	}{
		{"none", nil, false},
		{"exact", []*identityv1.LicenseAcceptance{acceptance("licensed", licName, licVersion)}, true},
		{"among others", []*identityv1.LicenseAcceptance{acceptance("open", "Apache-2.0", "2.0"), acceptance("licensed", licName, licVersion)}, true},
		{"older version", []*identityv1.LicenseAcceptance{acceptance("licensed", licName, "3.0")}, false},
		{"other licence", []*identityv1.LicenseAcceptance{acceptance("licensed", "Llama 3 Community", licVersion)}, false},
		{"other model", []*identityv1.LicenseAcceptance{acceptance("licensed-2", licName, licVersion)}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d.accept(tc.accepted...)
			err := gen("good", "licensed")
			if tc.ok {
				assert.NoError(t, err)
			} else {
				assertLicenseRefusal(t, err)
			}
			assert.NoError(t, gen("good", "open"), "a licence without required acceptance needs none")
		})
	}

	err := gen("teamless", "licensed")
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "licences are accepted per team but svc:batch belongs to no team")
}

// A fresh acceptance applies once the principal cached before it expires: the edge caches
// nothing else that would hold the refusal longer (routes carry the licence terms, not the
// acceptances, and refusals are never cached).
func TestLicenseAcceptanceAppliesWithinPrincipalTTL(t *testing.T) {
	const ttl = 100 * time.Millisecond
	s, d, _ := newLicenseServer(t, Config{PrincipalTTL: ttl, RouteTTL: time.Hour})
	msgs := []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}}}
	gen := func() error {
		_, err := s.Generate(authed(t.Context(), "good"), &gatewayv1.GenerateRequest{Model: "licensed", Messages: msgs})
		return err
	}
	assertLicenseRefusal(t, gen())
	d.accept(acceptance("licensed", licName, licVersion))
	accepted := time.Now()
	require.Eventually(t, func() bool { return gen() == nil }, 5*time.Second, 5*time.Millisecond)
	t.Logf("accepted after %v (principal TTL %v)", time.Since(accepted), ttl)
}

// A fallback model serves only teams that accepted its licence: when the requested model's
// endpoints fail, a team that has not accepted the fallback's licence gets the requested
// model's failure, and the fallback's endpoint never reaches dispatch; once the team
// accepts, the fallback answers.
func TestFallbackLicenseAcceptance(t *testing.T) {
	s, d, store := newLicenseServer(t, Config{PrincipalTTL: -1})
	msgs := []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}}}
	gen := func(model string) (*gatewayv1.GenerateResponse, error) {
		return s.Generate(authed(t.Context(), "good"), &gatewayv1.GenerateRequest{Model: model, Messages: msgs})
	}

	t.Run("not accepted", func(t *testing.T) {
		d.accept(acceptance("licensed", licName, licVersion)) // the same licence, for another model
		resp, err := gen("primary")
		require.Error(t, err, "the fallback must not answer: %v", resp.GetMessage())
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Contains(t, status.Convert(err).Message(), "endpoint down-p1", "the client sees the primary's failure")
		got := d.lastDispatched()
		require.NotNil(t, got)
		assert.Equal(t, []string{"down-p1"}, got.GetEndpointIds(), "the fallback's endpoint is dropped before dispatch")
		assert.Equal(t, []int32{0}, got.GetEndpointTiers(), "tiers stay parallel to the endpoints")

		_, err = gen("fallback-only")
		st := status.Convert(err)
		require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
		assert.Contains(t, st.Message(), `model "fallback-only" can only be served by its fallback: model "guarded" requires acceptance`)
		assert.Contains(t, st.Message(), `team "research" has not accepted`)
		info := errorInfo(err)
		require.NotNil(t, info)
		assert.Equal(t, ReasonLicenseNotAccepted, info.GetReason())
		assert.Equal(t, "guarded", info.GetMetadata()["model"], "the model whose licence to accept")
		assert.Same(t, got, d.lastDispatched(), "the refused request never reached dispatch")

		evs, details := events(t, store, 2)
		assert.Equal(t, ActionRefused, evs[1].Action)
		assert.Equal(t, "fallback-only", evs[1].Resource.ID)
		assert.Equal(t, "license_not_accepted", details[1].Outcome)
	})

	t.Run("accepted", func(t *testing.T) {
		d.accept(acceptance("guarded", licName, licVersion))
		for _, model := range []string{"primary", "fallback-only"} {
			resp, err := gen(model)
			require.NoError(t, err, model)
			assert.Equal(t, "served by g1", messageText(resp.GetMessage()), "the fallback answers")
			assert.Equal(t, "g1", d.lastDispatched().GetEndpointIds()[len(d.lastDispatched().GetEndpointIds())-1])
		}
		assert.Equal(t, []int32{0, 1}, d.lastDispatchedFor(t, "down-p1").GetEndpointTiers())
	})

	t.Run("other version", func(t *testing.T) {
		d.accept(acceptance("guarded", licName, "3.0"))
		_, err := gen("primary")
		assert.Equal(t, codes.Unavailable, status.Code(err), "an acceptance of another version does not cover the fallback")
	})
}

// lastDispatchedFor returns the last dispatched request whose first endpoint is first.
func (d *licenseDeps) lastDispatchedFor(t *testing.T, first string) *dispatchv1.GenerateRequest {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := len(d.dispatched) - 1; i >= 0; i-- {
		if ids := d.dispatched[i].GetEndpointIds(); len(ids) > 0 && ids[0] == first {
			return d.dispatched[i]
		}
	}
	t.Fatalf("no request dispatched to %s first", first)
	return nil
}

func errorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return i
		}
	}
	return nil
}

func TestLicensedRoute(t *testing.T) {
	p := &identityv1.Principal{OrganizationId: "acme", Subject: "user:alice", TeamId: "research",
		AcceptedLicenses: []*identityv1.LicenseAcceptance{acceptance("accepted", licName, licVersion)}}
	card := func(name string, required bool) *registryv1.Model {
		return &registryv1.Model{Name: name, License: &registryv1.License{Name: licName, Version: licVersion, AcceptanceRequired: required}}
	}
	route := func(models ...string) *registryv1.ResolveRouteResponse {
		r := &registryv1.ResolveRouteResponse{
			Model:          card("main", true), // the requested model's licence is checkLicense's, not licensedRoute's
			EndpointModels: models,
			FallbackModels: []*registryv1.Model{card("open", false), card("accepted", true), card("refused", true)},
		}
		for i, m := range models {
			r.Endpoints = append(r.Endpoints, &registryv1.Endpoint{Id: fmt.Sprintf("%s-%d", m, i)})
			r.EndpointTiers = append(r.EndpointTiers, int32(i))
		}
		return r
	}
	tests := []struct {
		name   string
		route  *registryv1.ResolveRouteResponse
		ids    []string
		tiers  []int32
		models []string
	}{
		{"all usable", route("main", "open", "accepted"), []string{"main-0", "open-1", "accepted-2"}, []int32{0, 1, 2},
			[]string{"main", "open", "accepted"}},
		{"refused dropped", route("main", "refused", "open", "refused"), []string{"main-0", "open-2"}, []int32{0, 2},
			[]string{"main", "open"}},
		{"unknown card dropped", route("main", "stranger"), []string{"main-0"}, []int32{0}, []string{"main"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := proto.Clone(tt.route)
			got, err := licensedRoute(p, tt.route)
			require.NoError(t, err)
			assert.Equal(t, tt.ids, endpointIDs(got))
			assert.Equal(t, tt.tiers, got.GetEndpointTiers())
			assert.Equal(t, tt.models, got.GetEndpointModels())
			assert.Same(t, tt.route.GetModel(), got.GetModel())
			assert.Len(t, got.GetFallbackModels(), 3)
			assert.True(t, proto.Equal(before, tt.route), "the cached route is never changed")
		})
	}

	t.Run("nothing to drop keeps the route", func(t *testing.T) {
		r := route("main", "open")
		got, err := licensedRoute(p, r)
		require.NoError(t, err)
		assert.Same(t, r, got)
	})
	t.Run("a registry without endpoint_models", func(t *testing.T) {
		r := route("main", "refused")
		r.EndpointModels = nil
		got, err := licensedRoute(p, r)
		require.NoError(t, err)
		assert.Same(t, r, got)
	})
	t.Run("nothing left", func(t *testing.T) {
		_, err := licensedRoute(p, route("refused", "stranger"))
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
		assert.Equal(t, "refused", errorInfo(err).GetMetadata()["model"], "the first fallback dropped is named")
		_, err = licensedRoute(p, route("stranger"))
		assert.Equal(t, codes.Internal, status.Code(err), "a route naming a model without its card is the registry's fault")
	})
}

// Policy's endpoint filter keeps endpoint_models parallel to the endpoints, so that the
// licence filter after it reads each endpoint's model right.
func TestOnlyEndpointsKeepsEndpointModels(t *testing.T) {
	fb := &registryv1.Model{Name: "fb"}
	route := &registryv1.ResolveRouteResponse{
		Model:     &registryv1.Model{Name: "main"},
		Endpoints: []*registryv1.Endpoint{{Id: "m1"}, {Id: "m2"}, {Id: "f1"}}, EndpointTiers: []int32{0, 1, 2},
		EndpointModels: []string{"main", "main", "fb"}, FallbackModels: []*registryv1.Model{fb},
	}
	got := onlyEndpoints(route, []string{"m2", "f1"})
	assert.Equal(t, []string{"m2", "f1"}, endpointIDs(got))
	assert.Equal(t, []int32{1, 2}, got.GetEndpointTiers())
	assert.Equal(t, []string{"main", "fb"}, got.GetEndpointModels())
	assert.Equal(t, []*registryv1.Model{fb}, got.GetFallbackModels())
	assert.Len(t, route.GetEndpoints(), 3, "the cached route is unchanged")
}
