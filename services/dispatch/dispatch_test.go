package dispatch_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	org       = "org-1"
	secret    = "sk-super-secret-value-1234567890"
	secretEnv = "FMGATE_DISPATCH_TEST_KEY"
)

// fakeRegistry serves GetEndpoint from a map and counts the calls.
type fakeRegistry struct {
	// Embedded so that the fake keeps compiling as the registry contract grows; only the
	// methods dispatch calls are implemented.
	registryv1.RegistryServiceClient
	mu        sync.Mutex
	endpoints map[string]*registryv1.Endpoint // by org + "/" + id
	calls     atomic.Int64
}

func newFakeRegistry(eps ...*registryv1.Endpoint) *fakeRegistry {
	r := &fakeRegistry{endpoints: map[string]*registryv1.Endpoint{}}
	for _, ep := range eps {
		r.endpoints[ep.GetOrganizationId()+"/"+ep.GetId()] = ep
	}
	return r
}

func (r *fakeRegistry) ResolveRoute(context.Context, *registryv1.ResolveRouteRequest, ...grpc.CallOption) (*registryv1.ResolveRouteResponse, error) {
	return nil, status.Error(codes.Unimplemented, "not in this fake")
}

func (r *fakeRegistry) ListModels(context.Context, *registryv1.ListModelsRequest, ...grpc.CallOption) (*registryv1.ListModelsResponse, error) {
	return nil, status.Error(codes.Unimplemented, "not in this fake")
}

func (r *fakeRegistry) GetEndpoint(_ context.Context, req *registryv1.GetEndpointRequest, _ ...grpc.CallOption) (*registryv1.GetEndpointResponse, error) {
	r.calls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	ep, ok := r.endpoints[req.GetOrganizationId()+"/"+req.GetId()]
	if !ok {
		return nil, status.Error(codes.NotFound, "endpoint not found")
	}
	return &registryv1.GetEndpointResponse{Endpoint: proto.Clone(ep).(*registryv1.Endpoint)}, nil
}

// startSim serves a simulator on loopback that requires secret, and returns its /v1 URL.
func startSim(t testing.TB, cfg simulator.Config) (string, *simulator.Simulator) {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = secret
	}
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return srv.URL + "/v1", sim
}

// priorities gives each endpoint its own priority, so that each is a group of its own and a
// request tries its endpoints in the order it lists them (balancing within a priority group is
// tested in resilience_balance_test.go).
var priorities atomic.Int32

func endpoint(id, baseURL, model string) *registryv1.Endpoint {
	return &registryv1.Endpoint{
		OrganizationId: org, Id: id, Provider: registryv1.ProviderKind_PROVIDER_KIND_OPENAI,
		BaseUrl: baseURL, UpstreamModel: model, CredentialRef: "env:" + secretEnv,
		Priority: priorities.Add(1),
	}
}

type harness struct {
	client dispatchv1.DispatchServiceClient
	logs   *grpctest.LogBuffer
	spans  *tracetest.SpanRecorder
}

// start runs dispatch on a real grpc.Server over bufconn and returns its generated client.
func start(t *testing.T, reg registryv1.RegistryServiceClient, cfg dispatch.Config) *harness {
	t.Helper()
	t.Setenv(secretEnv, secret)
	log, logs := grpctest.Logger(t)
	h := &harness{logs: logs, spans: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg.TracerProvider = tp
	srv := dispatch.NewServer(reg, log, cfg)
	t.Cleanup(srv.Close) // cleanups run last-first: this one after the gRPC server stops
	conn := grpctest.Serve(t, srv.Register)
	h.client = dispatchv1.NewDispatchServiceClient(conn)
	return h
}

func userMessages(text string) []*typev1.Message {
	return []*typev1.Message{
		{Role: typev1.Role_ROLE_SYSTEM, Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: "Be brief."}}}},
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: text}}}},
	}
}

func generateRequest(text string, ids ...string) *dispatchv1.GenerateRequest {
	return &dispatchv1.GenerateRequest{OrganizationId: org, EndpointIds: ids, Messages: userMessages(text)}
}

func streamAll(t *testing.T, c dispatchv1.DispatchServiceClient, req *dispatchv1.StreamGenerateRequest) ([]*dispatchv1.StreamGenerateResponse, error) {
	t.Helper()
	st, err := c.StreamGenerate(t.Context(), req)
	require.NoError(t, err)
	var got []*dispatchv1.StreamGenerateResponse
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, m)
	}
}

