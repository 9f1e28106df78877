package dispatch_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

const azureVersion = "2024-10-21"

// startAzureSim serves a simulator requiring secret over TLS, as Azure OpenAI is served, and
// returns its URL (the resource endpoint) and a client that trusts it.
func startAzureSim(t *testing.T, cfg simulator.Config) (string, *http.Client, *simulator.Simulator) {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = secret
	}
	sim := simulator.New(cfg)
	srv := httptest.NewTLSServer(sim)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	return srv.URL, hc, sim
}

func azureEndpoint(id, baseURL, deployment string) *registryv1.Endpoint {
	ep := endpoint(id, baseURL, deployment)
	ep.Provider = registryv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI
	ep.ApiVersion = azureVersion
	return ep
}

func TestAzureOpenAI(t *testing.T) {
	url, hc, sim := startAzureSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(azureEndpoint("az-chat", url, "chat-deploy"), azureEndpoint("az-embed", url, "embed-deploy")),
		dispatch.Config{HTTPClient: hc})

	res, err := h.client.Generate(t.Context(), generateRequest("Hello Azure", "az-chat"))
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from chat-deploy. You said: Hello Azure", textOf(res.GetMessage()))
	assert.Equal(t, "chat-deploy", res.GetResponseModel())
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.GetFinishReason())
	assert.Equal(t, int64(4), res.GetUsage().GetInputTokens())

	// Azure's stream starts with a prompt-filter chunk without choices; then a tool call.
	params := &typev1.GenerationParams{Tools: []*typev1.Tool{forecastTool()}}
	got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"az-chat"}, Messages: userMessages("call get_forecast for Bergen"), Params: params,
	})
	require.NoError(t, err)
	calls := reassemble(t, got)
	require.Len(t, calls, 1)
	assert.Equal(t, "get_forecast", calls[0].GetName())
	assert.JSONEq(t, `{"city":"call get_forecast for Bergen","days":4}`, calls[0].GetArgumentsJson())
	last := got[len(got)-1]
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, last.GetFinishReason())
	assert.Equal(t, "chat-deploy", last.GetResponseModel())
	assert.NotNil(t, last.GetUsage())

	emb, err := h.client.Embed(t.Context(), &dispatchv1.EmbedRequest{
		OrganizationId: org, EndpointIds: []string{"az-embed"}, Inputs: []string{"alpha", "beta gamma"},
	})
	require.NoError(t, err)
	require.Len(t, emb.GetEmbeddings(), 2)
	assert.Len(t, emb.GetEmbeddings()[0].GetValues(), simulator.DefaultEmbeddingDimensions)
	assert.Equal(t, int64(3), emb.GetUsage().GetInputTokens())
	assert.Equal(t, "embed-deploy", emb.GetResponseModel())
	assert.Equal(t, int64(3), sim.Stats().Requests)
}

func TestAzureOpenAILoopbackHTTP(t *testing.T) {
	// The demo: `fmgate serve` with the simulator on loopback, without TLS.
	v1, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(azureEndpoint("az", strings.TrimSuffix(v1, "/v1"), "demo-deploy")), dispatch.Config{})
	res, err := h.client.Generate(t.Context(), generateRequest("hi", "az"))
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from demo-deploy. You said: hi", textOf(res.GetMessage()))
}

func TestAzureOpenAIFailures(t *testing.T) {
	url, hc, sim := startAzureSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"busy": simulator.FailWith(http.StatusTooManyRequests, 0),
	}})
	otherURL, _, _ := startAzureSim(t, simulator.Config{APIKey: "other-azure-key"})
	noVersion := azureEndpoint("az-no-version", url, "chat-deploy")
	noVersion.ApiVersion = ""
	reg := newFakeRegistry(
		azureEndpoint("az-busy", url, "busy"), azureEndpoint("az-good", url, "good"),
		azureEndpoint("az-rejects", otherURL, "chat-deploy"), noVersion,
	)
	h := start(t, reg, dispatch.Config{HTTPClient: hc, MaxAttemptsPerEndpoint: 1})
	for _, tc := range []struct {
		name     string
		ids      []string
		code     codes.Code
		msg      string
		requests int64
	}{
		{"key rejected", []string{"az-rejects"}, codes.Unavailable, "endpoint credential rejected by vendor", 0},
		{"no api version", []string{"az-no-version"}, codes.FailedPrecondition, "endpoint az-no-version is misconfigured", 0},
		{"falls back", []string{"az-no-version", "az-busy", "az-good"}, codes.OK, "", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sim.Stats().Requests
			_, err := h.client.Generate(t.Context(), generateRequest("hi", tc.ids...))
			st := status.Convert(err)
			require.Equal(t, tc.code, st.Code(), st.Message())
			assert.Contains(t, st.Message(), tc.msg)
			assert.NotContains(t, st.Message(), secret)
			assert.Equal(t, tc.requests, sim.Stats().Requests-before)
		})
	}
	logs := h.logs.String()
	require.Contains(t, logs, "vendor attempt failed")
	assert.NotContains(t, logs, secret, "the Azure key never reaches the logs")
	statuses := map[int64]bool{}
	for _, s := range h.spans.Ended() {
		for _, kv := range s.Attributes() {
			if kv.Key == "http.response.status_code" {
				statuses[kv.Value.AsInt64()] = true
			}
		}
		for _, kv := range s.Attributes() {
			assert.NotContains(t, kv.Value.Emit(), secret, "span %s attribute %s", s.Name(), kv.Key)
		}
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				assert.NotContains(t, kv.Value.Emit(), secret, "span %s event %s", s.Name(), e.Name)
			}
		}
	}
	assert.True(t, statuses[http.StatusUnauthorized], "vendor_call spans carry the failed attempt's HTTP status: %v", statuses)
}
