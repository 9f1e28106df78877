package edge

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

const testKey = "fmg_test_key"

// fakeGateway is a GatewayServiceClient that records what the OpenAI handler asks and
// answers with what the test set.
type fakeGateway struct {
	gatewayv1.GatewayServiceClient

	mu       sync.Mutex
	auth     []string
	generate *gatewayv1.GenerateRequest
	streamed *gatewayv1.StreamGenerateRequest
	embed    *gatewayv1.EmbedRequest
	tokens   []string // page tokens asked of ListModels

	resp      *gatewayv1.GenerateResponse
	events    []*gatewayv1.StreamGenerateResponse
	streamErr error // after the events
	embedResp *gatewayv1.EmbedResponse
	pages     []*gatewayv1.ListModelsResponse
	model     *gatewayv1.Model
	err       error // returned by every call when set
}

func (f *fakeGateway) record(ctx context.Context) {
	md, _ := metadata.FromOutgoingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, md.Get("authorization")...)
}

func (f *fakeGateway) Generate(ctx context.Context, in *gatewayv1.GenerateRequest, _ ...grpc.CallOption) (*gatewayv1.GenerateResponse, error) {
	f.record(ctx)
	f.generate = in
	return f.resp, f.err
}

func (f *fakeGateway) StreamGenerate(ctx context.Context, in *gatewayv1.StreamGenerateRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[gatewayv1.StreamGenerateResponse], error) {
	f.record(ctx)
	f.streamed = in
	events := f.events
	if f.err != nil {
		events = nil
	}
	return &fakeStream{events: events, err: firstErr(f.err, f.streamErr)}, nil
}

func (f *fakeGateway) Embed(ctx context.Context, in *gatewayv1.EmbedRequest, _ ...grpc.CallOption) (*gatewayv1.EmbedResponse, error) {
	f.record(ctx)
	f.embed = in
	return f.embedResp, f.err
}

func (f *fakeGateway) ListModels(ctx context.Context, in *gatewayv1.ListModelsRequest, _ ...grpc.CallOption) (*gatewayv1.ListModelsResponse, error) {
	f.record(ctx)
	f.tokens = append(f.tokens, in.GetPageToken())
	if f.err != nil {
		return nil, f.err
	}
	return f.pages[len(f.tokens)-1], nil
}

