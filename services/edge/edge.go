// Package edge is fmgate's public surface: the native GatewayService (gRPC, and REST through
// grpc-gateway), the OpenAI- and Anthropic-compatible REST dialects (thin translations onto
// the same GatewayService), health endpoints and the OpenAPI document. For each generation it
// orchestrates the other services through their generated clients:
//
//	identity.Authenticate → registry.ResolveRoute → policy.Evaluate
//	→ quota.Reserve ∥ moderation.ScreenInput → dispatch → moderation.ScreenOutput
//	→ quota.Commit (after the answer, off the request path)
//
// A refusal at any step ends the request with that step's status code.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	moderationv1 "github.com/fmgate/fmgate/gen/fmgate/moderation/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	quotav1 "github.com/fmgate/fmgate/gen/fmgate/quota/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
	"github.com/fmgate/fmgate/internal/audit"
)

// DefaultModerationProfile screens requests whose policy names no profile: moderation is
// never skipped silently.
const DefaultModerationProfile = "default"

// Deps are the services the edge orchestrates, as generated clients (in process or over
// the network: the edge cannot tell), and its logger.
type Deps struct {
	Identity   identityv1.IdentityServiceClient
	Registry   registryv1.RegistryServiceClient
	Policy     policyv1.PolicyServiceClient
	Quota      quotav1.QuotaServiceClient
	Moderation moderationv1.ModerationServiceClient
	Dispatch   dispatchv1.DispatchServiceClient
	Log        *slog.Logger
	// Audit receives one event per generation, embedding and refusal after authentication
	// (audit.go); nil records nothing.
	Audit Recorder
}

// Config holds optional knobs; the zero value works.
type Config struct {
	// CommitTimeout bounds each attempt to record usage after a generation (default 5s).
	CommitTimeout time.Duration
	// CommitAttempts is how often recording usage is tried before it is logged as lost
	// (default 5).
	CommitAttempts int
	// PrincipalTTL is how long an authenticated credential's principal is reused (default
	// DefaultPrincipalTTL); it bounds how long a revoked key keeps working. Negative: never
	// cached.
	PrincipalTTL time.Duration
	// RouteTTL is how long a resolved route is reused (default DefaultRouteTTL). Negative:
	// never cached.
	RouteTTL time.Duration
}

// Server implements gatewayv1.GatewayServiceServer.
type Server struct {
	gatewayv1.UnimplementedGatewayServiceServer
	d          Deps
	cfg        Config
	commits    sync.WaitGroup
	principals *ttlCache[*identityv1.Principal]
	routes     *ttlCache[*registryv1.ResolveRouteResponse]
	auditLost  atomic.Int64 // audit events the recorder refused
}

// NewServer returns the gateway server.
func NewServer(d Deps, cfg Config) *Server {
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = 5 * time.Second
	}
	if cfg.CommitAttempts <= 0 {
		cfg.CommitAttempts = 5
	}
	if cfg.PrincipalTTL == 0 {
		cfg.PrincipalTTL = DefaultPrincipalTTL
	}
	if cfg.RouteTTL == 0 {
		cfg.RouteTTL = DefaultRouteTTL
	}
	return &Server{
		d: d, cfg: cfg,
		principals: newTTLCache[*identityv1.Principal](cfg.PrincipalTTL),
		routes:     newTTLCache[*registryv1.ResolveRouteResponse](cfg.RouteTTL),
	}
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { gatewayv1.RegisterGatewayServiceServer(r, s) }

// Close waits, up to ctx's deadline, for usage records still being written.
func (s *Server) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.commits.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// admitted is what the steps before dispatch decided about a request.
type admitted struct {
	principal  *identityv1.Principal
	route      *registryv1.ResolveRouteResponse
	profile    string
	messages   []*typev1.Message
	params     *typev1.GenerationParams
	moderation []*gatewayv1.ModerationNotice
	decision   *policyv1.EvaluateResponse // for the audit event
	findings   []audit.Finding            // input findings, for the audit event
}

