package dispatch

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
)

// orderedRegistry serves every endpoint id it is asked for, each with a priority of its own
// (its position in ids), so that requests try endpoints in the order they list them.
type orderedRegistry struct {
	// The methods dispatch does not call; calling one panics.
	registryv1.RegistryServiceClient
	ids []string
}

func (r orderedRegistry) GetEndpoint(_ context.Context, req *registryv1.GetEndpointRequest, _ ...grpc.CallOption) (*registryv1.GetEndpointResponse, error) {
	for i, id := range r.ids {
		if id == req.GetId() {
			return &registryv1.GetEndpointResponse{Endpoint: &registryv1.Endpoint{
				OrganizationId: req.GetOrganizationId(), Id: id, Provider: registryv1.ProviderKind_PROVIDER_KIND_OPENAI,
				BaseUrl: "http://127.0.0.1:9/v1", UpstreamModel: "model-" + id, Priority: int32(i),
			}}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such endpoint")
}

// fakeEmbedVendor is a vendor whose embed answers with answer; it records what it received.
type fakeEmbedVendor struct {
	answer func(ctx context.Context, req *embedRequest) (*embedResult, error)
	mu     sync.Mutex
	got    []*embedRequest
}

func (v *fakeEmbedVendor) generate(context.Context, *vendorRequest) (*vendorResult, error) {
	return nil, &attemptError{kind: failUnsupported, detail: "not in this fake"}
}

func (v *fakeEmbedVendor) stream(context.Context, *vendorRequest, func(delta) error) (*vendorResult, error) {
	return nil, &attemptError{kind: failUnsupported, detail: "not in this fake"}
}

func (v *fakeEmbedVendor) embed(ctx context.Context, req *embedRequest) (*embedResult, error) {
	v.mu.Lock()
	v.got = append(v.got, req)
	v.mu.Unlock()
	return v.answer(ctx, req)
}

func (v *fakeEmbedVendor) calls() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.got)
}

// fakeVectors answers one two-dimensional vector per input, with one input token per input.
func fakeVectors(_ context.Context, req *embedRequest) (*embedResult, error) {
	res := &embedResult{model: "embedder-1", usage: &typev1.Usage{InputTokens: int64(len(req.inputs)), TotalTokens: int64(len(req.inputs))}}
	for i := range req.inputs {
		res.embeddings = append(res.embeddings, &typev1.Embedding{Index: int32(i), Values: []float32{float32(i), 0.5}})
	}
	return res, nil
}

func failingEmbed(kind failure) func(context.Context, *embedRequest) (*embedResult, error) {
	return func(context.Context, *embedRequest) (*embedResult, error) {
		return nil, &attemptError{kind: kind, detail: "scripted"}
	}
}

// startWithFakeVendors runs dispatch over bufconn with fake vendors, by endpoint id.
func startWithFakeVendors(t *testing.T, vendors map[string]*fakeEmbedVendor, ids []string, cfg Config) (dispatchv1.DispatchServiceClient, *tracetest.SpanRecorder) {
	t.Helper()
	log, _ := grpctest.Logger(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg.TracerProvider = tp
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	s := NewServer(orderedRegistry{ids: ids}, log, cfg)
	s.endpoints.build = func(vc vendorConfig) (vendor, string, error) {
		v, ok := vendors[vc.endpointID]
		if !ok {
			return nil, "", errors.New("no fake vendor")
		}
		return v, "fake", nil
	}
	t.Cleanup(s.Close)
	return dispatchv1.NewDispatchServiceClient(grpctest.Serve(t, s.Register)), rec
}

func TestDispatchEmbed(t *testing.T) {
	good := &fakeEmbedVendor{answer: fakeVectors}
	ids := []string{"ep-good"}
	client, spans := startWithFakeVendors(t, map[string]*fakeEmbedVendor{"ep-good": good}, ids, Config{})

	res, err := client.Embed(t.Context(), &dispatchv1.EmbedRequest{
		OrganizationId: "org-1", EndpointIds: ids, Inputs: []string{"first", "second"},
		Dimensions: new(int32(2)), EndUserId: "user-7",
	})
	require.NoError(t, err)
	assert.Equal(t, "ep-good", res.GetEndpointId())
	assert.Equal(t, "embedder-1", res.GetResponseModel())
	require.Len(t, res.GetEmbeddings(), 2)
	assert.Equal(t, []float32{1, 0.5}, res.GetEmbeddings()[1].GetValues())
	assert.Equal(t, int64(2), res.GetUsage().GetInputTokens())
	require.Equal(t, 1, good.calls())
	assert.Equal(t, &embedRequest{inputs: []string{"first", "second"}, dimensions: 2, endUserID: "user-7"}, good.got[0])

	var call sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() == "dispatch.vendor_call" {
			call = s
		}
	}
	require.NotNil(t, call)
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range call.Attributes() {
		attrs[kv.Key] = kv.Value
	}
	assert.Equal(t, "embeddings", attrs["gen_ai.operation.name"].AsString())
	assert.Equal(t, "fake", attrs["gen_ai.provider.name"].AsString())
	assert.Equal(t, "model-ep-good", attrs["gen_ai.request.model"].AsString())
	assert.Equal(t, "embedder-1", attrs["gen_ai.response.model"].AsString())
	assert.Equal(t, int64(2), attrs["gen_ai.usage.input_tokens"].AsInt64())
	assert.NotContains(t, attrs, attribute.Key("gen_ai.response.finish_reasons"))
}

