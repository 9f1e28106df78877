package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/simulator"
)

const geminiKey = "AIzaSy-gemini-test-key-0123456789"

// startGeminiSim serves a simulator requiring geminiKey on loopback and returns its URL.
func startGeminiSim(t *testing.T, cfg simulator.Config) (string, *simulator.Simulator) {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = geminiKey
	}
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return srv.URL, sim
}

// newTestGeminiVendor builds the adapter for baseURL and model with key.
func newTestGeminiVendor(t *testing.T, baseURL, model, key string) *geminiVendor {
	t.Helper()
	u, err := url.Parse(baseURL)
	require.NoError(t, err)
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(client.CloseIdleConnections)
	v, err := newGeminiVendor(vendorConfig{
		endpointID: "ep-gemini", provider: registryv1.ProviderKind_PROVIDER_KIND_GEMINI, baseURL: u,
		upstreamModel: model, cred: NewCredential(key), client: client,
	})
	require.NoError(t, err)
	return v.(*geminiVendor)
}

func geminiText(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

func geminiMessages(text string) []*typev1.Message {
	return []*typev1.Message{
		{Role: typev1.Role_ROLE_SYSTEM, Content: []*typev1.ContentPart{geminiText("Be brief.")}},
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{geminiText(text)}},
	}
}

// geminiRegistry serves Gemini endpoints on one simulator, one per model name, with the
// endpoint id "ep-<model>".
type geminiRegistry struct {
	// The methods dispatch does not call; calling one panics.
	registryv1.RegistryServiceClient
	baseURL string
}

func (r geminiRegistry) GetEndpoint(_ context.Context, req *registryv1.GetEndpointRequest, _ ...grpc.CallOption) (*registryv1.GetEndpointResponse, error) {
	model, ok := strings.CutPrefix(req.GetId(), "ep-")
	if !ok {
		return nil, status.Error(codes.NotFound, "no such endpoint")
	}
	return &registryv1.GetEndpointResponse{Endpoint: &registryv1.Endpoint{
		OrganizationId: req.GetOrganizationId(), Id: req.GetId(), Provider: registryv1.ProviderKind_PROVIDER_KIND_GEMINI,
		BaseUrl: r.baseURL, UpstreamModel: model, CredentialRef: "env:FMGATE_GEMINI_TEST_KEY",
	}}, nil
}

// startGeminiDispatch runs dispatch over bufconn against Gemini endpoints at baseURL, and
// returns its client and its log.
func startGeminiDispatch(t *testing.T, baseURL string) (dispatchv1.DispatchServiceClient, *grpctest.LogBuffer) {
	t.Helper()
	t.Setenv("FMGATE_GEMINI_TEST_KEY", geminiKey)
	log, logs := grpctest.Logger(t)
	s := NewServer(geminiRegistry{baseURL: baseURL}, log, Config{RetryBackoff: time.Millisecond})
	t.Cleanup(s.Close)
	return dispatchv1.NewDispatchServiceClient(grpctest.Serve(t, s.Register)), logs
}

// geminiStreamAll reads a whole StreamGenerate.
func geminiStreamAll(t *testing.T, c dispatchv1.DispatchServiceClient, req *dispatchv1.StreamGenerateRequest) ([]*dispatchv1.StreamGenerateResponse, error) {
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

func TestGeminiGenerate(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	c, _ := startGeminiDispatch(t, url)
	res, err := c.Generate(t.Context(), &dispatchv1.GenerateRequest{
		OrganizationId: "org-1", EndpointIds: []string{"ep-demo"}, Messages: geminiMessages("hello there"),
	})
	require.NoError(t, err)
	want := "Simulated answer from demo. You said: hello there"
	require.Len(t, res.GetMessage().GetContent(), 1)
	assert.Equal(t, want, res.GetMessage().GetContent()[0].GetText())
	assert.Equal(t, typev1.Role_ROLE_ASSISTANT, res.GetMessage().GetRole())
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.GetFinishReason())
	assert.Equal(t, "ep-demo", res.GetEndpointId())
	assert.Equal(t, "demo", res.GetResponseModel())
	// Prompt: "Be brief." (the system instruction) and "hello there".
	assert.Equal(t, &typev1.Usage{InputTokens: 4, OutputTokens: 8, TotalTokens: 12}, res.GetUsage())
}