// Generate implements gatewayv1.GatewayServiceServer.
func (s *Server) Generate(ctx context.Context, req *gatewayv1.GenerateRequest) (_ *gatewayv1.GenerateResponse, err error) {
	a, err := s.admit(ctx, req.GetModel(), req.GetMessages(), req.GetParams(), false)
	if err != nil {
		return nil, err
	}
	rec := a.audit(ActionGeneration)
	defer func() { rec.outcome = outcomeOf(err, rec.outcome); s.record(ctx, rec) }()
	out, err := s.d.Dispatch.Generate(ctx, &dispatchv1.GenerateRequest{
		OrganizationId: a.principal.GetOrganizationId(),
		EndpointIds:    endpointIDs(a.route),
		EndpointTiers:  a.route.GetEndpointTiers(),
		Messages:       a.messages,
		Params:         a.params,
	})
	if err != nil {
		return nil, err
	}
	s.commit(ctx, a, out.GetUsage())
	rec.endpoint, rec.usage, rec.finish = out.GetEndpointId(), out.GetUsage(), out.GetFinishReason()

	resp := &gatewayv1.GenerateResponse{
		Id:           newID(),
		Model:        req.GetModel(),
		Message:      out.GetMessage(),
		FinishReason: out.GetFinishReason(),
		Usage:        out.GetUsage(),
		Moderation:   a.moderation,
	}
	screened, err := s.d.Moderation.ScreenOutput(ctx, &moderationv1.ScreenOutputRequest{
		OrganizationId: a.principal.GetOrganizationId(),
		Profile:        a.profile,
		Message:        out.GetMessage(),
	})
	if err != nil {
		return nil, err
	}
	resp.Moderation = append(resp.Moderation, notices("output", screened.GetFindings())...)
	rec.findings = mergeFindings(rec.findings, findingsOf("output", screened.GetFindings()))
	switch screened.GetVerdict() {
	case moderationv1.Verdict_VERDICT_BLOCK:
		resp.Message = &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT}
		resp.FinishReason = typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
		rec.finish, rec.outcome = resp.FinishReason, "blocked"
	case moderationv1.Verdict_VERDICT_MODIFIED:
		resp.Message = screened.GetMessage()
	}
	annotate(ctx, "chat", req.GetModel(), out.GetResponseModel(), out.GetUsage())
	return resp, nil
}

