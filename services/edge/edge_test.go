package edge

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deps are fakes of the services the edge orchestrates: one organisation with models
// "granted" (allowed), "denied" (routable, not allowed) and "draft" (not routable). The
// moderation fake masks the word "secret" and blocks the word "forbidden".
type deps struct {
	identityv1.IdentityServiceClient
	registryv1.RegistryServiceClient
	policyv1.PolicyServiceClient
	quotav1.QuotaServiceClient
	moderationv1.ModerationServiceClient
	dispatchv1.DispatchServiceClient

	mu      sync.Mutex
	embeds  []*dispatchv1.EmbedRequest
	commits []*quotav1.CommitRequest
	facts   []*policyv1.RequestFacts
	chunks  []*dispatchv1.StreamGenerateResponse
}

func (d *deps) Authenticate(_ context.Context, in *identityv1.AuthenticateRequest, _ ...grpc.CallOption) (*identityv1.AuthenticateResponse, error) {
	if in.GetCredential() == "Bearer scoped" { // alice's key for other models only
		return &identityv1.AuthenticateResponse{Principal: &identityv1.Principal{OrganizationId: "acme", Subject: "user:alice",
			Scopes: &identityv1.ApiKeyScopes{Models: []string{"other-*"}}}}, nil
	}
	if in.GetCredential() != "Bearer good" {
		return nil, status.Error(codes.Unauthenticated, "invalid API key")
	}
	return &identityv1.AuthenticateResponse{Principal: &identityv1.Principal{OrganizationId: "acme", Subject: "user:alice"}}, nil
}

func (d *deps) ResolveRoute(_ context.Context, in *registryv1.ResolveRouteRequest, _ ...grpc.CallOption) (*registryv1.ResolveRouteResponse, error) {
	switch in.GetModel() {
	case "granted", "denied":
		return &registryv1.ResolveRouteResponse{
			Model:     &registryv1.Model{Name: in.GetModel(), DisplayName: strings.ToUpper(in.GetModel()), Vendor: "sim", ContextWindow: 8},
			Endpoints: []*registryv1.Endpoint{{Id: "ep1"}, {Id: "ep2"}},
		}, nil
	case "draft":
		return nil, status.Error(codes.FailedPrecondition, "model draft is not approved")
	}
	return nil, status.Error(codes.NotFound, "no model "+in.GetModel())
}

func (d *deps) Evaluate(_ context.Context, in *policyv1.EvaluateRequest, _ ...grpc.CallOption) (*policyv1.EvaluateResponse, error) {
	d.mu.Lock()
	d.facts = append(d.facts, in.GetRequest())
	d.mu.Unlock()
	if in.GetModel() == "granted" {
		return &policyv1.EvaluateResponse{Decision: policyv1.Decision_DECISION_ALLOW}, nil
	}
	return &policyv1.EvaluateResponse{Decision: policyv1.Decision_DECISION_DENY}, nil
}

func (d *deps) Reserve(context.Context, *quotav1.ReserveRequest, ...grpc.CallOption) (*quotav1.ReserveResponse, error) {
	return &quotav1.ReserveResponse{}, nil
}

func (d *deps) Commit(_ context.Context, in *quotav1.CommitRequest, _ ...grpc.CallOption) (*quotav1.CommitResponse, error) {
	d.mu.Lock()
	d.commits = append(d.commits, in)
	d.mu.Unlock()
	return &quotav1.CommitResponse{}, nil
}

func (d *deps) ScreenInput(_ context.Context, in *moderationv1.ScreenInputRequest, _ ...grpc.CallOption) (*moderationv1.ScreenInputResponse, error) {
	out := &moderationv1.ScreenInputResponse{Verdict: moderationv1.Verdict_VERDICT_PASS}
	for i, m := range in.GetMessages() {
		t := messageText(m)
		switch {
		case strings.Contains(t, "oversized"): // as gRPC refuses a message over its size limit
			return nil, status.Error(codes.ResourceExhausted, "grpc: received message larger than max")
		case strings.Contains(t, "forbidden"):
			out.Verdict = moderationv1.Verdict_VERDICT_BLOCK
			out.Findings = append(out.Findings, &moderationv1.Finding{Detector: "deny", Action: moderationv1.Action_ACTION_BLOCK, MessageIndex: int32(i), Count: 1})
		case strings.Contains(t, "secret"):
			if out.Verdict == moderationv1.Verdict_VERDICT_PASS {
				out.Verdict = moderationv1.Verdict_VERDICT_MODIFIED
			}
			out.Findings = append(out.Findings, &moderationv1.Finding{Detector: "secret", Action: moderationv1.Action_ACTION_MASK, MessageIndex: int32(i), Count: 1})
			t = strings.ReplaceAll(t, "secret", "[X]")
		}
		out.Messages = append(out.Messages, &typev1.Message{Role: m.GetRole(), Content: []*typev1.ContentPart{text(t)}})
	}
	return out, nil
}

