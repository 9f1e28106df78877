// Package dispatch sends generations and embeddings to the vendors behind registry endpoints:
// it resolves each endpoint's URL, credential, weight and priority from the registry (never
// from the request), speaks the vendor's protocol, and reports what happened with the status a
// caller can act on. The rules below are built in resilience.go (the attempt loop),
// balance.go (endpoint order) and breaker.go (circuit breakers).
//
// Order. The request names endpoints in the registry route's order: the model's own by
// priority, then each fallback model's. Consecutive endpoints of equal priority form a group;
// within a group the order is drawn at random in proportion to the endpoints' weights (weight 0
// counts as 1), so traffic splits as the weights say; a group is tried only when every endpoint
// of the groups before it has failed.
//
// Retries. An attempt that fails transiently (429, 5xx, a connection error, a timeout, a
// stream cut before its first chunk) is retried on the same endpoint after an exponential
// backoff with full jitter, up to Config.MaxAttemptsPerEndpoint attempts and within the
// request's retry budget (Config.MaxRetries) and deadline. A vendor's Retry-After is honoured
// as the minimum wait; one longer than Config.MaxRetryAfter is not waited for: the next
// endpoint is tried, and with none left the caller gets RESOURCE_EXHAUSTED carrying the
// vendor's delay.
//
// Fallback. When an endpoint's attempts are spent, the next endpoint is tried; so it is when an
// endpoint cannot be used (unknown to the registry, credential missing or rejected with
// 401/403, unsupported provider, circuit open): the request is not at fault and the next
// endpoint may serve it. A vendor 4xx other than 429, 401 and 403 means the request itself is
// at fault, so it is neither retried nor sent elsewhere. A stream is retried and falls back
// only until its first chunk has reached the caller; after that a failure ends it with an
// error, preceded by the usage of what was sent (see StreamGenerate).
//
// Circuit breaking. Each (organisation, endpoint) has a breaker: after Config.BreakerFailures
// consecutive failing attempts it opens, and for Config.BreakerCooldown the endpoint is skipped
// without a call, as a failure that falls back; then one probe is let through, whose outcome
// closes or reopens it.
//
// Timeouts. Config.ConnectTimeout bounds dialling, Config.Timeout a whole non-streaming call,
// Config.FirstTokenTimeout a stream's first chunk and Config.StreamIdleTimeout each later one.
// Each ends the attempt as a timeout, which is retried and falls back like a 5xx. A caller that
// goes away cancels the vendor request at once.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Defaults of Config.
const (
	DefaultEndpointCacheTTL       = 5 * time.Second
	DefaultTimeout                = 60 * time.Second
	DefaultConnectTimeout         = 5 * time.Second
	DefaultFirstTokenTimeout      = 30 * time.Second
	DefaultStreamIdleTimeout      = 60 * time.Second
	DefaultMaxAttemptsPerEndpoint = 2
	DefaultMaxRetries             = 3
	DefaultRetryBackoff           = 100 * time.Millisecond
	DefaultMaxRetryAfter          = 2 * time.Second
	DefaultBreakerFailures        = 5
	DefaultBreakerCooldown        = 30 * time.Second
)