// StreamGenerate implements gatewayv1.GatewayServiceServer.
//
// Output is screened as it streams: text is held back until a whitespace boundary, so that
// each screened segment ends between words and a detector never sees half an e-mail address.
// Tool-call pieces are relayed as they come and are not screened as text: their arguments are
// fragments of a JSON document addressed to the caller's program, not prose, and a text
// detector run over fragments would both miss and invent findings. A tool-call piece ends the
// text before it, so held text is screened and sent first and the order of the answer is kept.
func (s *Server) StreamGenerate(req *gatewayv1.StreamGenerateRequest, stream grpc.ServerStreamingServer[gatewayv1.StreamGenerateResponse]) (err error) {
	ctx := stream.Context()
	a, err := s.admit(ctx, req.GetModel(), req.GetMessages(), req.GetParams(), true)
	if err != nil {
		return err
	}
	rec := a.audit(ActionGeneration)
	var usage *typev1.Usage
	defer func() { rec.usage = usage; rec.outcome = outcomeOf(err, rec.outcome); s.record(ctx, rec) }()
	up, err := s.d.Dispatch.StreamGenerate(ctx, &dispatchv1.StreamGenerateRequest{
		OrganizationId: a.principal.GetOrganizationId(),
		EndpointIds:    endpointIDs(a.route),
		EndpointTiers:  a.route.GetEndpointTiers(),
		Messages:       a.messages,
		Params:         a.params,
	})
	if err != nil {
		return err
	}
	// Output is screened as it streams, through one ScreenStream call per answer: the
	// moderation service holds back only what a detector may still need (an unfinished word
	// or number group) and releases the rest at once.
	screen, err := s.d.Moderation.ScreenStream(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = screen.CloseSend() }()
	screenReq := &moderationv1.ScreenStreamRequest{OrganizationId: a.principal.GetOrganizationId(), Profile: a.profile}
	id := newID()
	first := true
	send := func(text string, calls []*typev1.ToolCallDelta, last *dispatchv1.StreamGenerateResponse) error {
		ev := &gatewayv1.StreamGenerateResponse{Id: id, Model: req.GetModel(), TextDelta: text, ToolCalls: calls}
		if first {
			ev.Moderation = a.moderation
			first = false
		}
		if last != nil {
			ev.FinishReason = last.GetFinishReason()
			ev.Usage = last.GetUsage()
		}
		return stream.Send(ev)
	}
	// Chunks that reach the edge together (a burst) are screened and sent as one: coalescer.
	in := newCoalescer(ctx, up)
	for {
		chunk, err := in.Recv()
		if err != nil {
			// io.EOF without a final chunk, or an upstream failure: either way the answer is
			// incomplete, so the caller gets an error, never a silent truncation.
			s.commit(ctx, a, usage)
			if status.Code(err) == codes.Unknown {
				return status.Error(codes.Unavailable, "upstream stream ended without a final chunk")
			}
			return err
		}
		if chunk.GetUsage() != nil {
			usage = chunk.GetUsage()
		}
		if chunk.GetEndpointId() != "" {
			rec.endpoint = chunk.GetEndpointId()
		}
		calls := chunk.GetToolCalls()
		last := chunk.GetFinishReason() != typev1.FinishReason_FINISH_REASON_UNSPECIFIED
		text := ""
		if chunk.GetTextDelta() != "" || last || len(calls) > 0 {
			// A tool-call piece flushes the text before it, so the caller sees them in order.
			// Tool-call arguments are not screened as text: they are JSON for the caller's
			// code, not prose for a person.
			screenReq.TextDelta, screenReq.End, screenReq.Flush = chunk.GetTextDelta(), last, len(calls) > 0
			if err := screen.Send(screenReq); err != nil {
				return err
			}
			screenReq.OrganizationId, screenReq.Profile = "", ""
			res, err := screen.Recv()
			if err != nil {
				return err
			}
			rec.findings = mergeFindings(rec.findings, findingsOf("output", res.GetFindings()))
			if res.GetVerdict() == moderationv1.Verdict_VERDICT_BLOCK {
				rec.finish, rec.outcome = typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, "blocked"
				s.commit(ctx, a, usage)
				return stream.Send(&gatewayv1.StreamGenerateResponse{
					Id: id, Model: req.GetModel(), FinishReason: typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, Usage: usage,
				})
			}
			text = res.GetText()
		}
		if last {
			rec.finish = chunk.GetFinishReason()
			s.commit(ctx, a, usage)
			annotate(ctx, "chat", req.GetModel(), chunk.GetResponseModel(), usage)
			return send(text, calls, chunk)
		}
		if text != "" || len(calls) > 0 {
			if err := send(text, calls, nil); err != nil {
				return err
			}
		}
	}
}

// ListModels implements gatewayv1.GatewayServiceServer: the organisation's routable models
// that policy grants to the caller.
func (s *Server) ListModels(ctx context.Context, req *gatewayv1.ListModelsRequest) (*gatewayv1.ListModelsResponse, error) {
	p, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetPageSize() < 0 {
		return nil, apierr.Field("page_size", "must not be negative")
	}
	if err := checkScope(p, identityv1.Operation_OPERATION_LIST_MODELS, ""); err != nil {
		return nil, err
	}
	page, err := s.d.Registry.ListModels(ctx, &registryv1.ListModelsRequest{
		OrganizationId: p.GetOrganizationId(), PageSize: req.GetPageSize(), PageToken: req.GetPageToken(),
	})
	if err != nil {
		return nil, err
	}
	resp := &gatewayv1.ListModelsResponse{NextPageToken: page.GetNextPageToken()}
	for _, m := range page.GetModels() {
		d, err := s.d.Policy.Evaluate(ctx, &policyv1.EvaluateRequest{Principal: p, Model: m.GetName(), Request: &policyv1.RequestFacts{}})
		if err != nil {
			return nil, err
		}
		if d.GetDecision() != policyv1.Decision_DECISION_ALLOW || !scopeAllowsModel(p, m.GetName()) {
			continue
		}
		resp.Models = append(resp.Models, publicModel(m))
	}
	return resp, nil
}