func (f *fakeGateway) GetModel(ctx context.Context, in *gatewayv1.GetModelRequest, _ ...grpc.CallOption) (*gatewayv1.GetModelResponse, error) {
	f.record(ctx)
	if f.err != nil {
		return nil, f.err
	}
	if in.GetName() != f.model.GetName() {
		return nil, status.Error(codes.NotFound, "model "+in.GetName()+" not found")
	}
	return &gatewayv1.GetModelResponse{Model: f.model}, nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

type fakeStream struct {
	grpc.ClientStream
	events []*gatewayv1.StreamGenerateResponse
	err    error
}

func (s *fakeStream) Recv() (*gatewayv1.StreamGenerateResponse, error) {
	if len(s.events) == 0 {
		if s.err != nil {
			return nil, s.err
		}
		return nil, io.EOF
	}
	ev := s.events[0]
	s.events = s.events[1:]
	return ev, nil
}

func serveOpenAI(t *testing.T, gw *fakeGateway) string {
	t.Helper()
	srv := httptest.NewServer(openAIHandler(gw))
	t.Cleanup(srv.Close)
	return srv.URL
}

func call(t *testing.T, method, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func text(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

func TestChatTranslatesRequest(t *testing.T) {
	gw := &fakeGateway{resp: &gatewayv1.GenerateResponse{Id: "gen-abc", Message: &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{text("hi")}},
		FinishReason: typev1.FinishReason_FINISH_REASON_STOP, Usage: &typev1.Usage{InputTokens: 3, OutputTokens: 1, TotalTokens: 4}}}
	url := serveOpenAI(t, gw)
	resp, body := call(t, http.MethodPost, url+"/v1/chat/completions", `{
		"model": "demo",
		"messages": [
			{"role": "developer", "content": "be brief"},
			{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}], "name": "bob"},
			{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}]},
			{"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
		],
		"tools": [{"type": "function", "function": {"name": "look", "description": "looks", "parameters": {"type": "object", "properties": {"headers": {"type": "string"}}}, "strict": true}}],
		"tool_choice": {"type": "function", "function": {"name": "look"}},
		"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": true}},
		"stop": "END", "max_completion_tokens": 50, "temperature": 0.5, "top_p": 0.9, "n": 1, "seed": 7,
		"user": "u-1", "frequency_penalty": 0.1, "presence_penalty": -0.1
	}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, []string{"Bearer " + testKey}, gw.auth)

	want := &gatewayv1.GenerateRequest{
		Model: "demo",
		Messages: []*typev1.Message{
			{Role: typev1.Role_ROLE_DEVELOPER, Content: []*typev1.ContentPart{text("be brief")}},
			{Role: typev1.Role_ROLE_USER, Name: "bob", Content: []*typev1.ContentPart{text("what is this?"),
				{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: "https://x/y.png", Detail: "low"}}}}},
			{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: "call_1", Name: "look", ArgumentsJson: `{"q":1}`}}},
			{Role: typev1.Role_ROLE_TOOL, ToolCallId: "call_1", Content: []*typev1.ContentPart{text("a cat")}},
		},
		Params: &typev1.GenerationParams{
			MaxOutputTokens: ptr[int32](50), Temperature: ptr(0.5), TopP: ptr(0.9), Stop: []string{"END"}, Seed: ptr[int64](7),
			Tools: []*typev1.Tool{{Name: "look", Description: "looks", Strict: true,
				ParametersJson: `{"type": "object", "properties": {"headers": {"type": "string"}}}`}},
			ToolChoice:     &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "look"},
			ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "answer", SchemaJson: `{"type": "object"}`, Strict: true},
			EndUserId:      "u-1", FrequencyPenalty: ptr(0.1), PresencePenalty: ptr(-0.1),
		},
	}
	assert.True(t, proto.Equal(want, gw.generate), "got %v", gw.generate)

	var got map[string]any
	require.NoError(t, json.Unmarshal(body, &got))
	created := got["created"].(float64)
	assert.InDelta(t, float64(time.Now().Unix()), created, 5)
	got["created"] = 0.0
	assert.JSONEq(t, `{"id":"chatcmpl-abc","object":"chat.completion","created":0,"model":"demo",
		"choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},"finish_reason":"stop","logprobs":null}],
		"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`, mustJSON(t, got))
}

func TestChatToolCallAnswer(t *testing.T) {
	gw := &fakeGateway{resp: &gatewayv1.GenerateResponse{Id: "gen-1", FinishReason: typev1.FinishReason_FINISH_REASON_TOOL_CALLS,
		Message: &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: "call_9", Name: "look", ArgumentsJson: `{"q":"x"}`}}}}}
	url := serveOpenAI(t, gw)
	resp, body := call(t, http.MethodPost, url+"/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"tool_choice":"required",
		"tools":[{"type":"function","function":{"name":"look"}}]}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, typev1.ToolChoice_MODE_REQUIRED, gw.generate.GetParams().GetToolChoice().GetMode())
	assert.Empty(t, gw.generate.GetParams().GetTools()[0].GetParametersJson())
	var out chatCompletion
	require.NoError(t, json.Unmarshal(body, &out))
	assert.Nil(t, out.Choices[0].Message.Content, "content is null when the answer is only tool calls")
	assert.Equal(t, "tool_calls", out.Choices[0].FinishReason)
	assert.Equal(t, []chatToolCall{{ID: "call_9", Type: "function", Function: chatFunction{Name: "look", Arguments: `{"q":"x"}`}}}, out.Choices[0].Message.ToolCalls)
}