// Config holds dispatch's optional knobs; the zero value works.
type Config struct {
	// HTTPClient calls vendors. Default: a client pooling up to 512 idle connections per
	// vendor host (enough for thousands of requests per second), dialling with ConnectTimeout,
	// propagating the W3C trace context to the vendor (traceContextTransport), and refusing
	// redirects (a vendor API does not redirect; following
	// one could carry the request elsewhere).
	HTTPClient *http.Client
	// EndpointCacheTTL is how long a resolved endpoint (URL, credential, weight, priority,
	// vendor client) is reused before the registry is asked again. Default
	// DefaultEndpointCacheTTL.
	EndpointCacheTTL time.Duration
	// Credentials resolves endpoints' credential references. Default EnvFileResolver.
	Credentials CredentialResolver
	// TracerProvider makes the dispatch.vendor_call spans, one per vendor attempt. Default
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider

	// Timeout bounds one non-streaming vendor call (Generate, Embed), start to end. Default
	// DefaultTimeout.
	Timeout time.Duration
	// ConnectTimeout bounds dialling a vendor (TCP connect) with the default HTTPClient.
	// Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// FirstTokenTimeout bounds the wait for a stream's first chunk (text or tool-call piece),
	// from the start of the attempt. Default DefaultFirstTokenTimeout.
	FirstTokenTimeout time.Duration
	// StreamIdleTimeout bounds the wait between a stream's chunks, and from the last chunk to
	// its end. A stream as a whole has no time limit, so that a long answer arriving steadily
	// is not cut while a stalled vendor is. Default DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration

	// MaxAttemptsPerEndpoint bounds the attempts on one endpoint, retries included, before
	// falling back to the next. 1 disables retries. Default DefaultMaxAttemptsPerEndpoint.
	MaxAttemptsPerEndpoint int
	// MaxRetries is a request's retry budget: how many attempts, across all its endpoints,
	// may repeat an attempt on the same endpoint. First attempts on each endpoint (fallbacks)
	// do not count. Negative: no retries. Default DefaultMaxRetries.
	MaxRetries int
	// RetryBackoff is the base of the exponential backoff between attempts on one endpoint:
	// the n-th retry waits a uniform random time in [0, RetryBackoff·2ⁿ⁻¹), at most
	// MaxRetryAfter. Default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// MaxRetryAfter is the longest wait before retrying an endpoint. A vendor asking for a
	// longer Retry-After is not retried: the next endpoint is tried, or, when none is left,
	// the caller gets RESOURCE_EXHAUSTED with the vendor's delay. Default
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration

	// BreakerFailures is the number of consecutive failing attempts (5xx, 429, connection
	// errors, timeouts, interrupted streams, rejected credentials) after which an endpoint's
	// circuit opens. Negative disables circuit breaking. Default DefaultBreakerFailures.
	BreakerFailures int
	// BreakerCooldown is how long an open circuit skips its endpoint before letting one probe
	// through. Default DefaultBreakerCooldown.
	BreakerCooldown time.Duration

	// Rand draws load-balancing choices and backoff jitter. Default math/rand/v2's global
	// source. Tests set a seeded one for determinism; dispatch serialises its use.
	Rand *rand.Rand
}

func (cfg *Config) applyDefaults() {
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = otel.GetTracerProvider()
	}
	if cfg.EndpointCacheTTL <= 0 {
		cfg.EndpointCacheTTL = DefaultEndpointCacheTTL
	}
	if cfg.Credentials == nil {
		cfg.Credentials = EnvFileResolver{}
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.ConnectTimeout, DefaultConnectTimeout)
	setDefault(&cfg.FirstTokenTimeout, DefaultFirstTokenTimeout)
	setDefault(&cfg.StreamIdleTimeout, DefaultStreamIdleTimeout)
	setDefault(&cfg.RetryBackoff, DefaultRetryBackoff)
	setDefault(&cfg.MaxRetryAfter, DefaultMaxRetryAfter)
	setDefault(&cfg.BreakerCooldown, DefaultBreakerCooldown)
	if cfg.MaxAttemptsPerEndpoint <= 0 {
		cfg.MaxAttemptsPerEndpoint = DefaultMaxAttemptsPerEndpoint
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = DefaultBreakerFailures
	}
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// Server implements dispatchv1.DispatchServiceServer.
type Server struct {
	dispatchv1.UnimplementedDispatchServiceServer
	log       *slog.Logger
	tracer    trace.Tracer
	cfg       Config
	endpoints *endpointCache
	breakers  *breakers
	rand      *randSource
	// ownTransport is the transport of the default HTTP client, closed by Close.
	ownTransport *http.Transport
}