func TestGeminiStream(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	c, _ := startGeminiDispatch(t, url)
	got, err := geminiStreamAll(t, c, &dispatchv1.StreamGenerateRequest{
		OrganizationId: "org-1", EndpointIds: []string{"ep-demo"}, Messages: geminiMessages("hello there"),
	})
	require.NoError(t, err)
	// Eight tokens, merged or not (chunkSender), and the end.
	require.GreaterOrEqual(t, len(got), 2)
	var text strings.Builder
	for _, m := range got[:len(got)-1] {
		text.WriteString(m.GetTextDelta())
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_UNSPECIFIED, m.GetFinishReason())
		assert.Equal(t, "demo", m.GetResponseModel())
	}
	assert.Equal(t, "Simulated answer from demo. You said: hello there", text.String())
	end := got[len(got)-1]
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, end.GetFinishReason())
	assert.Equal(t, &typev1.Usage{InputTokens: 4, OutputTokens: 8, TotalTokens: 12}, end.GetUsage())
}

func TestGeminiToolRoundTrip(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, url, "demo", geminiKey)
	params := &typev1.GenerationParams{Tools: []*typev1.Tool{
		{Name: "get_weather", Description: "Weather in a city",
			ParametersJson: `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`},
		{Name: "get_time"},
	}}
	msgs := []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{geminiText("call get_weather for Paris")}}}

	res, err := v.generate(t.Context(), &vendorRequest{messages: msgs, params: params})
	require.NoError(t, err)
	call := &typev1.ToolCall{Id: "call_0", Name: "get_weather", ArgumentsJson: `{"city":"call get_weather for Paris"}`}
	require.Len(t, res.message.GetToolCalls(), 1)
	assert.Equal(t, call.String(), res.message.GetToolCalls()[0].String())
	assert.Empty(t, res.message.GetContent())
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)

	var deltas []delta
	sres, err := v.stream(t.Context(), &vendorRequest{messages: msgs, params: params}, func(d delta) error {
		deltas = append(deltas, d)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, deltas, 1, "a function call arrives whole")
	require.Len(t, deltas[0].toolCalls, 1)
	assert.Equal(t, (&typev1.ToolCallDelta{Id: "call_0", Name: "get_weather", ArgumentsDelta: call.GetArgumentsJson()}).String(),
		deltas[0].toolCalls[0].String())
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, sres.finish)

	for _, tc := range []struct{ result, want string }{
		{`{"temp":21}`, `Simulated answer from demo. Tool get_weather returned: {"temp":21}`},
		{"sunny", `Simulated answer from demo. Tool get_weather returned: {"output":"sunny"}`},
	} {
		history := append(msgs[:1:1],
			&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{call}},
			&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: "call_0", Content: []*typev1.ContentPart{geminiText(tc.result)}},
		)
		res, err = v.generate(t.Context(), &vendorRequest{messages: history, params: params})
		require.NoError(t, err)
		assert.Empty(t, res.message.GetToolCalls())
		require.Len(t, res.message.GetContent(), 1)
		assert.Equal(t, tc.want, res.message.GetContent()[0].GetText())
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
	}

	unknown := append(msgs[:1:1],
		&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{call}},
		&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: "call_9", Content: []*typev1.ContentPart{geminiText("x")}},
	)
	_, err = v.generate(t.Context(), &vendorRequest{messages: unknown, params: params})
	geminiFailure(t, err, failBadRequest)
}

func TestGeminiToolChoice(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, url, "demo", geminiKey)
	tools := []*typev1.Tool{{Name: "get_weather", ParametersJson: `{"type":"object"}`}, {Name: "get_time"}}
	for _, tc := range []struct {
		name   string
		choice *typev1.ToolChoice
		prompt string
		call   string
	}{
		{"auto answers", nil, "hello", ""},
		{"auto calls when asked", nil, "please call a tool", "get_weather"},
		{"none", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}, "call get_weather", ""},
		{"required", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}, "hello", "get_weather"},
		{"named", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "get_time"}, "hello", "get_time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{
				messages: []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{geminiText(tc.prompt)}}},
				params:   &typev1.GenerationParams{Tools: tools, ToolChoice: tc.choice},
			})
			require.NoError(t, err)
			if tc.call == "" {
				assert.Empty(t, res.message.GetToolCalls())
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
				return
			}
			require.Len(t, res.message.GetToolCalls(), 1)
			assert.Equal(t, tc.call, res.message.GetToolCalls()[0].GetName())
		})
	}
}