// sseEvents reads the data lines of a server-sent event stream.
func sseEvents(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		require.True(t, strings.HasPrefix(line, "data: "), line)
		out = append(out, strings.TrimPrefix(line, "data: "))
	}
	return out
}

func TestChatStream(t *testing.T) {
	gw := &fakeGateway{events: []*gatewayv1.StreamGenerateResponse{
		{Id: "gen-s", TextDelta: "Let me "},
		{Id: "gen-s", TextDelta: "look. ", ToolCalls: []*typev1.ToolCallDelta{{Index: 0, Id: "call_1", Name: "look", ArgumentsDelta: `{"q":`}}},
		{Id: "gen-s", ToolCalls: []*typev1.ToolCallDelta{{Index: 0, ArgumentsDelta: `1}`}}},
		{Id: "gen-s", FinishReason: typev1.FinishReason_FINISH_REASON_TOOL_CALLS, Usage: &typev1.Usage{InputTokens: 2, OutputTokens: 5, TotalTokens: 7}},
	}}
	url := serveOpenAI(t, gw)
	resp, body := call(t, http.MethodPost, url+"/v1/chat/completions",
		`{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	events := sseEvents(t, body)
	require.Len(t, events, 7)
	assert.Equal(t, "[DONE]", events[6])
	var chunks []map[string]any
	for _, e := range events[:6] {
		var c map[string]any
		require.NoError(t, json.Unmarshal([]byte(e), &c), e)
		assert.Equal(t, "chatcmpl-s", c["id"])
		assert.Equal(t, "chat.completion.chunk", c["object"])
		assert.Equal(t, "demo", c["model"])
		delete(c, "id")
		delete(c, "object")
		delete(c, "model")
		delete(c, "created")
		chunks = append(chunks, c)
	}
	want := []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"Let me "},"logprobs":null,"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"content":"look. ","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"look","arguments":"{\"q\":"}}]},"logprobs":null,"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"logprobs":null,"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":5,"total_tokens":7}}`,
	}
	for i, w := range want {
		assert.JSONEq(t, w, mustJSON(t, chunks[i]), "chunk %d", i)
	}
}