func (d *deps) ScreenOutput(_ context.Context, in *moderationv1.ScreenOutputRequest, _ ...grpc.CallOption) (*moderationv1.ScreenOutputResponse, error) {
	return &moderationv1.ScreenOutputResponse{Verdict: moderationv1.Verdict_VERDICT_PASS, Message: in.GetMessage()}, nil
}

// ScreenStream passes every piece straight back, as a profile that finds nothing would.
func (d *deps) ScreenStream(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[moderationv1.ScreenStreamRequest, moderationv1.ScreenStreamResponse], error) {
	return &echoScreen{ctx: ctx}, nil
}

type echoScreen struct {
	grpc.ClientStream
	ctx     context.Context
	pending []*moderationv1.ScreenStreamResponse
}

func (e *echoScreen) Context() context.Context { return e.ctx }
func (e *echoScreen) CloseSend() error         { return nil }

func (e *echoScreen) Send(req *moderationv1.ScreenStreamRequest) error {
	e.pending = append(e.pending, &moderationv1.ScreenStreamResponse{Text: req.GetTextDelta(), Verdict: moderationv1.Verdict_VERDICT_PASS})
	return nil
}

func (e *echoScreen) Recv() (*moderationv1.ScreenStreamResponse, error) {
	if len(e.pending) == 0 {
		return nil, io.EOF
	}
	r := e.pending[0]
	e.pending = e.pending[1:]
	return r, nil
}

func (d *deps) Embed(_ context.Context, in *dispatchv1.EmbedRequest, _ ...grpc.CallOption) (*dispatchv1.EmbedResponse, error) {
	d.mu.Lock()
	d.embeds = append(d.embeds, in)
	d.mu.Unlock()
	resp := &dispatchv1.EmbedResponse{Usage: &typev1.Usage{InputTokens: 3, TotalTokens: 3}, ResponseModel: "vendor-embed"}
	for i := range in.GetInputs() {
		resp.Embeddings = append(resp.Embeddings, &typev1.Embedding{Index: int32(i), Values: []float32{float32(i)}})
	}
	return resp, nil
}

func (d *deps) StreamGenerate(context.Context, *dispatchv1.StreamGenerateRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[dispatchv1.StreamGenerateResponse], error) {
	return &chunkStream{chunks: d.chunks}, nil
}

type chunkStream struct {
	grpc.ClientStream
	chunks []*dispatchv1.StreamGenerateResponse
}

func (s *chunkStream) Recv() (*dispatchv1.StreamGenerateResponse, error) {
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return c, nil
}

// sentStream records what StreamGenerate sends.
type sentStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*gatewayv1.StreamGenerateResponse
}

func (s *sentStream) Context() context.Context { return s.ctx }
func (s *sentStream) Send(ev *gatewayv1.StreamGenerateResponse) error {
	s.sent = append(s.sent, ev)
	return nil
}

func newTestServer(t *testing.T) (*Server, *deps) {
	d := &deps{}
	s := NewServer(Deps{Identity: d, Registry: d, Policy: d, Quota: d, Moderation: d, Dispatch: d, Log: slog.New(slog.DiscardHandler)}, Config{})
	t.Cleanup(func() { require.NoError(t, s.Close(context.Background())) })
	return s, d
}

func authed(ctx context.Context, key string) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+key))
}

func fieldsOf(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func TestEmbed(t *testing.T) {
	s, d := newTestServer(t)
	ctx := authed(t.Context(), "good")

	resp, err := s.Embed(ctx, &gatewayv1.EmbedRequest{Model: "granted", Inputs: []string{"plain", "my secret"}, Dimensions: ptr[int32](4), EndUserId: "u"})
	require.NoError(t, err)
	assert.Equal(t, "granted", resp.GetModel())
	require.Len(t, resp.GetEmbeddings(), 2)
	assert.Equal(t, int64(3), resp.GetUsage().GetTotalTokens())
	require.Len(t, d.embeds, 1)
	got := d.embeds[0]
	assert.Equal(t, []string{"plain", "my [X]"}, got.GetInputs(), "masked inputs reach the vendor")
	assert.Equal(t, []string{"ep1", "ep2"}, got.GetEndpointIds())
	assert.Equal(t, "acme", got.GetOrganizationId())
	assert.Equal(t, int32(4), got.GetDimensions())
	assert.Equal(t, "u", got.GetEndUserId())
	assert.Equal(t, int32(2), d.facts[0].GetMessageCount())

	cases := []struct {
		name   string
		ctx    context.Context
		req    *gatewayv1.EmbedRequest
		code   codes.Code
		fields []string
	}{
		{name: "no key", ctx: t.Context(), req: &gatewayv1.EmbedRequest{Model: "granted", Inputs: []string{"a"}}, code: codes.Unauthenticated},
		{name: "invalid", ctx: ctx, req: &gatewayv1.EmbedRequest{Inputs: []string{"a", ""}, Dimensions: ptr[int32](0)}, code: codes.InvalidArgument,
			fields: []string{"model", "inputs[1]", "dimensions"}},
		{name: "no inputs", ctx: ctx, req: &gatewayv1.EmbedRequest{Model: "granted"}, code: codes.InvalidArgument, fields: []string{"inputs"}},
		{name: "too many inputs", ctx: ctx, req: &gatewayv1.EmbedRequest{Model: "granted", Inputs: make([]string, maxEmbedInputs+1)}, code: codes.InvalidArgument},
		{name: "not granted", ctx: ctx, req: &gatewayv1.EmbedRequest{Model: "denied", Inputs: []string{"a"}}, code: codes.PermissionDenied},
		{name: "unknown", ctx: ctx, req: &gatewayv1.EmbedRequest{Model: "nope", Inputs: []string{"a"}}, code: codes.NotFound},
		{name: "blocked", ctx: ctx, req: &gatewayv1.EmbedRequest{Model: "granted", Inputs: []string{"a forbidden text"}}, code: codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Embed(tc.ctx, tc.req)
			assert.Equal(t, tc.code, status.Code(err), "%v", err)
			if tc.fields != nil {
				assert.Equal(t, tc.fields, fieldsOf(err))
			}
		})
	}
	assert.Len(t, d.embeds, 1, "refused requests never reach dispatch")
}