func TestGeminiJSONMode(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, url, "demo", geminiKey)
	for _, tc := range []struct {
		name   string
		format *typev1.ResponseFormat
		want   map[string]any
	}{
		{"json object", &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_OBJECT},
			map[string]any{"answer": "Simulated answer from demo. You said: two words"}},
		{"json schema", &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "r",
			SchemaJson: `{"type":"object","properties":{"n":{"type":"integer"},"ok":{"type":"boolean"}},"required":["n","ok"]}`},
			map[string]any{"n": 8.0, "ok": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &vendorRequest{
				messages: []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{geminiText("two words")}}},
				params:   &typev1.GenerationParams{ResponseFormat: tc.format},
			}
			res, err := v.generate(t.Context(), req)
			require.NoError(t, err)
			require.Len(t, res.message.GetContent(), 1)
			var got map[string]any
			require.NoError(t, json.Unmarshal([]byte(res.message.GetContent()[0].GetText()), &got))
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestGeminiParams(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, url, "demo", geminiKey)
	ptr := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		name    string
		params  *typev1.GenerationParams
		text    string
		finish  typev1.FinishReason
		fail    failure
		message string // in the vendor's message: proves the parameter reached it
	}{
		{name: "max tokens", params: &typev1.GenerationParams{MaxOutputTokens: geminiI32(3)},
			text: "Simulated answer from", finish: typev1.FinishReason_FINISH_REASON_LENGTH},
		{name: "stop", params: &typev1.GenerationParams{Stop: []string{" You"}},
			text: "Simulated answer from demo.", finish: typev1.FinishReason_FINISH_REASON_STOP},
		{name: "sampling in range", params: &typev1.GenerationParams{Temperature: ptr(0.2), TopP: ptr(0.9), Seed: geminiI64(7),
			PresencePenalty: ptr(0.5), FrequencyPenalty: ptr(-0.5), EndUserId: "user-1"},
			text: "Simulated answer from demo. You said: hi", finish: typev1.FinishReason_FINISH_REASON_STOP},
		{name: "temperature", params: &typev1.GenerationParams{Temperature: ptr(3)}, fail: failBadRequest, message: "temperature"},
		{name: "top_p", params: &typev1.GenerationParams{TopP: ptr(1.5)}, fail: failBadRequest, message: "top_p"},
		{name: "presence penalty", params: &typev1.GenerationParams{PresencePenalty: ptr(2.5)}, fail: failBadRequest, message: "presence_penalty"},
		{name: "frequency penalty", params: &typev1.GenerationParams{FrequencyPenalty: ptr(-3)}, fail: failBadRequest, message: "frequency_penalty"},
		{name: "seed beyond 32 bits", params: &typev1.GenerationParams{Seed: geminiI64(math.MaxInt32 + 1)}, fail: failUnsupported},
		{name: "tool schema not JSON", params: &typev1.GenerationParams{Tools: []*typev1.Tool{{Name: "t", ParametersJson: "{"}}}, fail: failBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{
				messages: []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{geminiText("hi")}}},
				params:   tc.params,
			})
			if tc.text == "" {
				ae := geminiFailure(t, err, tc.fail)
				assert.Contains(t, ae.vendorMessage, tc.message)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.text, res.message.GetContent()[0].GetText())
			assert.Equal(t, tc.finish, res.finish)
		})
	}
}