// admit runs every step before dispatch: authentication, validation, routing, policy, then
// quota and input moderation together.
func (s *Server) admit(ctx context.Context, model string, msgs []*typev1.Message, params *typev1.GenerationParams, stream bool) (*admitted, error) {
	p, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if err := validate(model, msgs, params); err != nil {
		return nil, err
	}
	facts := &policyv1.RequestFacts{MessageCount: int32(len(msgs)), Stream: stream, MaxOutputTokens: params.GetMaxOutputTokens()}
	if err := checkScope(p, identityv1.Operation_OPERATION_GENERATE, model); err != nil {
		s.refused(ctx, p, model, nil, nil, nil, "key_scope")
		return nil, err
	}
	return s.admitFor(ctx, p, model, msgs, params, facts)
}

// admitFor runs the steps after validation: routing, policy, then quota and input
// moderation together. Generations and embeddings share it.
func (s *Server) admitFor(ctx context.Context, p *identityv1.Principal, model string, msgs []*typev1.Message,
	params *typev1.GenerationParams, facts *policyv1.RequestFacts,
) (*admitted, error) {
	route, err := s.resolveRoute(ctx, p.GetOrganizationId(), model)
	if err != nil {
		return nil, err
	}
	decision, err := s.d.Policy.Evaluate(ctx, &policyv1.EvaluateRequest{
		Principal: p, Model: model, Request: facts, ModelFacts: modelFacts(route), Endpoints: endpointFacts(route),
	})
	if err != nil {
		return nil, err
	}
	if decision.GetDecision() != policyv1.Decision_DECISION_ALLOW {
		msg := "model " + model + " is not granted to " + p.GetSubject()
		if len(decision.GetReasons()) > 0 {
			msg += ": " + strings.Join(decision.GetReasons(), "; ")
		}
		s.refused(ctx, p, model, route, decision, nil, "policy_denied")
		return nil, apierr.WithReason(codes.PermissionDenied, "MODEL_NOT_GRANTED", msg)
	}
	// After policy, so that only those granted the model learn what its licence asks.
	if err := checkLicense(p, route.GetModel()); err != nil {
		s.refused(ctx, p, model, route, decision, nil, "license_not_accepted")
		return nil, err
	}
	// Obligations such as allowed regions leave only some of the route's endpoints, and
	// fallback models only serve teams that accepted their licences.
	route = onlyEndpoints(route, decision.GetAllowedEndpointIds())
	licensed, err := licensedRoute(p, route)
	if err != nil {
		if status.Code(err) != codes.Internal { // a route without a fallback's card is a fault, not a refusal
			s.refused(ctx, p, model, route, decision, nil, "license_not_accepted")
		}
		return nil, err
	}
	route = licensed
	a := &admitted{principal: p, route: route, profile: decision.GetObligations().GetModerationProfile(), params: params, decision: decision}
	if a.profile == "" {
		a.profile = DefaultModerationProfile
	}
	if limit := decision.GetObligations().GetMaxOutputTokens(); limit > 0 && params.GetMaxOutputTokens() == 0 {
		a.params = cloneParams(params)
		a.params.MaxOutputTokens = &limit
	}

	g, gctx := errgroup.WithContext(ctx)
	var quotaErr error // told apart from moderation's: either may end the group first
	g.Go(func() error {
		_, quotaErr = s.d.Quota.Reserve(gctx, &quotav1.ReserveRequest{Subject: subjectOf(p), Model: model})
		return quotaErr
	})
	var screened *moderationv1.ScreenInputResponse
	g.Go(func() error {
		var err error
		screened, err = s.d.Moderation.ScreenInput(gctx, &moderationv1.ScreenInputRequest{
			OrganizationId: p.GetOrganizationId(), Profile: a.profile, Messages: msgs,
		})
		return err
	})
	if err := g.Wait(); err != nil {
		if quotaRefusal(quotaErr) {
			s.refused(ctx, p, model, route, decision, nil, "quota_exhausted")
		}
		return nil, err
	}
	a.moderation = notices("input", screened.GetFindings())
	a.findings = findingsOf("input", screened.GetFindings())
	switch screened.GetVerdict() {
	case moderationv1.Verdict_VERDICT_BLOCK:
		s.refused(ctx, p, model, route, decision, a.findings, "input_blocked")
		return nil, apierr.WithReason(codes.InvalidArgument, "INPUT_BLOCKED",
			"the prompt was blocked by moderation ("+detectorNames(screened.GetFindings())+")")
	case moderationv1.Verdict_VERDICT_MODIFIED:
		a.messages = screened.GetMessages()
	default:
		a.messages = msgs
	}
	return a, nil
}