// NewServer returns a dispatch server reading endpoints from registry.
func NewServer(registry registryv1.RegistryServiceClient, log *slog.Logger, cfg Config) *Server {
	cfg.applyDefaults()
	s := &Server{
		log:      log,
		tracer:   cfg.TracerProvider.Tracer("fmgate/dispatch"),
		breakers: newBreakers(cfg.BreakerFailures, cfg.BreakerCooldown, maxCachedEndpoints, log),
		rand:     &randSource{r: cfg.Rand},
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient, s.ownTransport = newHTTPClient(cfg.ConnectTimeout)
	}
	s.cfg = cfg
	s.endpoints = &endpointCache{
		registry: registry,
		creds:    cfg.Credentials,
		client:   cfg.HTTPClient,
		build:    newVendor,
		ttl:      cfg.EndpointCacheTTL,
		max:      maxCachedEndpoints,
		entries:  make(map[endpointKey]cacheEntry),
	}
	return s
}

func newHTTPClient(connectTimeout time.Duration) (*http.Client, *http.Transport) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext
	tr.MaxIdleConns = 2048
	tr.MaxIdleConnsPerHost = 512
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{
		Transport: traceContextTransport{next: tr},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}, tr
}

// traceContextTransport injects the W3C trace context (otel.GetTextMapPropagator) into each
// outgoing request, so that the vendor joins the caller's trace under the
// dispatch.vendor_call span. It makes no span of its own: an HTTP client span (otelhttp)
// doubled the spans per vendor attempt and cost about as much as the vendor_call span, which
// already carries the server address, port and HTTP status of a failure.
type traceContextTransport struct{ next http.RoundTripper }

func (t traceContextTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	prop := otel.GetTextMapPropagator()
	if len(prop.Fields()) == 0 {
		return t.next.RoundTrip(r)
	}
	// A RoundTripper must not modify its request: send a copy with its own header.
	r2 := *r
	r2.Header = r.Header.Clone()
	if r2.Header == nil {
		r2.Header = make(http.Header)
	}
	prop.Inject(r.Context(), propagation.HeaderCarrier(r2.Header))
	return t.next.RoundTrip(&r2)
}

// Register adds the service to r. All-in-one and mesh make the same call.
func (s *Server) Register(r grpc.ServiceRegistrar) { dispatchv1.RegisterDispatchServiceServer(r, s) }

// Close releases the idle vendor connections of the default HTTP client. A client passed in
// Config belongs to the caller.
func (s *Server) Close() {
	if s.ownTransport != nil {
		s.ownTransport.CloseIdleConnections()
	}
}

