package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/audit/auditmem"
)

// auditDeps extends the fakes of edge_test.go with what the audit events carry: a typed
// principal, model prices, a decision with policy ids, version and obligations, the
// endpoint that answered, output findings, and a model ("limited") whose quota is spent.
type auditDeps struct {
	*deps
}

func (d auditDeps) Authenticate(ctx context.Context, in *identityv1.AuthenticateRequest, opts ...grpc.CallOption) (*identityv1.AuthenticateResponse, error) {
	resp, err := d.deps.Authenticate(ctx, in, opts...)
	if err == nil {
		resp.GetPrincipal().Kind = identityv1.PrincipalKind_PRINCIPAL_KIND_USER
	}
	return resp, err
}

func (d auditDeps) ResolveRoute(ctx context.Context, in *registryv1.ResolveRouteRequest, opts ...grpc.CallOption) (*registryv1.ResolveRouteResponse, error) {
	model := in.GetModel()
	if model == "limited" {
		in = &registryv1.ResolveRouteRequest{OrganizationId: in.GetOrganizationId(), Model: "granted"}
	}
	resp, err := d.deps.ResolveRoute(ctx, in, opts...)
	if err == nil {
		resp.Model.Name, resp.Model.InputPricePerMillion, resp.Model.OutputPricePerMillion = model, 2.5, 10
	}
	return resp, err
}

func (d auditDeps) Evaluate(ctx context.Context, in *policyv1.EvaluateRequest, opts ...grpc.CallOption) (*policyv1.EvaluateResponse, error) {
	if in.GetModel() == "limited" {
		in = &policyv1.EvaluateRequest{Model: "granted", Request: in.GetRequest()}
	}
	resp, err := d.deps.Evaluate(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	resp.PolicyVersion = "v7"
	if resp.GetDecision() == policyv1.Decision_DECISION_ALLOW {
		resp.PolicyIds = []string{"allow-eu"}
		resp.Obligations = &policyv1.Obligations{ModerationProfile: "strict", AllowedEndpointRegions: []string{"eu-*"}}
	} else {
		resp.PolicyIds = []string{"deny-all"}
	}
	return resp, nil
}

func (d auditDeps) Reserve(ctx context.Context, in *quotav1.ReserveRequest, opts ...grpc.CallOption) (*quotav1.ReserveResponse, error) {
	if in.GetModel() == "limited" {
		return nil, status.Error(codes.ResourceExhausted, "limit rpm exhausted")
	}
	return d.deps.Reserve(ctx, in, opts...)
}

func (d auditDeps) Generate(_ context.Context, in *dispatchv1.GenerateRequest, _ ...grpc.CallOption) (*dispatchv1.GenerateResponse, error) {
	return &dispatchv1.GenerateResponse{
		Message:      &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{text("write to bob@example.com")}},
		FinishReason: typev1.FinishReason_FINISH_REASON_STOP,
		Usage:        &typev1.Usage{InputTokens: 1000, OutputTokens: 500, TotalTokens: 1500},
		EndpointId:   "ep2",
	}, nil
}

func (d auditDeps) ScreenOutput(_ context.Context, in *moderationv1.ScreenOutputRequest, _ ...grpc.CallOption) (*moderationv1.ScreenOutputResponse, error) {
	return &moderationv1.ScreenOutputResponse{
		Verdict: moderationv1.Verdict_VERDICT_MODIFIED,
		Message: &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{text("write to [EMAIL]")}},
		Findings: []*moderationv1.Finding{
			{Detector: "pii.email", Action: moderationv1.Action_ACTION_MASK, Count: 1},
		},
	}, nil
}

// syncBuffer is a log sink safe for the recorder's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// newAuditedServer returns an edge whose events go through a real Recorder into memory.
// With run false the recorder's Run loop is not started, so its queue fills.
func newAuditedServer(t *testing.T, cfg audit.RecorderConfig, run bool) (*Server, *deps, *auditmem.Store, *syncBuffer) {
	t.Helper()
	d := &deps{}
	ad := auditDeps{d}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	store := auditmem.New()
	cfg.Log = log
	rec, err := audit.NewRecorder(store, AuditService, cfg)
	require.NoError(t, err)
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- rec.Run(ctx) }()
		t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	}
	s := NewServer(Deps{Identity: ad, Registry: ad, Policy: ad, Quota: ad, Moderation: ad, Dispatch: ad, Log: log, Audit: rec}, Config{})
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s, d, store, logs
}