// Embed implements gatewayv1.GatewayServiceServer. Each input is screened as a user message
// of its own, so masking applies to embeddings as it does to prompts.
func (s *Server) Embed(ctx context.Context, req *gatewayv1.EmbedRequest) (_ *gatewayv1.EmbedResponse, err error) {
	p, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if err := validateEmbed(req); err != nil {
		return nil, err
	}
	msgs := make([]*typev1.Message, len(req.GetInputs()))
	for i, in := range req.GetInputs() {
		msgs[i] = &typev1.Message{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: in}}}}
	}
	if err := checkScope(p, identityv1.Operation_OPERATION_EMBED, req.GetModel()); err != nil {
		s.refused(ctx, p, req.GetModel(), nil, nil, nil, "key_scope")
		return nil, err
	}
	a, err := s.admitFor(ctx, p, req.GetModel(), msgs, nil, &policyv1.RequestFacts{MessageCount: int32(len(msgs))})
	if err != nil {
		return nil, err
	}
	rec := a.audit(ActionEmbedding)
	defer func() { rec.outcome = outcomeOf(err, rec.outcome); s.record(ctx, rec) }()
	// The screened messages replace the inputs (masking may have changed them).
	if len(a.messages) != len(msgs) {
		return nil, status.Errorf(codes.Internal, "moderation returned %d inputs for %d", len(a.messages), len(msgs))
	}
	inputs := make([]string, len(a.messages))
	for i, m := range a.messages {
		inputs[i] = messageText(m)
	}
	out, err := s.d.Dispatch.Embed(ctx, &dispatchv1.EmbedRequest{
		OrganizationId: p.GetOrganizationId(),
		EndpointIds:    endpointIDs(a.route),
		EndpointTiers:  a.route.GetEndpointTiers(),
		Inputs:         inputs,
		Dimensions:     req.Dimensions,
		EndUserId:      req.GetEndUserId(),
	})
	if err != nil {
		return nil, err
	}
	rec.endpoint, rec.usage = out.GetEndpointId(), out.GetUsage()
	s.commit(ctx, a, out.GetUsage())
	annotate(ctx, "embeddings", req.GetModel(), out.GetResponseModel(), out.GetUsage())
	return &gatewayv1.EmbedResponse{Model: req.GetModel(), Embeddings: out.GetEmbeddings(), Usage: out.GetUsage()}, nil
}

// GetModel implements gatewayv1.GatewayServiceServer. A model that does not exist, is not
// routable or is not granted to the caller gets the same NOT_FOUND, so that callers cannot
// probe the catalogue.
func (s *Server) GetModel(ctx context.Context, req *gatewayv1.GetModelRequest) (*gatewayv1.GetModelResponse, error) {
	p, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	var v violations
	v.model(req.GetName())
	if len(v) > 0 {
		v[0].Field = "name"
		return nil, v.err()
	}
	if err := checkScope(p, identityv1.Operation_OPERATION_LIST_MODELS, ""); err != nil {
		return nil, err
	}
	notFound := status.Errorf(codes.NotFound, "model %q not found", req.GetName())
	if !scopeAllowsModel(p, req.GetName()) {
		return nil, notFound
	}
	route, err := s.resolveRoute(ctx, p.GetOrganizationId(), req.GetName())
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound, codes.FailedPrecondition:
		return nil, notFound
	default:
		return nil, err
	}
	d, err := s.d.Policy.Evaluate(ctx, &policyv1.EvaluateRequest{Principal: p, Model: req.GetName(), Request: &policyv1.RequestFacts{}})
	if err != nil {
		return nil, err
	}
	if d.GetDecision() != policyv1.Decision_DECISION_ALLOW {
		return nil, notFound
	}
	return &gatewayv1.GetModelResponse{Model: publicModel(route.GetModel())}, nil
}