func TestDispatchEmbedFallback(t *testing.T) {
	short := func(context.Context, *embedRequest) (*embedResult, error) {
		return &embedResult{embeddings: []*typev1.Embedding{{Values: []float32{1}}}}, nil
	}
	hang := func(ctx context.Context, _ *embedRequest) (*embedResult, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	for _, tc := range []struct {
		name   string
		first  func(context.Context, *embedRequest) (*embedResult, error)
		second bool // whether a working second endpoint follows
		code   codes.Code
		reason string
		calls  int // calls to the first endpoint
	}{
		{"unavailable is retried, then falls back", failingEmbed(failUnavailable), true, codes.OK, "", 2},
		{"unsupported falls back at once", failingEmbed(failUnsupported), true, codes.OK, "", 1},
		{"too few fakeVectors is a vendor failure", short, true, codes.OK, "", 2},
		{"timeout", hang, false, codes.DeadlineExceeded, "", 2},
		{"bad request stops", failingEmbed(failBadRequest), true, codes.InvalidArgument, "VENDOR_REJECTED_REQUEST", 1},
		{"unsupported everywhere", failingEmbed(failUnsupported), false, codes.InvalidArgument, "UNSUPPORTED_BY_VENDOR", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := &fakeEmbedVendor{answer: tc.first}, &fakeEmbedVendor{answer: fakeVectors}
			ids := []string{"ep-first"}
			if tc.second {
				ids = append(ids, "ep-second")
			}
			client, _ := startWithFakeVendors(t, map[string]*fakeEmbedVendor{"ep-first": first, "ep-second": second}, ids,
				Config{Timeout: 20 * time.Millisecond})
			res, err := client.Embed(t.Context(), &dispatchv1.EmbedRequest{OrganizationId: "org-1", EndpointIds: ids, Inputs: []string{"a", "b"}})
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			if tc.code == codes.OK {
				assert.Equal(t, "ep-second", res.GetEndpointId())
			}
			if tc.reason != "" {
				assert.Equal(t, tc.reason, grpctest.ErrorInfo(err).GetReason())
			}
			assert.Equal(t, tc.calls, first.calls())
		})
	}
}