// events waits until the store holds n events of acme and returns them with their details.
func events(t *testing.T, store *auditmem.Store, n int) ([]audit.Event, []generationDetails) {
	t.Helper()
	var got []audit.Event
	require.Eventually(t, func() bool {
		var err error
		got, _, err = store.List(context.Background(), audit.Filter{OrganizationID: "acme"}, audit.Page{})
		require.NoError(t, err)
		return len(got) >= n
	}, 5*time.Second, 5*time.Millisecond)
	require.Len(t, got, n)
	details := make([]generationDetails, n)
	for i, e := range got {
		require.NoError(t, json.Unmarshal(e.Details, &details[i]))
	}
	return got, details
}

func TestAuditAllowedGeneration(t *testing.T) {
	s, _, store, logs := newAuditedServer(t, audit.RecorderConfig{}, true)
	traceID := trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36}
	ctx := trace.ContextWithSpanContext(authed(t.Context(), "good"),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled}))

	resp, err := s.Generate(ctx, &gatewayv1.GenerateRequest{Model: "granted", Messages: []*typev1.Message{
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("my secret plan for bob@example.com")}},
	}})
	require.NoError(t, err)
	assert.Equal(t, "write to [EMAIL]", messageText(resp.GetMessage()))

	evs, details := events(t, store, 1)
	e, g := evs[0], details[0]
	assert.Equal(t, "acme", e.OrganizationID)
	assert.Equal(t, "edge", e.Service)
	assert.Equal(t, audit.Actor{Subject: "user:alice", Kind: "user"}, e.Actor)
	assert.Equal(t, ActionGeneration, e.Action)
	assert.Equal(t, audit.Resource{Type: "model", ID: "granted"}, e.Resource)
	assert.Equal(t, traceID.String(), e.TraceID)
	assert.Equal(t, generationDetails{
		Generation: audit.Generation{
			Model: "granted", Endpoint: "ep2", PolicyVerdict: "allow", PolicyVersion: "v7",
			Obligations: []string{"moderation_profile=strict", "endpoint_region=eu-*"},
			Findings: []audit.Finding{
				{Detector: "secret", Stage: "input", Action: "mask", Count: 1},
				{Detector: "pii.email", Stage: "output", Action: "mask", Count: 1},
			},
			InputTokens: 1000, OutputTokens: 500,
			CostMicros: 7500, // 1000 × $2.50/M + 500 × $10/M = $0.0075
			Currency:   "USD", Outcome: "ok", FinishedReason: "stop",
		},
		PolicyIDs: []string{"allow-eu"},
	}, g)
	for _, leak := range []string{"plan", "bob@example.com", "write to", "Bearer", "good"} {
		assert.NotContains(t, string(e.Details), leak, "no prompt, answer or credential in the event")
		assert.NotContains(t, logs.String(), leak)
	}
	v, err := store.Verify(t.Context(), "acme", "edge")
	require.NoError(t, err)
	assert.True(t, v.OK())
}

func TestAuditStreamAndEmbed(t *testing.T) {
	s, d, store, _ := newAuditedServer(t, audit.RecorderConfig{}, true)
	d.chunks = []*dispatchv1.StreamGenerateResponse{
		{TextDelta: "hello ", EndpointId: "ep1"},
		{TextDelta: "there", EndpointId: "ep1"},
		{FinishReason: typev1.FinishReason_FINISH_REASON_LENGTH, EndpointId: "ep1", Usage: &typev1.Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30}},
	}
	out := &sentStream{ctx: authed(t.Context(), "good")}
	require.NoError(t, s.StreamGenerate(&gatewayv1.StreamGenerateRequest{Model: "granted", Messages: []*typev1.Message{
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}},
	}}, out))
	_, err := s.Embed(authed(t.Context(), "good"), &gatewayv1.EmbedRequest{Model: "granted", Inputs: []string{"a", "b"}})
	require.NoError(t, err)

	evs, details := events(t, store, 2)
	assert.Equal(t, ActionGeneration, evs[0].Action)
	assert.Equal(t, "ep1", details[0].Endpoint)
	assert.Equal(t, int64(10), details[0].InputTokens)
	assert.Equal(t, int64(20), details[0].OutputTokens)
	assert.Equal(t, int64(10*2.5+20*10), details[0].CostMicros)
	assert.Equal(t, "length", details[0].FinishedReason)
	assert.Equal(t, "ok", details[0].Outcome)

	assert.Equal(t, ActionEmbedding, evs[1].Action)
	assert.Equal(t, int64(3), details[1].InputTokens)
	assert.Equal(t, int64(8), details[1].CostMicros, "3 × $2.50/M = 7.5 µ$, rounded")
	assert.Equal(t, "ok", details[1].Outcome)
}