func publicModel(m *registryv1.Model) *gatewayv1.Model {
	return &gatewayv1.Model{Name: m.GetName(), DisplayName: m.GetDisplayName(), Vendor: m.GetVendor(), ContextWindow: m.GetContextWindow()}
}

// authenticate resolves the caller's API key, sent as `authorization: Bearer <key>`.
func (s *Server) authenticate(ctx context.Context) (*identityv1.Principal, error) {
	values := metadata.ValueFromIncomingContext(ctx, "authorization") // copies this key only
	if len(values) == 0 || values[0] == "" {
		return nil, status.Error(codes.Unauthenticated, "missing API key: send it as 'Authorization: Bearer <key>'")
	}
	credential := values[0]
	p, err := s.principals.get(ctx, credentialKey(credential), func(ctx context.Context) (*identityv1.Principal, error) {
		resp, err := s.d.Identity.Authenticate(ctx, &identityv1.AuthenticateRequest{Credential: credential})
		if err != nil {
			return nil, err
		}
		return resp.GetPrincipal(), nil
	})
	if err != nil {
		return nil, err
	}
	// A cached principal is never used past its credential's expiry.
	if exp := p.GetExpireTime(); exp != nil && !time.Now().Before(exp.AsTime()) {
		return nil, status.Error(codes.Unauthenticated, "invalid credential")
	}
	return p, nil
}

// resolveRoute returns the route of an organisation's model, cached for RouteTTL.
func (s *Server) resolveRoute(ctx context.Context, org, model string) (*registryv1.ResolveRouteResponse, error) {
	return s.routes.get(ctx, org+"\x00"+model, func(ctx context.Context) (*registryv1.ResolveRouteResponse, error) {
		return s.d.Registry.ResolveRoute(ctx, &registryv1.ResolveRouteRequest{OrganizationId: org, Model: model})
	})
}

// commit records usage against token limits after the answer, detached from the caller's
// cancellation and retried, so that a client hanging up does not erase what it consumed.
func (s *Server) commit(ctx context.Context, a *admitted, usage *typev1.Usage) {
	if usage.GetTotalTokens() == 0 {
		return
	}
	req := &quotav1.CommitRequest{Subject: subjectOf(a.principal), Model: a.route.GetModel().GetName(), Usage: usage}
	detached := context.WithoutCancel(ctx)
	s.commits.Add(1)
	go func() {
		defer s.commits.Done()
		backoff := 50 * time.Millisecond
		for attempt := 1; ; attempt++ {
			actx, cancel := context.WithTimeout(detached, s.cfg.CommitTimeout)
			_, err := s.d.Quota.Commit(actx, req)
			cancel()
			if err == nil {
				return
			}
			if attempt == s.cfg.CommitAttempts || status.Code(err) == codes.InvalidArgument {
				s.d.Log.ErrorContext(detached, "usage not recorded", "organization_id", req.GetSubject().GetOrganizationId(),
					"model", req.GetModel(), "total_tokens", usage.GetTotalTokens(), "error", status.Convert(err).Message())
				return
			}
			time.Sleep(backoff)
			backoff *= 2
		}
	}()
}

func subjectOf(p *identityv1.Principal) *quotav1.Subject {
	return &quotav1.Subject{
		OrganizationId: p.GetOrganizationId(), Subject: p.GetSubject(), TeamId: p.GetTeamId(), ApiKeyId: p.GetApiKeyId(),
	}
}

func endpointIDs(route *registryv1.ResolveRouteResponse) []string {
	ids := make([]string, 0, len(route.GetEndpoints()))
	for _, e := range route.GetEndpoints() {
		ids = append(ids, e.GetId())
	}
	return ids
}

func notices(stage string, findings []*moderationv1.Finding) []*gatewayv1.ModerationNotice {
	var out []*gatewayv1.ModerationNotice
	for _, f := range findings {
		out = append(out, &gatewayv1.ModerationNotice{
			Stage: stage, Detector: f.GetDetector(), Count: f.GetCount(),
			Action: strings.ToLower(strings.TrimPrefix(f.GetAction().String(), "ACTION_")),
		})
	}
	return out
}