func TestGeminiImages(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, url, "demo", geminiKey)
	image := func(u string) []*typev1.Message {
		return []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{
			geminiText("look"), {Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: u, Detail: "low"}}},
		}}}
	}
	for _, tc := range []struct {
		name string
		url  string
		fail failure
	}{
		{"data URL", "data:image/png;base64,aW1nIGJ5dGVz", -1},
		{"https URL", "https://example.com/cat.JPG?size=2", -1},
		{"https URL without extension", "https://example.com/cat", failUnsupported},
		{"http URL", "http://example.com/cat.png", failUnsupported},
		{"data URL not base64", "data:image/png,abc", failBadRequest},
		{"data URL bad base64", "data:image/png;base64,!!!", failBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{messages: image(tc.url)})
			if tc.fail >= 0 {
				geminiFailure(t, err, tc.fail)
				return
			}
			require.NoError(t, err)
			// "look" and the image, which the simulator prices at 85 tokens: the image reached it.
			assert.EqualValues(t, 1+85, res.usage.GetInputTokens())
		})
	}
}

func TestGeminiRequestTranslation(t *testing.T) {
	v := &geminiVendor{endpointID: "ep"}
	msgs := []*typev1.Message{
		{Role: typev1.Role_ROLE_SYSTEM, Content: []*typev1.ContentPart{geminiText("sys")}},
		{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{geminiText("weather and time?")}},
		{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{geminiText("checking")}, ToolCalls: []*typev1.ToolCall{
			{Id: "a", Name: "get_weather", ArgumentsJson: `{"city":"Paris"}`}, {Id: "b", Name: "get_time"},
		}},
		{Role: typev1.Role_ROLE_TOOL, ToolCallId: "a", Content: []*typev1.ContentPart{geminiText(`{"temp":21}`)}},
		// Hoisted into the system instruction; the tool results still form one turn.
		{Role: typev1.Role_ROLE_DEVELOPER, Content: []*typev1.ContentPart{geminiText("dev")}},
		{Role: typev1.Role_ROLE_TOOL, ToolCallId: "b", Content: []*typev1.ContentPart{geminiText("noon")}},
	}
	contents, cfg, err := v.request(&vendorRequest{messages: msgs, params: &typev1.GenerationParams{
		Tools:          []*typev1.Tool{{Name: "get_weather", ParametersJson: `{"type":"object"}`}, {Name: "get_time"}},
		ToolChoice:     &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "get_time"},
		ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaJson: `{"type":"object"}`},
		Stop:           []string{"END"}, MaxOutputTokens: geminiI32(50),
	}})
	require.NoError(t, err)
	b, err := json.Marshal(map[string]any{"contents": contents, "config": cfg})
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"contents": [
			{"role":"user","parts":[{"text":"weather and time?"}]},
			{"role":"model","parts":[{"text":"checking"},{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}},{"functionCall":{"name":"get_time"}}]},
			{"role":"user","parts":[
				{"functionResponse":{"name":"get_weather","response":{"temp":21}}},
				{"functionResponse":{"name":"get_time","response":{"output":"noon"}}}]}
		],
		"config": {
			"systemInstruction":{"role":"user","parts":[{"text":"sys"}, {"text":"dev"}]},
			"maxOutputTokens":50, "stopSequences":["END"],
			"responseMimeType":"application/json", "responseJsonSchema":{"type":"object"},
			"tools":[{"functionDeclarations":[{"name":"get_weather","parametersJsonSchema":{"type":"object"}},{"name":"get_time"}]}],
			"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_time"]}},
			"automaticContinuation":false
		}
	}`, string(b))
}

func TestGeminiEmbed(t *testing.T) {
	url, sim := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, url, "embedder", geminiKey)
	res, err := v.embed(t.Context(), &embedRequest{inputs: []string{"one", "two", "three"}, dimensions: 16})
	require.NoError(t, err)
	require.Len(t, res.embeddings, 3)
	assert.Equal(t, "embedder", res.model)
	for i, e := range res.embeddings {
		assert.EqualValues(t, i, e.GetIndex())
		require.Len(t, e.GetValues(), 16, "dimensions reach the vendor")
		var norm float64
		for _, x := range e.GetValues() {
			norm += float64(x) * float64(x)
		}
		assert.InDelta(t, 1, math.Sqrt(norm), 1e-5)
	}
	assert.NotEqual(t, res.embeddings[0].GetValues(), res.embeddings[1].GetValues())
	assert.EqualValues(t, 1, sim.Stats().Requests)

	// More inputs than one batchEmbedContents call takes: split, in order.
	inputs := make([]string, 150)
	for i := range inputs {
		inputs[i] = "input " + string(rune('a'+i%26)) + strings.Repeat("x", i)
	}
	inputs[149] = "two"
	big, err := v.embed(t.Context(), &embedRequest{inputs: inputs, dimensions: 16})
	require.NoError(t, err)
	require.Len(t, big.embeddings, 150)
	assert.EqualValues(t, 3, sim.Stats().Requests, "two more calls")
	assert.EqualValues(t, 149, big.embeddings[149].GetIndex())
	assert.Equal(t, res.embeddings[1].GetValues(), big.embeddings[149].GetValues(), "same input, same vector, whatever its batch")

	def, err := v.embed(t.Context(), &embedRequest{inputs: []string{"one"}})
	require.NoError(t, err)
	assert.Len(t, def.embeddings[0].GetValues(), simulator.DefaultEmbeddingDimensions)
}

func TestGeminiErrorClassification(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"limited":    simulator.FailWith(http.StatusTooManyRequests, 3*time.Second),
		"broken":     simulator.FailWith(http.StatusInternalServerError, 0),
		"overloaded": simulator.FailWith(http.StatusServiceUnavailable, 0),
		"refuses":    simulator.FailWith(http.StatusBadRequest, 0),
		"forbidden":  simulator.FailWith(http.StatusForbidden, 0),
		"flaky":      simulator.CutAfter(2),
		"stuck":      simulator.Hang(),
	}})
	wrongKey, _ := startGeminiSim(t, simulator.Config{APIKey: "AIzaSy-another-key"})
	type call func(v *geminiVendor, ctx context.Context) error
	generate := func(v *geminiVendor, ctx context.Context) error {
		_, err := v.generate(ctx, &vendorRequest{messages: geminiMessages("a few words here")})
		return err
	}
	stream := func(v *geminiVendor, ctx context.Context) error {
		_, err := v.stream(ctx, &vendorRequest{messages: geminiMessages("a few words here")}, func(delta) error { return nil })
		return err
	}
	embed := func(v *geminiVendor, ctx context.Context) error {
		_, err := v.embed(ctx, &embedRequest{inputs: []string{"x"}})
		return err
	}
	for _, tc := range []struct {
		name       string
		url, model string
		calls      []call
		kind       failure
		status     int
		retryAfter time.Duration
	}{
		{"429", url, "limited", []call{generate, stream, embed}, failRateLimited, 429, 3 * time.Second},
		{"500", url, "broken", []call{generate, stream, embed}, failUnavailable, 500, 0},
		{"503", url, "overloaded", []call{generate, stream, embed}, failUnavailable, 503, 0},
		{"400", url, "refuses", []call{generate, stream, embed}, failBadRequest, 400, 0},
		{"403", url, "forbidden", []call{generate, stream}, failCredential, 403, 0},
		{"wrong key", wrongKey, "demo", []call{generate, stream, embed}, failCredential, 400, 0},
		{"cut stream", url, "flaky", []call{stream}, failInterrupted, 0, 0},
		{"cut", url, "flaky", []call{generate, embed}, failUnavailable, 0, 0},
		{"refused connection", "http://127.0.0.1:1", "demo", []call{generate, stream, embed}, failUnavailable, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestGeminiVendor(t, tc.url, tc.model, geminiKey)
			for _, c := range tc.calls {
				ae := geminiFailure(t, c(v, t.Context()), tc.kind)
				assert.Equal(t, tc.status, ae.httpStatus)
				assert.Equal(t, tc.retryAfter, ae.retryAfter)
				if tc.kind == failCredential {
					assert.Empty(t, ae.vendorMessage, "nothing about the key reaches callers")
				}
				assert.NotContains(t, ae.Error(), geminiKey)
			}
		})
	}

	t.Run("caller gone", func(t *testing.T) {
		v := newTestGeminiVendor(t, url, "stuck", geminiKey)
		for _, c := range []call{generate, stream, embed} {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
			err := c(v, ctx)
			cancel()
			assert.ErrorIs(t, err, context.DeadlineExceeded, "context errors pass through")
		}
	})
}

func TestGeminiBlockedPrompt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := `{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":3,"totalTokenCount":3}}`
		if strings.Contains(r.URL.Path, "stream") {
			w.Header().Set("Content-Type", "text/event-stream")
			body = "data: " + body + "\n\n"
		}
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	v := newTestGeminiVendor(t, srv.URL, "demo", geminiKey)
	res, err := v.generate(t.Context(), &vendorRequest{messages: geminiMessages("bad")})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, res.finish)
	assert.Empty(t, res.message.GetContent())
	assert.EqualValues(t, 3, res.usage.GetInputTokens())

	sres, err := v.stream(t.Context(), &vendorRequest{messages: geminiMessages("bad")}, func(delta) error { return nil })
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, sres.finish)
}