// Generate implements dispatchv1.DispatchServiceServer.
func (s *Server) Generate(ctx context.Context, req *dispatchv1.GenerateRequest) (*dispatchv1.GenerateResponse, error) {
	if err := validate(req.GetOrganizationId(), req.GetEndpointIds(), req.GetEndpointTiers(), req.GetMessages(), req.GetParams()); err != nil {
		return nil, err
	}
	vreq := &vendorRequest{messages: req.GetMessages(), params: req.GetParams()}
	var out *dispatchv1.GenerateResponse
	err := s.try(ctx, req.GetOrganizationId(), req.GetEndpointIds(), req.GetEndpointTiers(), func(ctx context.Context, ep *endpoint, attempt int) (bool, error) {
		res, err := s.generateOnce(ctx, ep, attempt, vreq)
		if err != nil {
			return false, err
		}
		out = &dispatchv1.GenerateResponse{
			Message:       res.message,
			FinishReason:  res.finish,
			Usage:         res.usage,
			EndpointId:    ep.id,
			ResponseModel: res.model,
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) generateOnce(ctx context.Context, ep *endpoint, attempt int, req *vendorRequest) (*vendorResult, error) {
	ctx, span := s.startSpan(ctx, opChat, ep, attempt, req.params)
	actx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, errVendorTimeout)
	defer cancel()
	res, err := ep.vendor.generate(actx, req)
	err = s.attemptError(ctx, actx, ep, err)
	if err != nil {
		endSpan(span, err, "", nil, "")
		return nil, err
	}
	endSpan(span, nil, res.model, res.usage, finishName(res.finish))
	return res, nil
}

// Embed implements dispatchv1.DispatchServiceServer.
func (s *Server) Embed(ctx context.Context, req *dispatchv1.EmbedRequest) (*dispatchv1.EmbedResponse, error) {
	if err := validateEmbed(req); err != nil {
		return nil, err
	}
	ereq := &embedRequest{inputs: req.GetInputs(), dimensions: req.GetDimensions(), endUserID: req.GetEndUserId()}
	var out *dispatchv1.EmbedResponse
	err := s.try(ctx, req.GetOrganizationId(), req.GetEndpointIds(), req.GetEndpointTiers(), func(ctx context.Context, ep *endpoint, attempt int) (bool, error) {
		res, err := s.embedOnce(ctx, ep, attempt, ereq)
		if err != nil {
			return false, err
		}
		out = &dispatchv1.EmbedResponse{
			Embeddings: res.embeddings, Usage: res.usage, EndpointId: ep.id, ResponseModel: res.model,
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Server) embedOnce(ctx context.Context, ep *endpoint, attempt int, req *embedRequest) (*embedResult, error) {
	ctx, span := s.startSpan(ctx, opEmbeddings, ep, attempt, nil)
	actx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, errVendorTimeout)
	defer cancel()
	res, err := ep.vendor.embed(actx, req)
	err = s.attemptError(ctx, actx, ep, err)
	if err == nil && len(res.embeddings) != len(req.inputs) {
		err = &attemptError{kind: failUnavailable, endpointID: ep.id,
			detail: "vendor returned " + strconv.Itoa(len(res.embeddings)) + " vectors for " + strconv.Itoa(len(req.inputs)) + " inputs"}
	}
	if err != nil {
		endSpan(span, err, "", nil, "")
		return nil, err
	}
	endSpan(span, nil, res.model, res.usage, "")
	return res, nil
}

// attemptError turns a context error of the attempt context actx into a timeout failure when
// the attempt ran out of time while the request's ctx is still alive.
func (s *Server) attemptError(ctx, actx context.Context, ep *endpoint, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	if errors.Is(context.Cause(actx), errVendorTimeout) {
		return &attemptError{kind: failTimeout, endpointID: ep.id, detail: "no answer within " + s.cfg.Timeout.String()}
	}
	return err
}

// StreamGenerate implements dispatchv1.DispatchServiceServer.
//
// The caller receives chunks (text_delta, tool_calls) and then either a last message carrying
// finish_reason and usage, followed by the end of the stream, or an error status. A failure
// after the first chunk is never retried (another endpoint would start the answer over) and
// ends the stream with UNAVAILABLE (reason UPSTREAM_STREAM_INTERRUPTED). Since gRPC carries no
// message after a status, the usage of the part already sent travels just before that error,
// in a last message whose finish_reason is unset: output_tokens (and total_tokens) are an
// estimate from the text and tool-call pieces sent, at one token per four characters (OpenAI's
// rule of thumb; vendors count no usage for a broken stream), and input_tokens is 0, unknown.
// A caller recording usage (quota, audit) takes that message as "usage so far".
func (s *Server) StreamGenerate(req *dispatchv1.StreamGenerateRequest, stream grpc.ServerStreamingServer[dispatchv1.StreamGenerateResponse]) error {
	if err := validate(req.GetOrganizationId(), req.GetEndpointIds(), req.GetEndpointTiers(), req.GetMessages(), req.GetParams()); err != nil {
		return err
	}
	vreq := &vendorRequest{messages: req.GetMessages(), params: req.GetParams()}
	return s.try(stream.Context(), req.GetOrganizationId(), req.GetEndpointIds(), req.GetEndpointTiers(), func(ctx context.Context, ep *endpoint, attempt int) (bool, error) {
		return s.streamOnce(ctx, ep, attempt, vreq, stream)
	})
}

// sendError is a failure to send to the caller, as opposed to a vendor failure.
type sendError struct{ err error }

func (e sendError) Error() string { return "send to caller: " + e.err.Error() }

func (s *Server) streamOnce(ctx context.Context, ep *endpoint, attempt int, req *vendorRequest,
	stream grpc.ServerStreamingServer[dispatchv1.StreamGenerateResponse]) (sent bool, err error) {
	ctx, span := s.startSpan(ctx, opChat, ep, attempt, req.params)
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// One timer bounds the wait for the first chunk, then (reset by each chunk) the wait for
	// the next; gotFirst tells which wait ran out.
	var gotFirst atomic.Bool
	timer := time.AfterFunc(s.cfg.FirstTokenTimeout, func() {
		if gotFirst.Load() {
			cancel(errStreamIdleTimeout)
		} else {
			cancel(errFirstChunkTimeout)
		}
	})
	defer timer.Stop()

	var sentChars int // characters of text and tool-call pieces sent, for usage of a broken stream
	var model string
	// Pieces go to the caller through a chunkSender, which merges those that arrive while it
	// is sending. A piece it accepted is as good as sent: it reaches the caller before
	// anything this attempt sends after it, so the attempt is not retried once one was.
	var out *chunkSender
	res, err := ep.vendor.stream(actx, req, func(d delta) error {
		gotFirst.Store(true)
		timer.Reset(s.cfg.StreamIdleTimeout)
		if out == nil {
			out = newChunkSender(stream, ep.id)
		}
		if err := out.add(d); err != nil {
			return err
		}
		sent, model = true, d.model
		sentChars += utf8.RuneCountInString(d.text)
		for _, tc := range d.toolCalls {
			sentChars += utf8.RuneCountInString(tc.GetName()) + utf8.RuneCountInString(tc.GetArgumentsDelta())
		}
		return nil
	})
	if out != nil {
		if ferr := out.flush(); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err == nil {
		timer.Stop()
		if err = stream.Send(&dispatchv1.StreamGenerateResponse{
			FinishReason: res.finish, Usage: res.usage, EndpointId: ep.id, ResponseModel: res.model,
		}); err != nil {
			err = sendError{err}
		}
		if err == nil {
			endSpan(span, nil, res.model, res.usage, finishName(res.finish))
			return sent, nil
		}
	}
	if ctx.Err() == nil {
		switch cause := context.Cause(actx); {
		case errors.Is(cause, errFirstChunkTimeout):
			err = &attemptError{kind: failTimeout, endpointID: ep.id, detail: "no first chunk within " + s.cfg.FirstTokenTimeout.String()}
		case errors.Is(cause, errStreamIdleTimeout):
			err = &attemptError{kind: failTimeout, endpointID: ep.id, detail: "no chunk within " + s.cfg.StreamIdleTimeout.String()}
		}
	}
	var se sendError
	if sent && ctx.Err() == nil && !errors.As(err, &se) {
		// Best effort: if this send fails, the caller is gone and learns nothing either way.
		out := estimateTokens(sentChars)
		_ = stream.Send(&dispatchv1.StreamGenerateResponse{
			Usage: &typev1.Usage{OutputTokens: out, TotalTokens: out}, EndpointId: ep.id, ResponseModel: model,
		})
	}
	endSpan(span, err, "", nil, "")
	return sent, err
}

// estimateTokens estimates the tokens of chars characters of model output: one token per four
// characters, rounded up.
func estimateTokens(chars int) int64 { return int64(chars+3) / 4 }

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
	attrHTTPStatus    = attribute.Key("http.response.status_code")
	attrEndpointID    = attribute.Key("fmgate.endpoint.id")
	attrAttempt       = attribute.Key("fmgate.dispatch.attempt")
)

// gen_ai.operation.name values.
const (
	opChat       = "chat"
	opEmbeddings = "embeddings"
)

func (s *Server) startSpan(ctx context.Context, op string, ep *endpoint, attempt int, params *typev1.GenerationParams) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attrOperationName.String(op),
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

// endSpan records the outcome: the failure, or the response model, usage and finish reason
// (empty for embeddings). Only token counts, models and failure kinds go in: never prompts,
// completions or credentials (attemptError text is redacted).
func endSpan(span trace.Span, err error, model string, usage *typev1.Usage, finish string) {
	defer span.End()
	if err != nil {
		var ae *attemptError
		errType := "_OTHER"
		switch {
		case errors.As(err, &ae):
			errType = ae.kind.String()
			if ae.httpStatus != 0 {
				errType = strconv.Itoa(ae.httpStatus)
				span.SetAttributes(attrHTTPStatus.Int(ae.httpStatus))
			}
		case errors.Is(err, context.Canceled):
			errType = "canceled"
		case errors.Is(err, context.DeadlineExceeded):
			errType = "deadline_exceeded"
		case errors.As(err, new(sendError)):
			errType = "caller_gone"
		}
		span.SetAttributes(attrErrorType.String(errType))
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, errType)
		return
	}
	span.SetAttributes(attrResponseModel.String(model))
	if finish != "" {
		span.SetAttributes(attrFinishReasons.StringSlice([]string{finish}))
	}
	if usage != nil {
		span.SetAttributes(
			attrInputTokens.Int64(usage.GetInputTokens()),
			attrOutputTokens.Int64(usage.GetOutputTokens()),
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

// maxEmbedInputs bounds the inputs of one embedding request (OpenAI's limit).
const maxEmbedInputs = 2048

// violations collects a request's problems, to report them all at once.
type violations []apierr.FieldViolation

func (v *violations) add(field, desc string) {
	*v = append(*v, apierr.FieldViolation{Field: field, Description: desc})
}

func (v violations) err() error {
	if len(v) > 0 {
		return apierr.InvalidArgument(v...)
	}
	return nil
}

// target checks the fields naming where a request goes.
func (v *violations) target(org string, endpointIDs []string, tiers []int32) {
	if len(tiers) > 0 && len(tiers) != len(endpointIDs) {
		v.add("endpoint_tiers", "must have one tier per endpoint id, or none")
	}
	for i := 1; i < len(tiers); i++ {
		if tiers[i] < tiers[i-1] {
			v.add("endpoint_tiers", "must not decrease")
			break
		}
	}
	if org == "" {
		v.add("organization_id", "is required")
	}
	switch {
	case len(endpointIDs) == 0:
		v.add("endpoint_ids", "must not be empty")
	case len(endpointIDs) > maxEndpoints:
		v.add("endpoint_ids", "must not name more than "+strconv.Itoa(maxEndpoints)+" endpoints")
	}
	for i, id := range endpointIDs {
		if id == "" {
			v.add("endpoint_ids["+strconv.Itoa(i)+"]", "must not be empty")
		}
	}
}

// validateEmbed checks an embedding request before any endpoint is called.
func validateEmbed(req *dispatchv1.EmbedRequest) error {
	var v violations
	v.target(req.GetOrganizationId(), req.GetEndpointIds(), req.GetEndpointTiers())
	switch n := len(req.GetInputs()); {
	case n == 0:
		v.add("inputs", "must not be empty")
	case n > maxEmbedInputs:
		v.add("inputs", "must not have more than "+strconv.Itoa(maxEmbedInputs)+" items")
	}
	for i, in := range req.GetInputs() {
		if in == "" {
			v.add("inputs["+strconv.Itoa(i)+"]", "must not be empty")
		}
	}
	if req.Dimensions != nil && req.GetDimensions() < 1 {
		v.add("dimensions", "must be at least 1")
	}
	return v.err()
}

// validate checks a generation request before any endpoint is called and reports every
// problem at once.
func validate(org string, endpointIDs []string, tiers []int32, msgs []*typev1.Message, params *typev1.GenerationParams) error {
	var v violations
	add := v.add
	v.target(org, endpointIDs, tiers)
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
	return v.err()
}