func TestDispatchEmbedInvalidArgument(t *testing.T) {
	client, _ := startWithFakeVendors(t, map[string]*fakeEmbedVendor{}, nil, Config{})
	many := make([]string, maxEmbedInputs+1)
	for i := range many {
		many[i] = "x"
	}
	for _, tc := range []struct {
		name   string
		req    *dispatchv1.EmbedRequest
		fields []string
	}{
		{"empty", &dispatchv1.EmbedRequest{}, []string{"organization_id", "endpoint_ids", "inputs"}},
		{"empty input", &dispatchv1.EmbedRequest{OrganizationId: "o", EndpointIds: []string{"e"}, Inputs: []string{"a", ""}}, []string{"inputs[1]"}},
		{"too many inputs", &dispatchv1.EmbedRequest{OrganizationId: "o", EndpointIds: []string{"e"}, Inputs: many}, []string{"inputs"}},
		{"empty endpoint id", &dispatchv1.EmbedRequest{OrganizationId: "o", EndpointIds: []string{""}, Inputs: []string{"a"}}, []string{"endpoint_ids[0]"}},
		{"dimensions", &dispatchv1.EmbedRequest{OrganizationId: "o", EndpointIds: []string{"e"}, Inputs: []string{"a"}, Dimensions: new(int32(0))}, []string{"dimensions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Embed(t.Context(), tc.req)
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			assert.Equal(t, tc.fields, grpctest.BadRequestFields(err))
		})
	}
}

func TestWeightedOrder(t *testing.T) {
	s := &Server{rand: &randSource{r: rand.New(rand.NewPCG(7, 7))}}
	weights := []int64{1, 2, 7}
	const n = 10_000
	first := make([]int, len(weights))
	for range n {
		g := make([]candidate, len(weights))
		for i, w := range weights {
			g[i] = candidate{id: strconv.Itoa(i), ep: &endpoint{weight: w}}
		}
		s.weightedOrder(g)
		ids := make([]string, len(g))
		for i, c := range g {
			ids[i] = c.id
		}
		got := strings.Join(ids, "")
		require.ElementsMatch(t, []string{"0", "1", "2"}, ids, "a permutation: %s", got)
		idx, _ := strconv.Atoi(ids[0])
		first[idx]++
	}
	for i, w := range weights {
		assert.InDelta(t, float64(n)*float64(w)/10, first[i], 300, "endpoint %d of weight %d first in %d of %d", i, w, first[i], n)
	}
}

func TestBackoffIsFullJitterWithinBounds(t *testing.T) {
	s := &Server{
		rand: &randSource{r: rand.New(rand.NewPCG(1, 1))},
		cfg:  Config{RetryBackoff: 10 * time.Millisecond, MaxRetryAfter: 50 * time.Millisecond},
	}
	for n, ceiling := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 3: 40 * time.Millisecond, 4: 50 * time.Millisecond, 40: 50 * time.Millisecond} {
		var lo, hi time.Duration = ceiling, 0
		for range 1000 {
			d := s.backoff(n)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.Less(t, d, ceiling, "attempt %d", n)
			lo, hi = min(lo, d), max(hi, d)
		}
		assert.Less(t, lo, ceiling/10, "attempt %d: draws start near zero", n)
		assert.Greater(t, hi, ceiling*9/10, "attempt %d: draws reach the ceiling", n)
	}
}

func TestFailureKinds(t *testing.T) {
	for _, tc := range []struct {
		kind      failure
		fallback  bool
		retrySame bool
		breaker   breakerOutcome
	}{
		{failUnavailable, true, true, outcomeFailure},
		{failRateLimited, true, true, outcomeFailure},
		{failTimeout, true, true, outcomeFailure},
		{failInterrupted, true, true, outcomeFailure},
		{failCredential, true, false, outcomeFailure},
		{failBadRequest, false, false, outcomeSuccess},
		{failRejected, false, false, outcomeSuccess},
		{failNotFound, true, false, outcomeIgnored},
		{failMisconfigured, true, false, outcomeIgnored},
		{failRegistry, true, false, outcomeIgnored},
		{failUnsupported, true, false, outcomeIgnored},
		{failCircuitOpen, true, false, outcomeIgnored},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			assert.Equal(t, tc.fallback, tc.kind.retryable())
			assert.Equal(t, tc.retrySame, tc.kind.retrySameEndpoint())
			assert.Equal(t, tc.breaker, tc.kind.breakerOutcome())
		})
	}
	st := status.Convert((&attemptError{kind: failCircuitOpen, endpointID: "e"}).toStatus())
	assert.Equal(t, codes.Unavailable, st.Code())
	assert.Equal(t, "ENDPOINT_CIRCUIT_OPEN", grpctest.ErrorInfo(st.Err()).GetReason())
}