func TestGenerate(t *testing.T) {
	// The simulator behind a handler that records the trace context reaching the vendor.
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })
	sim := simulator.New(simulator.Config{APIKey: secret})
	var traceparents []string
	var mu sync.Mutex
	simSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		traceparents = append(traceparents, r.Header.Get("traceparent"))
		mu.Unlock()
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(simSrv.Close)
	url := simSrv.URL + "/v1"
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})

	max := int32(100)
	req := generateRequest("Hello there", "ep-1")
	req.Params = &typev1.GenerationParams{MaxOutputTokens: &max, Temperature: proto.Float64(0.2), Stop: []string{"END"}}
	res, err := h.client.Generate(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, "ep-1", res.GetEndpointId())
	assert.Equal(t, "gpt-sim", res.GetResponseModel())
	assert.Equal(t, typev1.Role_ROLE_ASSISTANT, res.GetMessage().GetRole())
	require.Len(t, res.GetMessage().GetContent(), 1)
	assert.Equal(t, "Simulated answer from gpt-sim. You said: Hello there", res.GetMessage().GetContent()[0].GetText())
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.GetFinishReason())
	assert.Equal(t, int64(4), res.GetUsage().GetInputTokens())
	assert.Equal(t, int64(8), res.GetUsage().GetOutputTokens())
	assert.Equal(t, int64(12), res.GetUsage().GetTotalTokens())
	assert.Equal(t, int64(1), sim.Stats().Requests)

	var call sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == "dispatch.vendor_call" {
			call = s
		}
	}
	require.NotNil(t, call, "a dispatch.vendor_call span")
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range call.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	assert.Equal(t, "chat", attrs["gen_ai.operation.name"].AsString())
	assert.Equal(t, "openai", attrs["gen_ai.provider.name"].AsString())
	assert.Equal(t, "gpt-sim", attrs["gen_ai.request.model"].AsString())
	assert.Equal(t, "gpt-sim", attrs["gen_ai.response.model"].AsString())
	assert.Equal(t, int64(4), attrs["gen_ai.usage.input_tokens"].AsInt64())
	assert.Equal(t, int64(8), attrs["gen_ai.usage.output_tokens"].AsInt64())
	assert.Equal(t, "127.0.0.1", attrs["server.address"].AsString())
	assert.Equal(t, "ep-1", attrs["fmgate.endpoint.id"].AsString())
	for _, s := range h.spans.Ended() {
		assert.NotEqual(t, call.SpanContext().SpanID(), s.Parent().SpanID(),
			"one span per vendor attempt: none under vendor_call (%s)", s.Name())
	}
	// The vendor joins the trace as a child of the vendor_call span.
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, traceparents, 1)
	sc := call.SpanContext()
	assert.Equal(t, "00-"+sc.TraceID().String()+"-"+sc.SpanID().String()+"-01", traceparents[0])
}

func TestGenerateMaxTokens(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	compat := endpoint("ep-compat", url, "local")
	compat.Provider = registryv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim"), compat), dispatch.Config{})
	for _, id := range []string{"ep-1", "ep-compat"} {
		req := generateRequest("Hello there", id)
		req.Params = &typev1.GenerationParams{MaxOutputTokens: proto.Int32(2)}
		res, err := h.client.Generate(t.Context(), req)
		require.NoError(t, err)
		assert.Equal(t, "Simulated answer", res.GetMessage().GetContent()[0].GetText())
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_LENGTH, res.GetFinishReason())
	}
}

func TestStreamGenerate(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"ep-1"}, Messages: userMessages("stream this"),
	})
	require.NoError(t, err)
	// The simulator sends the answer's chunks at once, so dispatch may merge them (chunkSender):
	// at least one text message, then the last.
	require.GreaterOrEqual(t, len(got), 2)
	var text strings.Builder
	for i, m := range got {
		text.WriteString(m.GetTextDelta())
		assert.Equal(t, "ep-1", m.GetEndpointId())
		assert.Equal(t, "gpt-sim", m.GetResponseModel())
		if i < len(got)-1 {
			assert.Nil(t, m.GetUsage(), "usage on the last message only")
			assert.Equal(t, typev1.FinishReason_FINISH_REASON_UNSPECIFIED, m.GetFinishReason())
		}
	}
	assert.Equal(t, "Simulated answer from gpt-sim. You said: stream this", text.String())
	last := got[len(got)-1]
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, last.GetFinishReason())
	assert.Equal(t, int64(4), last.GetUsage().GetInputTokens())
	assert.Equal(t, int64(8), last.GetUsage().GetOutputTokens())
	assert.Equal(t, int64(12), last.GetUsage().GetTotalTokens())
}