func TestChatStreamErrors(t *testing.T) {
	t.Run("refused before the first event is a plain error", func(t *testing.T) {
		gw := &fakeGateway{err: apierr.ResourceExhausted("rate limit reached", "rpm", 1500*time.Millisecond)}
		resp, body := call(t, http.MethodPost, serveOpenAI(t, gw)+"/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}`)
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
		assert.Equal(t, "2", resp.Header.Get("Retry-After"))
		assert.Equal(t, "1500", resp.Header.Get("Retry-After-Ms"))
		assert.Contains(t, string(body), `"code":"rate_limit_exceeded"`)
	})
	for name, streamErr := range map[string]error{
		"upstream failure":   status.Error(codes.Unavailable, "upstream went away"),
		"end without finish": nil, // io.EOF after the events
	} {
		t.Run(name+" mid-stream is an error event without [DONE]", func(t *testing.T) {
			gw := &fakeGateway{events: []*gatewayv1.StreamGenerateResponse{{Id: "gen-1", TextDelta: "partial "}}, streamErr: streamErr}
			resp, body := call(t, http.MethodPost, serveOpenAI(t, gw)+"/v1/chat/completions", `{"model":"demo","messages":[{"role":"user","content":"hi"}],"stream":true}`)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			events := sseEvents(t, body)
			require.Len(t, events, 3)
			assert.Contains(t, events[1], "partial ")
			var e openAIError
			require.NoError(t, json.Unmarshal([]byte(events[2]), &e))
			assert.Equal(t, "server_error", e.Error.Type)
			assert.NotEmpty(t, e.Error.Message)
			assert.NotContains(t, string(body), "[DONE]")
		})
	}
}

func TestChatRejectsBadRequests(t *testing.T) {
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	cases := []struct {
		name   string
		body   string
		header []string
		param  string
		code   string
	}{
		{name: "api_base", body: `{"model":"demo",` + msgs + `,"api_base":"http://169.254.169.254"}`, param: "api_base", code: "forbidden_parameter"},
		{name: "escaped key", body: `{"model":"demo",` + msgs + `,"api\u005fkey":"sk"}`, param: "api_key", code: "forbidden_parameter"},
		{name: "upper case key", body: `{"model":"demo",` + msgs + `,"BASE_URL":"x"}`, param: "BASE_URL", code: "forbidden_parameter"},
		{name: "nested in a message", body: `{"model":"demo","messages":[{"role":"user","content":"hi","extra_headers":{}}]}`, param: "messages[0].extra_headers", code: "forbidden_parameter"},
		{name: "in a tool's function", body: `{"model":"demo",` + msgs + `,"tools":[{"type":"function","function":{"name":"f","credentials":"x"}}]}`,
			param: "tools[0].function.credentials", code: "forbidden_parameter"},
		{name: "in response_format", body: `{"model":"demo",` + msgs + `,"response_format":{"type":"json_object","azure_endpoint":"x"}}`,
			param: "response_format.azure_endpoint", code: "forbidden_parameter"},
		{name: "routing header", body: `{"model":"demo",` + msgs + `}`, header: []string{"X-Upstream-Url", "http://evil"}, param: "X-Upstream-Url", code: "forbidden_parameter"},
		{name: "openai base url header", body: `{"model":"demo",` + msgs + `}`, header: []string{"OpenAI-Base-URL", "http://evil"}, param: "OpenAI-Base-URL", code: "forbidden_parameter"},
		{name: "unknown parameter", body: `{"model":"demo",` + msgs + `,"logit_bias":{}}`, param: "logit_bias", code: "unknown_parameter"},
		{name: "unknown part field", body: `{"model":"demo","messages":[{"role":"user","content":[{"type":"text","text":"a","cache_control":{}}]}]}`,
			param: "messages[0].content[0].cache_control", code: "unknown_parameter"},
		{name: "n > 1", body: `{"model":"demo",` + msgs + `,"n":2}`, param: "n", code: "unsupported_value"},
		{name: "wrong type", body: `{"model":"demo",` + msgs + `,"temperature":"hot"}`, param: "temperature", code: "invalid_type"},
		{name: "bad role", body: `{"model":"demo","messages":[{"role":"function","content":"x"}]}`, param: "messages[0].role", code: "unsupported_value"},
		{name: "audio part", body: `{"model":"demo","messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, param: "messages[0].content[0].type", code: "unsupported_value"},
		{name: "token input stop", body: `{"model":"demo",` + msgs + `,"stop":[1]}`, param: "stop", code: "invalid_type"},
		{name: "tool choice", body: `{"model":"demo",` + msgs + `,"tool_choice":"sometimes"}`, param: "tool_choice", code: "unsupported_value"},
		{name: "schema description", body: `{"model":"demo",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"a","description":"d","schema":{}}}}`,
			param: "response_format.json_schema.description", code: "unknown_parameter"},
		{name: "too deep", body: `{"model":"demo",` + msgs + `,"tools":[{"type":"function","function":{"name":"f","parameters":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `}}]}`,
			param: "tools[0].function.parameters" + strings.Repeat(".a", 60)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := &fakeGateway{}
			resp, body := call(t, http.MethodPost, serveOpenAI(t, gw)+"/v1/chat/completions", tc.body, tc.header...)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
			var e openAIError
			require.NoError(t, json.Unmarshal(body, &e))
			assert.Equal(t, "invalid_request_error", e.Error.Type)
			require.NotNil(t, e.Error.Param, string(body))
			assert.Equal(t, tc.param, *e.Error.Param)
			if tc.code != "" {
				require.NotNil(t, e.Error.Code)
				assert.Equal(t, tc.code, *e.Error.Code)
			}
			assert.Nil(t, gw.generate, "a refused request never reaches the gateway")
		})
	}
}

func TestOpenAIErrorMapping(t *testing.T) {
	cases := []struct {
		name    string
		err     error
		status  int
		typ     string
		param   string
		code    string
		headers map[string]string
	}{
		{name: "unauthenticated", err: status.Error(codes.Unauthenticated, "bad key"), status: 401, typ: "invalid_request_error", code: "invalid_api_key",
			headers: map[string]string{"WWW-Authenticate": `Bearer realm="fmgate"`}},
		{name: "not granted", err: apierr.WithReason(codes.PermissionDenied, "MODEL_NOT_GRANTED", "no"), status: 403, typ: "permission_denied", code: "permission_denied"},
		{name: "unknown model", err: status.Error(codes.NotFound, "no model"), status: 404, typ: "invalid_request_error", param: "model", code: "model_not_found"},
		{name: "not routable", err: status.Error(codes.FailedPrecondition, "not approved"), status: 400, typ: "invalid_request_error", code: "model_not_available"},
		{name: "rate limited", err: apierr.ResourceExhausted("slow down", "rpm", 200*time.Millisecond), status: 429, typ: "rate_limit_error", code: "rate_limit_exceeded",
			headers: map[string]string{"Retry-After": "1", "Retry-After-Ms": "200"}},
		{name: "bad temperature", err: apierr.Field("params.temperature", "must be between 0 and 2"), status: 400, typ: "invalid_request_error", param: "temperature"},
		{name: "bad max tokens", err: apierr.Field("params.max_output_tokens", "must be at least 1"), status: 400, typ: "invalid_request_error", param: "max_completion_tokens"},
		{name: "bad tool name", err: apierr.Field("params.tools[2].name", "bad"), status: 400, typ: "invalid_request_error", param: "tools[2].function.name"},
		{name: "bad schema", err: apierr.Field("params.response_format.schema_json", "bad"), status: 400, typ: "invalid_request_error", param: "response_format.json_schema.schema"},
		{name: "bad tool call", err: apierr.Field("messages[1].tool_calls[0].name", "bad"), status: 400, typ: "invalid_request_error", param: "messages[1].tool_calls[0].function.name"},
		{name: "blocked input", err: apierr.WithReason(codes.InvalidArgument, "INPUT_BLOCKED", "blocked"), status: 400, typ: "invalid_request_error", code: "input_blocked"},
		{name: "unavailable", err: status.Error(codes.Unavailable, "down"), status: 503, typ: "server_error", code: "service_unavailable"},
		{name: "timeout", err: status.Error(codes.DeadlineExceeded, "slow"), status: 504, typ: "server_error", code: "timeout"},
		{name: "internal", err: status.Error(codes.Internal, "internal error (request id x)"), status: 500, typ: "server_error", code: "internal_error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := &fakeGateway{err: tc.err}
			resp, body := call(t, http.MethodPost, serveOpenAI(t, gw)+"/v1/chat/completions",
				`{"model":"demo","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":5}`)
			require.Equal(t, tc.status, resp.StatusCode, string(body))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			var e openAIError
			require.NoError(t, json.Unmarshal(body, &e))
			assert.Equal(t, status.Convert(tc.err).Message(), e.Error.Message)
			assert.Equal(t, tc.typ, e.Error.Type)
			assert.Equal(t, tc.param, deref(e.Error.Param))
			assert.Equal(t, tc.code, deref(e.Error.Code))
			for k, v := range tc.headers {
				assert.Equal(t, v, resp.Header.Get(k), k)
			}
		})
	}
}

func TestAuthAndRouting(t *testing.T) {
	gw := &fakeGateway{pages: []*gatewayv1.ListModelsResponse{{}}}
	url := serveOpenAI(t, gw)

	resp, body := call(t, http.MethodGet, url+"/v1/models", "", "Authorization", "")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Contains(t, string(body), `"code":"invalid_api_key"`)
	assert.Empty(t, gw.auth, "no credential, no gateway call")

	resp, _ = call(t, http.MethodGet, url+"/v1/models", "", "Api-Key", testKey, "Authorization", "")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "only Authorization: Bearer is read")

	resp, body = call(t, http.MethodGet, url+"/v1/nothing", "")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Contains(t, string(body), "Invalid URL (GET /v1/nothing)")

	resp, _ = call(t, http.MethodGet, url+"/v1/chat/completions", "")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestEmbeddings(t *testing.T) {
	vec := []float32{0.5, -1.25, 3}
	gw := &fakeGateway{embedResp: &gatewayv1.EmbedResponse{Model: "emb", Usage: &typev1.Usage{InputTokens: 4, TotalTokens: 4},
		Embeddings: []*typev1.Embedding{{Index: 0, Values: vec}, {Index: 1, Values: vec}}}}
	url := serveOpenAI(t, gw)

	resp, body := call(t, http.MethodPost, url+"/v1/embeddings", `{"model":"emb","input":["a b","c d"],"dimensions":3,"user":"u","encoding_format":"float"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.True(t, proto.Equal(&gatewayv1.EmbedRequest{Model: "emb", Inputs: []string{"a b", "c d"}, Dimensions: ptr[int32](3), EndUserId: "u"}, gw.embed))
	assert.JSONEq(t, `{"object":"list","model":"emb","usage":{"prompt_tokens":4,"total_tokens":4},
		"data":[{"object":"embedding","index":0,"embedding":[0.5,-1.25,3]},{"object":"embedding","index":1,"embedding":[0.5,-1.25,3]}]}`, string(body))

	resp, body = call(t, http.MethodPost, url+"/v1/embeddings", `{"model":"emb","input":"one","encoding_format":"base64"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, []string{"one"}, gw.embed.GetInputs())
	var out struct {
		Data []struct{ Embedding string } `json:"data"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	raw, err := base64.StdEncoding.DecodeString(out.Data[0].Embedding)
	require.NoError(t, err)
	require.Len(t, raw, 12)
	for i, want := range vec {
		assert.Equal(t, want, math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}

	for body, param := range map[string]string{
		`{"model":"emb","input":[1,2,3]}`:                        "input",
		`{"model":"emb","input":[[1,2]]}`:                        "input",
		`{"model":"emb","input":"x","encoding_format":"binary"}`: "encoding_format",
		`{"model":"emb","input":"x","api_key":"sk"}`:             "api_key",
	} {
		resp, b := call(t, http.MethodPost, url+"/v1/embeddings", body)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		assert.Contains(t, string(b), `"param":"`+param+`"`, body)
	}

	gw.err = apierr.Field("inputs[1]", "must not be empty")
	resp, body = call(t, http.MethodPost, url+"/v1/embeddings", `{"model":"emb","input":["a",""]}`)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	assert.Contains(t, string(body), `"param":"input[1]"`)
}

func TestModels(t *testing.T) {
	gw := &fakeGateway{
		pages: []*gatewayv1.ListModelsResponse{
			{Models: []*gatewayv1.Model{{Name: "a", Vendor: "openai"}}, NextPageToken: "p2"},
			{Models: []*gatewayv1.Model{{Name: "b"}}},
		},
		model: &gatewayv1.Model{Name: "org/b", Vendor: "anthropic"},
	}
	url := serveOpenAI(t, gw)
	resp, body := call(t, http.MethodGet, url+"/v1/models", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"object":"list","data":[{"id":"a","object":"model","created":0,"owned_by":"openai"},{"id":"b","object":"model","created":0,"owned_by":"fmgate"}]}`, string(body))
	assert.Equal(t, []string{"", "p2"}, gw.tokens, "every page is read")

	resp, body = call(t, http.MethodGet, url+"/v1/models/org/b", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"id":"org/b","object":"model","created":0,"owned_by":"anthropic"}`, string(body))

	resp, body = call(t, http.MethodGet, url+"/v1/models/nope", "")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Contains(t, string(body), `"code":"model_not_found"`)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func ptr[T any](v T) *T { return &v }