func TestGeminiStreamWithoutFinishIsInterrupted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		// A whole event, then a clean end without a finish reason.
		_, _ = io.WriteString(w, `data: {"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}]}`+"\n\n")
	}))
	t.Cleanup(srv.Close)
	v := newTestGeminiVendor(t, srv.URL, "demo", geminiKey)
	var text string
	_, err := v.stream(t.Context(), &vendorRequest{messages: geminiMessages("hi")}, func(d delta) error {
		text += d.text
		return nil
	})
	geminiFailure(t, err, failInterrupted)
	assert.Equal(t, "Hel", text)
}

func TestGeminiKeyNeverLeaks(t *testing.T) {
	url, _ := startGeminiSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"broken":  simulator.FailWith(http.StatusInternalServerError, 0),
		"refuses": simulator.FailWith(http.StatusBadRequest, 0),
		"flaky":   simulator.CutAfter(1),
	}})
	// A vendor that quotes the key it was sent in its error message.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		msg, _ := json.Marshal("key " + r.Header.Get("x-goog-api-key") + " cannot use this model")
		_, _ = io.WriteString(w, `{"error":{"code":400,"message":`+string(msg)+`,"status":"INVALID_ARGUMENT"}}`)
	}))
	t.Cleanup(echo.Close)
	wrongKey, _ := startGeminiSim(t, simulator.Config{APIKey: "AIzaSy-another-key"})

	var errs []error
	for _, base := range []string{url, echo.URL, wrongKey} {
		c, logs := startGeminiDispatch(t, base)
		for _, ids := range [][]string{{"ep-demo"}, {"ep-broken", "ep-demo"}, {"ep-refuses"}, {"ep-broken"}} {
			_, err := c.Generate(t.Context(), &dispatchv1.GenerateRequest{OrganizationId: "org-1", EndpointIds: ids, Messages: geminiMessages("hi")})
			errs = append(errs, err)
		}
		_, err := geminiStreamAll(t, c, &dispatchv1.StreamGenerateRequest{OrganizationId: "org-1", EndpointIds: []string{"ep-flaky"}, Messages: geminiMessages("hi")})
		errs = append(errs, err)
		_, err = c.Embed(t.Context(), &dispatchv1.EmbedRequest{OrganizationId: "org-1", EndpointIds: []string{"ep-refuses"}, Inputs: []string{"hi"}})
		errs = append(errs, err)
		require.Contains(t, logs.String(), "vendor attempt failed", "failures were logged")
		assert.NotContains(t, logs.String(), geminiKey)
	}
	seen := 0
	for _, err := range errs {
		if err != nil {
			seen++
			assert.NotContains(t, status.Convert(err).Message(), geminiKey)
		}
	}
	assert.Greater(t, seen, 10)
	echoed := errs[6] // the echoing vendor's 400, passed on redacted
	assert.Contains(t, status.Convert(echoed).Message(), "key [REDACTED] cannot use this model")
}