func TestFallback(t *testing.T) {
	for name, fault := range map[string]simulator.Fault{
		"500": simulator.FailWith(http.StatusInternalServerError, 0),
		"503": simulator.FailWith(http.StatusServiceUnavailable, 0),
		"429": simulator.FailWith(http.StatusTooManyRequests, time.Second),
		// A dropped connection for Generate; a stream cut before its first chunk.
		"cut": simulator.CutAfter(0),
	} {
		t.Run(name, func(t *testing.T) {
			url, sim := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"bad": fault}})
			reg := newFakeRegistry(endpoint("ep-bad", url, "bad"), endpoint("ep-good", url, "good"))
			// One attempt per endpoint: fallback alone (retries: resilience_retry_test.go).
			h := start(t, reg, dispatch.Config{MaxAttemptsPerEndpoint: 1})

			res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-bad", "ep-good"))
			require.NoError(t, err)
			assert.Equal(t, "ep-good", res.GetEndpointId())
			assert.Equal(t, "Simulated answer from good. You said: hi", res.GetMessage().GetContent()[0].GetText())

			got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
				OrganizationId: org, EndpointIds: []string{"ep-bad", "ep-good"}, Messages: userMessages("hi"),
			})
			require.NoError(t, err)
			require.NotEmpty(t, got)
			assert.Equal(t, "ep-good", got[len(got)-1].GetEndpointId())
			assert.Equal(t, int64(4), sim.Stats().Requests)
		})
	}
}

func TestFailures(t *testing.T) {
	url, sim := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"limited": simulator.FailWith(http.StatusTooManyRequests, 3*time.Second),
		"broken":  simulator.FailWith(http.StatusInternalServerError, 0),
		"refuses": simulator.FailWith(http.StatusBadRequest, 0),
		"stuck":   simulator.Hang(),
	}})
	wrongKey := endpoint("ep-wrong-key", url, "demo")
	wrongKey.CredentialRef = "env:FMGATE_DISPATCH_TEST_OTHER_KEY"
	t.Setenv("FMGATE_DISPATCH_TEST_OTHER_KEY", "sk-not-the-right-one")
	badRef := endpoint("ep-bad-ref", url, "demo")
	badRef.CredentialRef = "vault:somewhere"
	reg := newFakeRegistry(
		endpoint("ep-limited", url, "limited"), endpoint("ep-broken", url, "broken"),
		endpoint("ep-refuses", url, "refuses"), endpoint("ep-stuck", url, "stuck"),
		endpoint("ep-good", url, "good"), wrongKey, badRef,
	)
	h := start(t, reg, dispatch.Config{Timeout: 100 * time.Millisecond, MaxAttemptsPerEndpoint: 1})

	for _, tc := range []struct {
		name     string
		ids      []string
		code     codes.Code
		msg      string
		requests int64 // vendor requests this case makes
	}{
		{"rate limited", []string{"ep-limited"}, codes.ResourceExhausted, "vendor rate limit reached", 1},
		{"all rate limited", []string{"ep-broken", "ep-limited"}, codes.ResourceExhausted, "", 2},
		{"server error", []string{"ep-broken"}, codes.Unavailable, "vendor unavailable: HTTP 500", 1},
		{"bad request stops", []string{"ep-refuses", "ep-good"}, codes.InvalidArgument, "Bad Request (simulated)", 1},
		{"credential rejected", []string{"ep-wrong-key"}, codes.Unavailable, "endpoint credential rejected by vendor", 0},
		{"bad credential ref", []string{"ep-bad-ref"}, codes.FailedPrecondition, "endpoint ep-bad-ref is misconfigured", 0},
		{"unknown endpoint", []string{"ep-nope"}, codes.FailedPrecondition, "endpoint ep-nope not found", 0},
		{"timeout", []string{"ep-stuck"}, codes.DeadlineExceeded, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sim.Stats().Requests
			_, err := h.client.Generate(t.Context(), generateRequest("hi", tc.ids...))
			st := status.Convert(err)
			require.Equal(t, tc.code, st.Code(), st.Message())
			assert.Contains(t, st.Message(), tc.msg)
			assert.Equal(t, tc.requests, sim.Stats().Requests-before, "vendor requests")
			if tc.code == codes.ResourceExhausted {
				d, ok := apierr.RetryAfter(err)
				require.True(t, ok, "RetryInfo")
				assert.Equal(t, 3*time.Second, d)
			}
		})
	}
}