func TestGetModel(t *testing.T) {
	s, _ := newTestServer(t)
	ctx := authed(t.Context(), "good")
	resp, err := s.GetModel(ctx, &gatewayv1.GetModelRequest{Name: "granted"})
	require.NoError(t, err)
	assert.Equal(t, "granted", resp.GetModel().GetName())
	assert.Equal(t, "GRANTED", resp.GetModel().GetDisplayName())
	assert.Equal(t, int32(8), resp.GetModel().GetContextWindow())

	// Unknown, not routable and not granted look the same.
	var messages []string
	for _, name := range []string{"nope", "draft", "denied"} {
		_, err := s.GetModel(ctx, &gatewayv1.GetModelRequest{Name: name})
		st := status.Convert(err)
		assert.Equal(t, codes.NotFound, st.Code(), name)
		messages = append(messages, strings.ReplaceAll(st.Message(), name, "X"))
	}
	assert.Equal(t, messages[0], messages[1])
	assert.Equal(t, messages[0], messages[2])

	_, err = s.GetModel(authed(t.Context(), "bad"), &gatewayv1.GetModelRequest{Name: "granted"})
	assert.Equal(t, codes.Unauthenticated, status.Code(err))
	_, err = s.GetModel(ctx, &gatewayv1.GetModelRequest{})
	assert.Equal(t, []string{"name"}, fieldsOf(err))
}

func TestStreamRelaysToolCalls(t *testing.T) {
	s, d := newTestServer(t)
	d.chunks = []*dispatchv1.StreamGenerateResponse{
		{TextDelta: "I will lo"},
		{TextDelta: "ok", ToolCalls: []*typev1.ToolCallDelta{{Index: 0, Id: "c1", Name: "look", ArgumentsDelta: `{"q":`}}},
		{ToolCalls: []*typev1.ToolCallDelta{{Index: 0, ArgumentsDelta: `"my secret"}`}}},
		{FinishReason: typev1.FinishReason_FINISH_REASON_TOOL_CALLS, Usage: &typev1.Usage{InputTokens: 1, OutputTokens: 2, TotalTokens: 3}},
	}
	out := &sentStream{ctx: authed(t.Context(), "good")}
	require.NoError(t, s.StreamGenerate(&gatewayv1.StreamGenerateRequest{Model: "granted", Messages: []*typev1.Message{
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("look")}},
	}}, out))

	// The fake dispatch hands every chunk over at once, so the edge may merge them
	// (coalescer); what counts is the order: the text before the tool call reaches the caller
	// before the call or in the same event, whose text a client relays first.
	var textOut strings.Builder
	var calls []*typev1.ToolCallDelta
	textBeforeCall := ""
	for _, ev := range out.sent {
		textOut.WriteString(ev.GetTextDelta())
		if len(calls) == 0 && len(ev.GetToolCalls()) > 0 {
			textBeforeCall = textOut.String()
		}
		calls = append(calls, ev.GetToolCalls()...)
	}
	assert.Equal(t, "I will look", textOut.String())
	assert.Equal(t, "I will look", textBeforeCall, "text before a tool call goes out first, in order")
	require.Len(t, calls, 2)
	assert.Equal(t, "c1", calls[0].GetId())
	assert.Equal(t, `{"q":"my secret"}`, calls[0].GetArgumentsDelta()+calls[1].GetArgumentsDelta(), "tool arguments are not screened as text")
	last := out.sent[len(out.sent)-1]
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, last.GetFinishReason())
	assert.Equal(t, int64(3), last.GetUsage().GetTotalTokens())
}