func TestGeminiIgnoresEnvironment(t *testing.T) {
	base, _ := startGeminiSim(t, simulator.Config{})
	for _, kv := range [][2]string{
		{"GOOGLE_API_KEY", "AIzaSy-from-the-environment"}, {"GEMINI_API_KEY", "AIzaSy-from-the-environment-too"},
		{"GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:1/"}, {"GOOGLE_GENAI_USE_VERTEXAI", "true"},
		{"GOOGLE_GENAI_USE_ENTERPRISE", "true"}, {"GOOGLE_CLOUD_PROJECT", "p"}, {"GOOGLE_CLOUD_LOCATION", "us-central1"},
	} {
		t.Setenv(kv[0], kv[1])
	}
	v := newTestGeminiVendor(t, base, "demo", geminiKey)
	res, err := v.generate(t.Context(), &vendorRequest{messages: geminiMessages("hi")})
	require.NoError(t, err, "the registry's key, URL and backend win")
	assert.Equal(t, "Simulated answer from demo. You said: hi", res.message.GetContent()[0].GetText())

	u, err := url.Parse(base)
	require.NoError(t, err)
	_, err = newGeminiVendor(vendorConfig{endpointID: "ep", baseURL: u, upstreamModel: "demo", client: http.DefaultClient})
	require.Error(t, err, "no credential: the environment's key is not taken")
}