func TestStreamInterrupted(t *testing.T) {
	url, _ := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(3)}})
	reg := newFakeRegistry(endpoint("ep-flaky", url, "flaky"), endpoint("ep-good", url, "good"))
	h := start(t, reg, dispatch.Config{})
	got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"ep-flaky", "ep-good"}, Messages: userMessages("tell me more"),
	})
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "no fallback after the first chunk, and no silent end")
	assert.Equal(t, "upstream stream interrupted", st.Message())
	// Three chunks (merged or not: chunkSender), then the usage so far.
	require.GreaterOrEqual(t, len(got), 2)
	var text strings.Builder
	for _, m := range got[:len(got)-1] {
		text.WriteString(m.GetTextDelta())
		assert.Equal(t, "ep-flaky", m.GetEndpointId())
		assert.Nil(t, m.GetUsage())
	}
	assert.Equal(t, "Simulated answer from ", text.String())
	assert.NotNil(t, got[len(got)-1].GetUsage())
}

// TestStreamChunksAtVendorPace checks that chunks arriving at a vendor's pace go out one by
// one as they come: merging (chunkSender) only joins what arrived during a send.
func TestStreamChunksAtVendorPace(t *testing.T) {
	url, _ := startSim(t, simulator.Config{ChunkDelay: 30 * time.Millisecond})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"ep-1"}, Messages: userMessages("pace"),
	})
	require.NoError(t, err)
	var pieces []string
	for _, m := range got[:len(got)-1] {
		pieces = append(pieces, m.GetTextDelta())
	}
	assert.Equal(t, []string{"Simulated ", "answer ", "from ", "gpt-sim. ", "You ", "said: ", "pace"}, pieces)
}

func TestInvalidArgument(t *testing.T) {
	h := start(t, newFakeRegistry(), dispatch.Config{})
	text := func(s string) *typev1.ContentPart {
		return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
	}
	for _, tc := range []struct {
		name  string
		req   *dispatchv1.GenerateRequest
		field string
	}{
		{"no organization", &dispatchv1.GenerateRequest{EndpointIds: []string{"e"}, Messages: userMessages("x")}, "organization_id"},
		{"no endpoints", &dispatchv1.GenerateRequest{OrganizationId: org, Messages: userMessages("x")}, "endpoint_ids"},
		{"no messages", &dispatchv1.GenerateRequest{OrganizationId: org, EndpointIds: []string{"e"}}, "messages"},
		{"no role", &dispatchv1.GenerateRequest{OrganizationId: org, EndpointIds: []string{"e"},
			Messages: []*typev1.Message{{Content: []*typev1.ContentPart{text("x")}}}}, "messages[0].role"},
		{"tool without id", &dispatchv1.GenerateRequest{OrganizationId: org, EndpointIds: []string{"e"},
			Messages: []*typev1.Message{{Role: typev1.Role_ROLE_TOOL, Content: []*typev1.ContentPart{text("x")}}}}, "messages[0].tool_call_id"},
		{"bad temperature", &dispatchv1.GenerateRequest{OrganizationId: org, EndpointIds: []string{"e"}, Messages: userMessages("x"),
			Params: &typev1.GenerationParams{Temperature: proto.Float64(3)}}, "params.temperature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, call := range []func() error{
				func() error { _, err := h.client.Generate(t.Context(), tc.req); return err },
				func() error {
					_, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
						OrganizationId: tc.req.GetOrganizationId(), EndpointIds: tc.req.GetEndpointIds(),
						Messages: tc.req.GetMessages(), Params: tc.req.GetParams(),
					})
					return err
				},
			} {
				st := status.Convert(call())
				require.Equal(t, codes.InvalidArgument, st.Code())
				require.NotEmpty(t, st.Details())
				br, ok := st.Details()[0].(*errdetails.BadRequest)
				require.True(t, ok)
				assert.Equal(t, tc.field, br.GetFieldViolations()[0].GetField())
			}
		})
	}
}