func TestAuditRefusals(t *testing.T) {
	s, d, store, _ := newAuditedServer(t, audit.RecorderConfig{}, true)
	ctx := authed(t.Context(), "good")
	gen := func(model, prompt string) error {
		_, err := s.Generate(ctx, &gatewayv1.GenerateRequest{Model: model, Messages: []*typev1.Message{
			{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text(prompt)}},
		}})
		return err
	}
	assert.Equal(t, codes.PermissionDenied, status.Code(gen("denied", "hi")))
	assert.Equal(t, codes.ResourceExhausted, status.Code(gen("limited", "hi")))
	assert.Equal(t, codes.InvalidArgument, status.Code(gen("granted", "a forbidden word")))
	_, err := s.Embed(ctx, &gatewayv1.EmbedRequest{Model: "granted", Inputs: []string{"forbidden too"}})
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	// Before authentication, or with no such model, there is no decision to record.
	assert.Equal(t, codes.Unauthenticated, status.Code(func() error {
		_, err := s.Generate(authed(t.Context(), "bad"), &gatewayv1.GenerateRequest{Model: "granted", Messages: []*typev1.Message{
			{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}},
		}})
		return err
	}()))
	assert.Equal(t, codes.NotFound, status.Code(gen("nope", "hi")))
	// Moderation failing with RESOURCE_EXHAUSTED is not a quota refusal: nothing is recorded.
	assert.Equal(t, codes.ResourceExhausted, status.Code(gen("granted", "oversized")))
	_, err = s.Generate(authed(t.Context(), "scoped"), &gatewayv1.GenerateRequest{Model: "granted", Messages: []*typev1.Message{
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}},
	}})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))

	evs, details := events(t, store, 5)
	for _, e := range evs {
		assert.Equal(t, ActionRefused, e.Action)
		assert.Equal(t, audit.Actor{Subject: "user:alice", Kind: "user"}, e.Actor)
	}
	assert.Equal(t, "denied", evs[0].Resource.ID)
	assert.Equal(t, "deny", details[0].PolicyVerdict)
	assert.Equal(t, []string{"deny-all"}, details[0].PolicyIDs)
	assert.Equal(t, "v7", details[0].PolicyVersion)
	assert.Equal(t, "policy_denied", details[0].Outcome)

	assert.Equal(t, "limited", evs[1].Resource.ID)
	assert.Equal(t, "allow", details[1].PolicyVerdict)
	assert.Equal(t, "quota_exhausted", details[1].Outcome)

	assert.Equal(t, "granted", evs[4].Resource.ID)
	assert.Equal(t, "key_scope", details[4].Outcome)
	assert.Empty(t, details[4].PolicyVerdict, "policy was not asked")

	for _, g := range details[2:4] {
		assert.Equal(t, "input_blocked", g.Outcome)
		assert.Equal(t, []audit.Finding{{Detector: "deny", Stage: "input", Action: "block", Count: 1}}, g.Findings)
		assert.Equal(t, []string{"moderation_profile=strict", "endpoint_region=eu-*"}, g.Obligations)
		assert.Zero(t, g.InputTokens)
		assert.Zero(t, g.CostMicros)
		assert.Empty(t, g.Endpoint)
	}
	for _, e := range evs {
		assert.NotContains(t, string(e.Details), "forbidden", "never the prompt text")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	assert.Empty(t, d.commits, "no generation ran")
}

// A recorder that cannot take an event costs the request at most its enqueue timeout, and
// the loss is logged at Error with the count: never silent, never failing the answer.
func TestAuditQueueFullIsLoggedNotFatal(t *testing.T) {
	s, _, _, logs := newAuditedServer(t, audit.RecorderConfig{QueueSize: 1, EnqueueTimeout: time.Millisecond}, false)
	ctx := authed(t.Context(), "good")
	req := &gatewayv1.GenerateRequest{Model: "granted", Messages: []*typev1.Message{
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("private words")}},
	}}
	for range 3 {
		_, err := s.Generate(ctx, req)
		require.NoError(t, err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m))
		if m["msg"] == "audit event not recorded" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 2, logs.String())
	assert.Equal(t, "ERROR", lines[0]["level"])
	assert.Equal(t, float64(1), lines[0]["audit_events_lost"])
	assert.Equal(t, float64(2), lines[1]["audit_events_lost"])
	assert.Equal(t, "generation", lines[1]["action"])
	assert.Contains(t, lines[1]["error"], "audit queue full")
	assert.NotContains(t, logs.String(), "private words")
}