func TestGeminiBaseURL(t *testing.T) {
	for _, tc := range []struct{ base, version, wantBase, wantVersion string }{
		{"https://generativelanguage.googleapis.com", "", "https://generativelanguage.googleapis.com/", "v1beta"},
		{"https://generativelanguage.googleapis.com/v1beta/", "", "https://generativelanguage.googleapis.com/", "v1beta"},
		{"https://generativelanguage.googleapis.com/v1", "", "https://generativelanguage.googleapis.com/", "v1"},
		{"https://generativelanguage.googleapis.com/v1beta", "v1alpha", "https://generativelanguage.googleapis.com/", "v1alpha"},
		{"http://proxy:8080/gemini", "", "http://proxy:8080/gemini/", "v1beta"},
	} {
		u, err := url.Parse(tc.base)
		require.NoError(t, err)
		b, v := geminiBase(u, tc.version)
		assert.Equal(t, tc.wantBase, b, tc.base)
		assert.Equal(t, tc.wantVersion, v, tc.base)
	}

	sim, _ := startGeminiSim(t, simulator.Config{})
	v := newTestGeminiVendor(t, sim+"/v1beta", "demo", geminiKey)
	_, err := v.generate(t.Context(), &vendorRequest{messages: geminiMessages("hi")})
	require.NoError(t, err, "a base URL with the version works")
}

func TestGeminiFinishReasons(t *testing.T) {
	for _, tc := range []struct {
		in    genai.FinishReason
		calls bool
		want  typev1.FinishReason
	}{
		{genai.FinishReasonStop, false, typev1.FinishReason_FINISH_REASON_STOP},
		{genai.FinishReasonStop, true, typev1.FinishReason_FINISH_REASON_TOOL_CALLS},
		{genai.FinishReasonMaxTokens, false, typev1.FinishReason_FINISH_REASON_LENGTH},
		{genai.FinishReasonSafety, false, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER},
		{genai.FinishReasonRecitation, false, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER},
		{genai.FinishReasonBlocklist, false, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER},
		{genai.FinishReasonProhibitedContent, false, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER},
		{genai.FinishReasonSPII, false, typev1.FinishReason_FINISH_REASON_CONTENT_FILTER},
		{genai.FinishReasonMalformedFunctionCall, false, typev1.FinishReason_FINISH_REASON_UNSPECIFIED},
		{genai.FinishReasonOther, false, typev1.FinishReason_FINISH_REASON_UNSPECIFIED},
	} {
		assert.Equal(t, tc.want, fromGeminiFinish(tc.in, tc.calls), "%s %v", tc.in, tc.calls)
	}
	assert.Equal(t, &typev1.Usage{InputTokens: 12, OutputTokens: 30, TotalTokens: 42},
		fromGeminiUsage(&genai.GenerateContentResponseUsageMetadata{
			PromptTokenCount: 10, ToolUsePromptTokenCount: 2, CandidatesTokenCount: 20, ThoughtsTokenCount: 10, TotalTokenCount: 42,
		}), "thinking is output")
}

// geminiFailure asserts that err is an *attemptError of kind and returns it.
func geminiFailure(t *testing.T, err error, kind failure) *attemptError {
	t.Helper()
	var ae *attemptError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kind.String(), ae.kind.String(), ae.Error())
	return ae
}

func geminiI32(v int32) *int32 { return &v }
func geminiI64(v int64) *int64 { return &v }