func TestEndpointCache(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	reg := newFakeRegistry(endpoint("ep-1", url, "gpt-sim"))
	h := start(t, reg, dispatch.Config{})
	for range 2 {
		_, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-1"))
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), reg.calls.Load())

	// Another organisation's endpoint of the same id is another key.
	_, err := h.client.Generate(t.Context(), &dispatchv1.GenerateRequest{
		OrganizationId: "org-2", EndpointIds: []string{"ep-1"}, Messages: userMessages("hi"),
	})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Equal(t, int64(2), reg.calls.Load())
}

func TestEndpointCacheExpires(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	reg := newFakeRegistry(endpoint("ep-1", url, "gpt-sim"))
	h := start(t, reg, dispatch.Config{EndpointCacheTTL: time.Millisecond})
	require.Eventually(t, func() bool {
		_, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-1"))
		require.NoError(t, err)
		return reg.calls.Load() >= 2
	}, 5*time.Second, time.Millisecond)
}

func TestCredentialNeverLeaks(t *testing.T) {
	url, _ := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"broken":  simulator.FailWith(http.StatusInternalServerError, 0),
		"refuses": simulator.FailWith(http.StatusBadRequest, 0),
		"flaky":   simulator.CutAfter(1),
	}})
	// Another simulator with another key: our secret is sent to it, and rejected.
	otherURL, _ := startSim(t, simulator.Config{APIKey: "sk-other"})
	reg := newFakeRegistry(
		endpoint("ep-good", url, "good"), endpoint("ep-broken", url, "broken"),
		endpoint("ep-refuses", url, "refuses"), endpoint("ep-flaky", url, "flaky"),
		endpoint("ep-rejects", otherURL, "demo"),
	)
	h := start(t, reg, dispatch.Config{RetryBackoff: time.Millisecond})

	var errs []error
	for _, ids := range [][]string{
		{"ep-good"}, {"ep-broken", "ep-good"}, {"ep-rejects"}, {"ep-refuses"}, {"ep-broken"},
	} {
		_, err := h.client.Generate(t.Context(), generateRequest("hi", ids...))
		errs = append(errs, err)
	}
	_, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"ep-flaky"}, Messages: userMessages("hi"),
	})
	errs = append(errs, err)

	logs := h.logs.String()
	require.Contains(t, logs, "vendor attempt failed", "failures were logged")
	assert.NotContains(t, logs, secret)
	for _, err := range errs {
		if err != nil {
			assert.NotContains(t, status.Convert(err).Message(), secret)
		}
	}
	for _, s := range h.spans.Ended() {
		for _, kv := range s.Attributes() {
			assert.NotContains(t, kv.Value.Emit(), secret, "span %s attribute %s", s.Name(), kv.Key)
		}
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				assert.NotContains(t, kv.Value.Emit(), secret, "span %s event %s", s.Name(), e.Name)
			}
		}
		assert.NotContains(t, s.Status().Description, secret)
	}
}

func TestCancelPropagatesToVendor(t *testing.T) {
	url, sim := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}})
	h := start(t, newFakeRegistry(endpoint("ep-stuck", url, "stuck")), dispatch.Config{})

	for name, call := range map[string]func(ctx context.Context) error{
		"generate": func(ctx context.Context) error {
			_, err := h.client.Generate(ctx, generateRequest("hi", "ep-stuck"))
			return err
		},
		"stream": func(ctx context.Context) error {
			st, err := h.client.StreamGenerate(ctx, &dispatchv1.StreamGenerateRequest{
				OrganizationId: org, EndpointIds: []string{"ep-stuck"}, Messages: userMessages("hi"),
			})
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			before := sim.Stats()
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- call(ctx) }()
			require.Eventually(t, func() bool { return sim.Stats().Requests == before.Requests+1 }, 5*time.Second, time.Millisecond,
				"the vendor received the request")
			cancel()
			var err error
			require.Eventually(t, func() bool {
				select {
				case err = <-done:
					return true
				default:
					return false
				}
			}, 2*time.Second, time.Millisecond, "the call returns promptly")
			assert.Equal(t, codes.Canceled, status.Code(err))
			require.Eventually(t, func() bool { return sim.Stats().Canceled == before.Canceled+1 }, 5*time.Second, time.Millisecond,
				"the vendor request was cancelled")
		})
	}
}
