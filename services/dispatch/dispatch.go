// Package dispatch sends generations to the vendors behind registry endpoints: it resolves
// each endpoint's URL and credential from the registry (never from the request), speaks the
// vendor's protocol, falls back to the next endpoint on retryable failures, and reports what
// happened with the status a caller can act on.
//
// Fallback rules. An attempt that fails with 429, 5xx, a connection error or a timeout moves
// on to the next endpoint, and so does an endpoint that cannot be used (unknown to the
// registry, credential missing or rejected with 401/403, unsupported provider): the request is
// not at fault and the next endpoint may serve it. A vendor 4xx other than 429, 401 and 403
// means the request itself is at fault, so no other endpoint is tried. A stream falls back
// only until its first chunk has reached the caller.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Defaults of Config.
const (
	DefaultEndpointCacheTTL = 5 * time.Second
	DefaultTimeout          = 60 * time.Second
)

// Config holds dispatch's optional knobs; the zero value works.
type Config struct {
	// HTTPClient calls vendors. Default: a client pooling up to 512 idle connections per
	// vendor host (enough for thousands of requests per second), traced with otelhttp, and
	// refusing redirects (a vendor API does not redirect; following one could carry the
	// request elsewhere).
	HTTPClient *http.Client
	// EndpointCacheTTL is how long a resolved endpoint (URL, credential, vendor client) is
	// reused before the registry is asked again. Default DefaultEndpointCacheTTL.
	EndpointCacheTTL time.Duration
	// Credentials resolves endpoints' credential references. Default EnvFileResolver.
	Credentials CredentialResolver
	// Timeout bounds one vendor call; for a stream, the wait for each chunk. Default
	// DefaultTimeout.
	Timeout time.Duration
	// TracerProvider makes the dispatch.vendor_call spans and, for the default HTTPClient,
	// the HTTP client spans. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Server implements dispatchv1.DispatchServiceServer.
type Server struct {
	dispatchv1.UnimplementedDispatchServiceServer
	log       *slog.Logger
	tracer    trace.Tracer
	timeout   time.Duration
	endpoints *endpointCache
	// ownClient is the default HTTP client, closed by Close.
	ownClient *http.Client
}

// NewServer returns a dispatch server reading endpoints from registry.
func NewServer(registry registryv1.RegistryServiceClient, log *slog.Logger, cfg Config) *Server {
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.EndpointCacheTTL <= 0 {
		cfg.EndpointCacheTTL = DefaultEndpointCacheTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Credentials == nil {
		cfg.Credentials = EnvFileResolver{}
	}
	s := &Server{
		log:     log,
		tracer:  cfg.TracerProvider.Tracer("fmgate/dispatch"),
		timeout: cfg.Timeout,
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = newHTTPClient(cfg.TracerProvider)
		s.ownClient = cfg.HTTPClient
	}
	s.endpoints = &endpointCache{
		registry: registry,
		creds:    cfg.Credentials,
		client:   cfg.HTTPClient,
		ttl:      cfg.EndpointCacheTTL,
		max:      maxCachedEndpoints,
		entries:  make(map[endpointKey]cacheEntry),
	}
	return s
}

func newHTTPClient(tp trace.TracerProvider) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2048
	tr.MaxIdleConnsPerHost = 512
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: otelhttp.NewTransport(tr, otelhttp.WithTracerProvider(tp)),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { dispatchv1.RegisterDispatchServiceServer(r, s) }

// Close releases the idle vendor connections of the default HTTP client. A client passed in
// Config belongs to the caller.
func (s *Server) Close() {
	if s.ownClient != nil {
		s.ownClient.CloseIdleConnections()
	}
}

// Generate implements dispatchv1.DispatchServiceServer.
func (s *Server) Generate(ctx context.Context, req *dispatchv1.GenerateRequest) (*dispatchv1.GenerateResponse, error) {
	if err := validate(req.GetOrganizationId(), req.GetEndpointIds(), req.GetMessages(), req.GetParams()); err != nil {
		return nil, err
	}
	vreq := &vendorRequest{messages: req.GetMessages(), params: req.GetParams()}
	var last *attemptError
	for i, id := range req.GetEndpointIds() {
		ep, err := s.endpoints.get(ctx, req.GetOrganizationId(), id)
		if err == nil {
			var res *vendorResult
			res, err = s.generateOnce(ctx, ep, i+1, vreq)
			if err == nil {
				return &dispatchv1.GenerateResponse{
					Message:       res.message,
					FinishReason:  res.finish,
					Usage:         res.usage,
					EndpointId:    id,
					ResponseModel: res.model,
				}, nil
			}
		}
		if ctx.Err() != nil {
			return nil, contextStatus(ctx)
		}
		last = s.attemptFailed(ctx, id, i+1, err)
		if !last.kind.retryable() {
			break
		}
	}
	return nil, last.toStatus()
}

// attemptFailed logs a failed attempt and returns it as an *attemptError.
func (s *Server) attemptFailed(ctx context.Context, id string, attempt int, err error) *attemptError {
	var ae *attemptError
	if !errors.As(err, &ae) {
		ae = &attemptError{kind: failUnavailable, endpointID: id, detail: err.Error()}
	}
	level := slog.LevelWarn
	if ae.kind == failMisconfigured || ae.kind == failCredential || ae.kind == failNotFound {
		level = slog.LevelError // ours to fix, not the vendor's
	}
	s.log.Log(ctx, level, "vendor attempt failed",
		slog.String("endpoint_id", id),
		slog.Int("attempt", attempt),
		slog.String("failure", ae.kind.String()),
		slog.Int("http_status", ae.httpStatus),
		slog.String("error", ae.Error()),
	)
	return ae
}

func (s *Server) generateOnce(ctx context.Context, ep *endpoint, attempt int, req *vendorRequest) (*vendorResult, error) {
	ctx, span := s.startSpan(ctx, ep, attempt, req.params)
	actx, cancel := context.WithTimeoutCause(ctx, s.timeout, errVendorTimeout)
	defer cancel()
	res, err := ep.vendor.generate(actx, req)
	err = s.attemptError(ctx, actx, ep, err)
	endSpan(span, res, err)
	return res, err
}

// attemptError turns a context error of the attempt context actx into a timeout failure when
// the attempt ran out of time while the request's ctx is still alive.
func (s *Server) attemptError(ctx, actx context.Context, ep *endpoint, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	if errors.Is(context.Cause(actx), errVendorTimeout) {
		return &attemptError{kind: failTimeout, endpointID: ep.id, detail: "no answer within " + s.timeout.String()}
	}
	return err
}

// StreamGenerate implements dispatchv1.DispatchServiceServer.
func (s *Server) StreamGenerate(req *dispatchv1.StreamGenerateRequest, stream grpc.ServerStreamingServer[dispatchv1.StreamGenerateResponse]) error {
	ctx := stream.Context()
	if err := validate(req.GetOrganizationId(), req.GetEndpointIds(), req.GetMessages(), req.GetParams()); err != nil {
		return err
	}
	vreq := &vendorRequest{messages: req.GetMessages(), params: req.GetParams()}
	var last *attemptError
	for i, id := range req.GetEndpointIds() {
		ep, err := s.endpoints.get(ctx, req.GetOrganizationId(), id)
		sent := false
		if err == nil {
			sent, err = s.streamOnce(ctx, ep, i+1, vreq, stream)
			if err == nil {
				return nil
			}
		}
		if ctx.Err() != nil {
			return contextStatus(ctx)
		}
		var se sendError
		if errors.As(err, &se) {
			return se.err // the caller's stream broke; grpc already knows why
		}
		last = s.attemptFailed(ctx, id, i+1, err)
		if sent {
			// Part of the answer has reached the caller: another endpoint would start over,
			// and a silent end would pass a truncated answer for a complete one.
			return (&attemptError{kind: failInterrupted, endpointID: id}).toStatus()
		}
		if !last.kind.retryable() {
			break
		}
	}
	return last.toStatus()
}

// sendError is a failure to send to the caller, as opposed to a vendor failure.
type sendError struct{ err error }

func (e sendError) Error() string { return "send to caller: " + e.err.Error() }

func (s *Server) streamOnce(ctx context.Context, ep *endpoint, attempt int, req *vendorRequest,
	stream grpc.ServerStreamingServer[dispatchv1.StreamGenerateResponse]) (sent bool, err error) {
	ctx, span := s.startSpan(ctx, ep, attempt, req.params)
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Timeout bounds the wait for each chunk rather than the whole stream, so that a long
	// answer arriving steadily is not cut while a stalled vendor is.
	idle := time.AfterFunc(s.timeout, func() { cancel(errVendorTimeout) })
	defer idle.Stop()

	res, err := ep.vendor.stream(actx, req, func(d delta) error {
		idle.Reset(s.timeout)
		if err := stream.Send(&dispatchv1.StreamGenerateResponse{
			TextDelta: d.text, ToolCalls: d.toolCalls, EndpointId: ep.id, ResponseModel: d.model,
		}); err != nil {
			return sendError{err}
		}
		sent = true
		return nil
	})
	if err == nil {
		idle.Stop()
		err = stream.Send(&dispatchv1.StreamGenerateResponse{
			FinishReason: res.finish, Usage: res.usage, EndpointId: ep.id, ResponseModel: res.model,
		})
		if err != nil {
			err = sendError{err}
		}
	} else if errors.Is(context.Cause(actx), errVendorTimeout) && ctx.Err() == nil {
		err = &attemptError{kind: failTimeout, endpointID: ep.id, detail: "no chunk within " + s.timeout.String()}
	}
	endSpan(span, res, err)
	return sent, err
}

// GenAI semantic convention attributes (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
const (
	attrOperationName = attribute.Key("gen_ai.operation.name")
	attrProviderName  = attribute.Key("gen_ai.provider.name")
	attrRequestModel  = attribute.Key("gen_ai.request.model")
	attrResponseModel = attribute.Key("gen_ai.response.model")
	attrInputTokens   = attribute.Key("gen_ai.usage.input_tokens")
	attrOutputTokens  = attribute.Key("gen_ai.usage.output_tokens")
	attrFinishReasons = attribute.Key("gen_ai.response.finish_reasons")
	attrMaxTokens     = attribute.Key("gen_ai.request.max_tokens")
	attrServerAddress = attribute.Key("server.address")
	attrServerPort    = attribute.Key("server.port")
	attrErrorType     = attribute.Key("error.type")
	attrEndpointID    = attribute.Key("fmgate.endpoint.id")
	attrAttempt       = attribute.Key("fmgate.dispatch.attempt")
)

func (s *Server) startSpan(ctx context.Context, ep *endpoint, attempt int, params *typev1.GenerationParams) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attrOperationName.String("chat"),
		attrProviderName.String(ep.providerName),
		attrRequestModel.String(ep.upstreamModel),
		attrServerAddress.String(ep.serverAddress),
		attrServerPort.Int(ep.serverPort),
		attrEndpointID.String(ep.id),
		attrAttempt.Int(attempt),
	}
	if params != nil && params.MaxOutputTokens != nil {
		attrs = append(attrs, attrMaxTokens.Int64(int64(params.GetMaxOutputTokens())))
	}
	return s.tracer.Start(ctx, "dispatch.vendor_call",
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endSpan records the outcome. Only token counts, models and failure kinds go in: never
// prompts, completions or credentials (attemptError text is redacted).
func endSpan(span trace.Span, res *vendorResult, err error) {
	defer span.End()
	if err != nil {
		var ae *attemptError
		errType := "_OTHER"
		switch {
		case errors.As(err, &ae):
			errType = ae.kind.String()
			if ae.httpStatus != 0 {
				errType = strconv.Itoa(ae.httpStatus)
			}
		case errors.Is(err, context.Canceled):
			errType = "canceled"
		case errors.Is(err, context.DeadlineExceeded):
			errType = "deadline_exceeded"
		}
		span.SetAttributes(attrErrorType.String(errType))
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, errType)
		return
	}
	if res == nil {
		return
	}
	span.SetAttributes(
		attrResponseModel.String(res.model),
		attrFinishReasons.StringSlice([]string{finishName(res.finish)}),
	)
	if res.usage != nil {
		span.SetAttributes(
			attrInputTokens.Int64(res.usage.GetInputTokens()),
			attrOutputTokens.Int64(res.usage.GetOutputTokens()),
		)
	}
}

func finishName(f typev1.FinishReason) string {
	switch f {
	case typev1.FinishReason_FINISH_REASON_STOP:
		return "stop"
	case typev1.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case typev1.FinishReason_FINISH_REASON_TOOL_CALLS:
		return "tool_calls"
	case typev1.FinishReason_FINISH_REASON_CONTENT_FILTER:
		return "content_filter"
	default:
		return "unspecified"
	}
}

// maxEndpoints bounds the endpoints of one request.
const maxEndpoints = 16

// validate checks a request before any endpoint is called and reports every problem at once.
func validate(org string, endpointIDs []string, msgs []*typev1.Message, params *typev1.GenerationParams) error {
	var v []apierr.FieldViolation
	add := func(field, desc string) { v = append(v, apierr.FieldViolation{Field: field, Description: desc}) }
	if org == "" {
		add("organization_id", "is required")
	}
	switch {
	case len(endpointIDs) == 0:
		add("endpoint_ids", "must not be empty")
	case len(endpointIDs) > maxEndpoints:
		add("endpoint_ids", "must not name more than "+strconv.Itoa(maxEndpoints)+" endpoints")
	}
	for i, id := range endpointIDs {
		if id == "" {
			add("endpoint_ids["+strconv.Itoa(i)+"]", "must not be empty")
		}
	}
	if len(msgs) == 0 {
		add("messages", "must not be empty")
	}
	for i, m := range msgs {
		f := "messages[" + strconv.Itoa(i) + "]"
		role := m.GetRole()
		if _, ok := typev1.Role_name[int32(role)]; !ok || role == typev1.Role_ROLE_UNSPECIFIED {
			add(f+".role", "is required")
		}
		if len(m.GetContent()) == 0 && len(m.GetToolCalls()) == 0 {
			add(f+".content", "must not be empty")
		}
		for j, c := range m.GetContent() {
			cf := f + ".content[" + strconv.Itoa(j) + "]"
			switch p := c.GetPart().(type) {
			case *typev1.ContentPart_Text:
			case *typev1.ContentPart_Image:
				if role != typev1.Role_ROLE_USER {
					add(cf+".image", "images are allowed in user messages only")
				}
				if p.Image.GetUrl() == "" {
					add(cf+".image.url", "is required")
				}
			default:
				add(cf, "must be text or an image")
			}
		}
		if len(m.GetToolCalls()) > 0 && role != typev1.Role_ROLE_ASSISTANT {
			add(f+".tool_calls", "are allowed in assistant messages only")
		}
		for j, tc := range m.GetToolCalls() {
			if tc.GetId() == "" || tc.GetName() == "" {
				add(f+".tool_calls["+strconv.Itoa(j)+"]", "id and name are required")
			}
		}
		if role == typev1.Role_ROLE_TOOL && m.GetToolCallId() == "" {
			add(f+".tool_call_id", "is required for tool messages")
		}
	}
	if params != nil {
		if params.MaxOutputTokens != nil && params.GetMaxOutputTokens() < 1 {
			add("params.max_output_tokens", "must be at least 1")
		}
		if t := params.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > 2) {
			add("params.temperature", "must be between 0 and 2")
		}
		if p := params.TopP; p != nil && (math.IsNaN(*p) || *p < 0 || *p > 1) {
			add("params.top_p", "must be between 0 and 1")
		}
		if len(params.GetStop()) > 4 {
			add("params.stop", "must not have more than 4 sequences")
		}
	}
	if len(v) > 0 {
		return apierr.InvalidArgument(v...)
	}
	return nil
}