func detectorNames(findings []*moderationv1.Finding) string {
	var names []string
	for _, f := range findings {
		if f.GetAction() == moderationv1.Action_ACTION_BLOCK {
			names = append(names, f.GetDetector())
		}
	}
	return strings.Join(names, ", ")
}

func messageText(m *typev1.Message) string {
	var b strings.Builder
	for _, p := range m.GetContent() {
		b.WriteString(p.GetText())
	}
	return b.String()
}

func cloneParams(p *typev1.GenerationParams) *typev1.GenerationParams {
	if p == nil {
		return &typev1.GenerationParams{}
	}
	return proto.Clone(p).(*typev1.GenerationParams)
}

// annotate adds the GenAI semantic-convention attributes to the edge's span of the RPC.
func annotate(ctx context.Context, operation, model, responseModel string, usage *typev1.Usage) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(
		attribute.String("gen_ai.operation.name", operation),
		attribute.String("gen_ai.request.model", model),
		attribute.String("gen_ai.response.model", responseModel),
		attribute.Int64("gen_ai.usage.input_tokens", usage.GetInputTokens()),
		attribute.Int64("gen_ai.usage.output_tokens", usage.GetOutputTokens()),
	)
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "gen-" + hex.EncodeToString(b[:])
}

// modelFacts describes the routed model to policy.
func modelFacts(route *registryv1.ResolveRouteResponse) *policyv1.ModelFacts {
	m := route.GetModel()
	return &policyv1.ModelFacts{
		Name: m.GetName(), Vendor: m.GetVendor(),
		LifecycleState: strings.ToLower(strings.TrimPrefix(m.GetLifecycleState().String(), "LIFECYCLE_STATE_")),
	}
}

// endpointFacts describes the route's endpoints to policy, which answers with those its
// obligations (regions, BAA coverage) leave.
func endpointFacts(route *registryv1.ResolveRouteResponse) []*policyv1.EndpointFacts {
	out := make([]*policyv1.EndpointFacts, len(route.GetEndpoints()))
	for i, e := range route.GetEndpoints() {
		out[i] = &policyv1.EndpointFacts{
			Id: e.GetId(), Region: e.GetRegion(), CoveredByBaa: e.GetCoveredByBaa(),
			Provider: strings.ToLower(strings.TrimPrefix(e.GetProvider().String(), "PROVIDER_KIND_")),
		}
	}
	return out
}

// onlyEndpoints returns the route with only the allowed endpoints (filterRoute). An
// allowing decision always leaves at least one endpoint (policy denies otherwise), so an
// empty list means the policy service did not filter.
func onlyEndpoints(route *registryv1.ResolveRouteResponse, allowed []string) *registryv1.ResolveRouteResponse {
	if len(allowed) == 0 || len(allowed) == len(route.GetEndpoints()) {
		return route
	}
	keep := make(map[string]bool, len(allowed))
	for _, id := range allowed {
		keep[id] = true
	}
	return filterRoute(route, func(i int) bool { return keep[route.GetEndpoints()[i].GetId()] })
}

// filterRoute returns a copy of route with only the endpoints i for which keep(i) holds, in
// order, and the same entries of the lists parallel to them (endpoint_tiers,
// endpoint_models; a list of another length is dropped). The route may be shared through
// the cache, so it is copied, never changed.
func filterRoute(route *registryv1.ResolveRouteResponse, keep func(i int) bool) *registryv1.ResolveRouteResponse {
	out := &registryv1.ResolveRouteResponse{
		Model: route.GetModel(), Deprecation: route.GetDeprecation(), FallbackModels: route.GetFallbackModels(),
	}
	eps, tiers, models := route.GetEndpoints(), route.GetEndpointTiers(), route.GetEndpointModels()
	for i, e := range eps {
		if !keep(i) {
			continue
		}
		out.Endpoints = append(out.Endpoints, e)
		if len(tiers) == len(eps) {
			out.EndpointTiers = append(out.EndpointTiers, tiers[i])
		}
		if len(models) == len(eps) {
			out.EndpointModels = append(out.EndpointModels, models[i])
		}
	}
	return out
}
