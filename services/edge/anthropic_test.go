package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
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

// anthFakeGateway is a gatewayv1.GatewayServiceClient that records what it is asked and answers
// what the test set.
type anthFakeGateway struct {
	gatewayv1.GatewayServiceClient // other methods are not called

	mu       sync.Mutex
	calls    int
	auth     []string // the authorization metadata of the last call
	generate *gatewayv1.GenerateRequest
	stream   *gatewayv1.StreamGenerateRequest

	resp   *gatewayv1.GenerateResponse
	err    error
	events []*gatewayv1.StreamGenerateResponse
	// streamErr ends the stream after events; nil ends it with io.EOF.
	streamErr error
}

func (f *anthFakeGateway) record(ctx context.Context) {
	f.calls++
	md, _ := metadata.FromOutgoingContext(ctx)
	f.auth = md.Get("authorization")
}

func (f *anthFakeGateway) Generate(ctx context.Context, in *gatewayv1.GenerateRequest, _ ...grpc.CallOption) (*gatewayv1.GenerateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(ctx)
	f.generate = in
	return f.resp, f.err
}

func (f *anthFakeGateway) StreamGenerate(ctx context.Context, in *gatewayv1.StreamGenerateRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[gatewayv1.StreamGenerateResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(ctx)
	f.stream = in
	return &anthFakeStream{ctx: ctx, events: f.events, err: f.streamErr}, nil
}

type anthFakeStream struct {
	grpc.ClientStream
	ctx    context.Context
	events []*gatewayv1.StreamGenerateResponse
	err    error
}

func (s *anthFakeStream) Recv() (*gatewayv1.StreamGenerateResponse, error) {
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

func (s *anthFakeStream) Context() context.Context { return s.ctx }

const anthropicTestKey = "fmg_anthropic_test_key"

// postMessages sends body to the handler with an x-api-key and an anthropic-version unless
// headers overrides them ("" deletes a header).
func postMessages(t *testing.T, gw *anthFakeGateway, body string, headers map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/messages", strings.NewReader(body))
	r.Header.Set("X-Api-Key", anthropicTestKey)
	r.Header.Set("Anthropic-Version", "2023-06-01")
	r.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	w := httptest.NewRecorder()
	http.MaxBytesHandler(anthropicHandler(gw), MaxBodyBytes).ServeHTTP(w, r)
	return w
}

// anthErrorOf decodes an Anthropic error body.
func anthErrorOf(t *testing.T, w *httptest.ResponseRecorder) anthropicErrorBody {
	t.Helper()
	var e anthropicErrorBody
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), w.Body.String())
	assert.Equal(t, "error", e.Type)
	return e
}

func anthText(s string) *typev1.ContentPart { return anthropicTextPart(s) }

func TestAnthropicTranslatesTheRequest(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		msgs   []*typev1.Message
		params *typev1.GenerationParams
	}{
		{
			name: "strings and parameters",
			body: `{"model":"demo","max_tokens":64,"system":"Be brief.","messages":[{"role":"user","content":"hi"}],
				"temperature":0.5,"top_p":0.9,"stop_sequences":["END"],"metadata":{"user_id":"u-1"}}`,
			msgs: []*typev1.Message{
				{Role: typev1.Role_ROLE_SYSTEM, Content: []*typev1.ContentPart{anthText("Be brief.")}},
				{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("hi")}},
			},
			params: &typev1.GenerationParams{MaxOutputTokens: new(int32(64)), Temperature: new(0.5), TopP: new(0.9),
				Stop: []string{"END"}, EndUserId: "u-1"},
		},
		{
			name: "blocks, images and a tool round trip",
			body: `{"model":"demo","max_tokens":10,
				"system":[{"type":"text","text":"One."},{"type":"text","text":"Two."}],
				"messages":[
					{"role":"user","content":[{"type":"text","text":"look"},
						{"type":"image","source":{"type":"base64","media_type":"image/png","data":"aGk="}},
						{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]},
					{"role":"assistant","content":[{"type":"text","text":"calling"},
						{"type":"tool_use","id":"tu_1","name":"get_weather","input":{"city": "Paris"}},
						{"type":"tool_use","id":"tu_2","name":"get_time","input":{}}]},
					{"role":"user","content":[
						{"type":"tool_result","tool_use_id":"tu_1","content":"sunny"},
						{"type":"tool_result","tool_use_id":"tu_2","content":[{"type":"text","text":"no"},{"type":"text","text":"clock"}],"is_error":true},
						{"type":"text","text":"thanks"}]}]}`,
			msgs: []*typev1.Message{
				{Role: typev1.Role_ROLE_SYSTEM, Content: []*typev1.ContentPart{anthText("One."), anthText("Two.")}},
				{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("look"),
					anthropicImagePart("data:image/png;base64,aGk="), anthropicImagePart("https://example.com/a.png")}},
				{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("calling")}, ToolCalls: []*typev1.ToolCall{
					{Id: "tu_1", Name: "get_weather", ArgumentsJson: `{"city":"Paris"}`},
					{Id: "tu_2", Name: "get_time", ArgumentsJson: `{}`},
				}},
				{Role: typev1.Role_ROLE_TOOL, ToolCallId: "tu_1", Content: []*typev1.ContentPart{anthText("sunny")}},
				{Role: typev1.Role_ROLE_TOOL, ToolCallId: "tu_2", Content: []*typev1.ContentPart{anthText("Error: no\nclock")}},
				{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("thanks")}},
			},
			params: &typev1.GenerationParams{MaxOutputTokens: new(int32(10))},
		},
		{
			name: "tools; a schema may name keys that would be forbidden as parameters",
			body: `{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"x"}],
				"tools":[{"name":"fetch","description":"HTTP GET","input_schema":{"type":"object","properties":{"headers":{"type":"object"},"api_key":{"type":"string"}}}},
					{"type":"custom","name":"noop","input_schema":{"type":"object"}}],
				"tool_choice":{"type":"tool","name":"fetch"}}`,
			msgs: []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("x")}}},
			params: &typev1.GenerationParams{MaxOutputTokens: new(int32(1)), Tools: []*typev1.Tool{
				{Name: "fetch", Description: "HTTP GET", ParametersJson: `{"type":"object","properties":{"headers":{"type":"object"},"api_key":{"type":"string"}}}`},
				{Name: "noop", ParametersJson: `{"type":"object"}`},
			}, ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "fetch"}},
		},
		{
			name: "tool choice any",
			body: `{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"x"}],
				"tools":[{"name":"t","input_schema":{}}],"tool_choice":{"type":"any","disable_parallel_tool_use":false}}`,
			msgs: []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("x")}}},
			params: &typev1.GenerationParams{MaxOutputTokens: new(int32(1)), Tools: []*typev1.Tool{{Name: "t", ParametersJson: `{}`}},
				ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}},
		},
		{
			name: "tool choice auto is the default, none is none",
			body: `{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"},{"role":"user","content":"z"}],
				"tool_choice":{"type":"none"}}`,
			msgs: []*typev1.Message{
				{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("x")}},
				{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("y")}},
				{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{anthText("z")}},
			},
			params: &typev1.GenerationParams{MaxOutputTokens: new(int32(1)), ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := &anthFakeGateway{resp: &gatewayv1.GenerateResponse{Id: "gen-1", FinishReason: typev1.FinishReason_FINISH_REASON_STOP,
				Message: &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("ok")}}}}
			w := postMessages(t, gw, tt.body, nil)
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			require.NotNil(t, gw.generate)
			assert.Equal(t, "demo", gw.generate.GetModel())
			assert.Empty(t, anthCmpMessages(tt.msgs, gw.generate.GetMessages()))
			assert.True(t, proto.Equal(tt.params, gw.generate.GetParams()), "params: got %v", gw.generate.GetParams())
		})
	}
	t.Run("tool choice auto", func(t *testing.T) {
		gw := &anthFakeGateway{resp: &gatewayv1.GenerateResponse{}}
		w := postMessages(t, gw, `{"model":"demo","max_tokens":1,"messages":[{"role":"user","content":"x"}],
			"tools":[{"name":"t","input_schema":{}}],"tool_choice":{"type":"auto"}}`, nil)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Nil(t, gw.generate.GetParams().GetToolChoice())
	})
}

func anthCmpMessages(want, got []*typev1.Message) string {
	if len(want) != len(got) {
		return "different lengths"
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			return fmt.Sprintf("message %d: want %v, got %v", i, want[i], got[i])
		}
	}
	return ""
}

func TestAnthropicAnswer(t *testing.T) {
	tests := []struct {
		name   string
		finish typev1.FinishReason
		msg    *typev1.Message
		want   string // the expected JSON, less id
	}{
		{"text", typev1.FinishReason_FINISH_REASON_STOP,
			&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("Hello "), anthText("there")}},
			`{"type":"message","role":"assistant","model":"alias","content":[{"type":"text","text":"Hello there"}],
			  "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":2}}`},
		{"length", typev1.FinishReason_FINISH_REASON_LENGTH,
			&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("Hel")}},
			`{"type":"message","role":"assistant","model":"alias","content":[{"type":"text","text":"Hel"}],
			  "stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":2}}`},
		{"tool calls", typev1.FinishReason_FINISH_REASON_TOOL_CALLS,
			&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("Let me look.")}, ToolCalls: []*typev1.ToolCall{
				{Id: "call_1", Name: "get_weather", ArgumentsJson: `{ "city": "Paris" }`},
				{Id: "call_2", Name: "get_time"},
			}},
			`{"type":"message","role":"assistant","model":"alias","content":[{"type":"text","text":"Let me look."},
			  {"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
			  {"type":"tool_use","id":"call_2","name":"get_time","input":{}}],
			  "stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":2}}`},
		{"blocked by moderation", typev1.FinishReason_FINISH_REASON_CONTENT_FILTER,
			&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT},
			`{"type":"message","role":"assistant","model":"alias","content":[],
			  "stop_reason":"refusal","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":2}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := &anthFakeGateway{resp: &gatewayv1.GenerateResponse{Id: "gen-abc123", Model: "alias", Message: tt.msg,
				FinishReason: tt.finish, Usage: &typev1.Usage{InputTokens: 7, OutputTokens: 2, TotalTokens: 9}}}
			w := postMessages(t, gw, `{"model":"alias","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil)
			require.Equal(t, http.StatusOK, w.Code, w.Body.String())
			assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
			var got map[string]any
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &got))
			assert.Equal(t, "msg_abc123", got["id"])
			delete(got, "id")
			var want map[string]any
			require.NoError(t, json.Unmarshal([]byte(tt.want), &want))
			assert.Equal(t, want, got)
		})
	}
	t.Run("tool arguments that are not an object", func(t *testing.T) {
		gw := &anthFakeGateway{resp: &gatewayv1.GenerateResponse{Id: "gen-1", FinishReason: typev1.FinishReason_FINISH_REASON_TOOL_CALLS,
			Message: &typev1.Message{ToolCalls: []*typev1.ToolCall{{Id: "c", Name: "t", ArgumentsJson: `{"cut`}}}}}
		w := postMessages(t, gw, `{"model":"alias","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil)
		assert.Equal(t, http.StatusBadGateway, w.Code)
		assert.Equal(t, "api_error", anthErrorOf(t, w).Error.Type)
	})
}

func TestAnthropicAuthentication(t *testing.T) {
	body := `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name    string
		headers map[string]string
		code    int
		typ     string
		message string
		auth    string // forwarded authorization metadata, when the gateway is called
	}{
		{name: "x-api-key", auth: "Bearer " + anthropicTestKey, code: http.StatusOK},
		{name: "bearer", headers: map[string]string{"X-Api-Key": "", "Authorization": "Bearer other"}, auth: "Bearer other", code: http.StatusOK},
		{name: "x-api-key wins", headers: map[string]string{"Authorization": "Bearer other"}, auth: "Bearer " + anthropicTestKey, code: http.StatusOK},
		{name: "no key", headers: map[string]string{"X-Api-Key": ""}, code: http.StatusUnauthorized, typ: "authentication_error", message: "x-api-key"},
		{name: "basic auth", headers: map[string]string{"X-Api-Key": "", "Authorization": "Basic dTpw"}, code: http.StatusUnauthorized,
			typ: "authentication_error", message: "Bearer"},
		{name: "no version", headers: map[string]string{"Anthropic-Version": ""}, code: http.StatusBadRequest,
			typ: "invalid_request_error", message: "anthropic-version"},
		{name: "routing header", headers: map[string]string{"X-Upstream-Url": "http://169.254.169.254"}, code: http.StatusBadRequest,
			typ: "invalid_request_error", message: "X-Upstream-Url"},
		{name: "anthropic base url header", headers: map[string]string{"Anthropic-Base-Url": "http://evil"}, code: http.StatusBadRequest,
			typ: "invalid_request_error", message: "Anthropic-Base-Url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := &anthFakeGateway{resp: &gatewayv1.GenerateResponse{Id: "gen-1"}}
			w := postMessages(t, gw, body, tt.headers)
			require.Equal(t, tt.code, w.Code, w.Body.String())
			if tt.code == http.StatusOK {
				assert.Equal(t, []string{tt.auth}, gw.auth)
				return
			}
			e := anthErrorOf(t, w)
			assert.Equal(t, tt.typ, e.Error.Type)
			assert.Contains(t, e.Error.Message, tt.message)
			assert.NotContains(t, w.Body.String(), anthropicTestKey, "the key is never echoed")
			assert.Zero(t, gw.calls, "refused before the gateway is called")
		})
	}
}

func TestAnthropicRejects(t *testing.T) {
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name    string
		body    string
		message string // a part of the message, naming the field
	}{
		{"top_k", `{"model":"demo","max_tokens":5,"top_k":40,` + msgs + `}`, "top_k"},
		{"no max_tokens", `{"model":"demo",` + msgs + `}`, "max_tokens"},
		{"max_tokens zero", `{"model":"demo","max_tokens":0,` + msgs + `}`, "max_tokens"},
		{"no model", `{"max_tokens":5,` + msgs + `}`, "model"},
		{"no messages", `{"model":"demo","max_tokens":5,"messages":[]}`, "messages"},
		{"unknown field", `{"model":"demo","max_tokens":5,"thinking":{"type":"enabled"},` + msgs + `}`, "thinking"},
		{"forbidden key", `{"model":"demo","max_tokens":5,"api_base":"http://169.254.169.254",` + msgs + `}`, "api_base"},
		{"forbidden key in metadata", `{"model":"demo","max_tokens":5,"metadata":{"api_key":"sk-x"},` + msgs + `}`, "metadata.api_key"},
		{"forbidden key in a tool", `{"model":"demo","max_tokens":5,"tools":[{"name":"t","input_schema":{},"base_url":"http://x"}],` + msgs + `}`, "base_url"},
		{"unknown metadata", `{"model":"demo","max_tokens":5,"metadata":{"session":"s"},` + msgs + `}`, "session"},
		{"malformed json", `{"model":`, "JSON"},
		{"temperature", `{"model":"demo","max_tokens":5,"temperature":1.5,` + msgs + `}`, "temperature"},
		{"role", `{"model":"demo","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, "messages[0].role"},
		{"content type", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":42}]}`, "messages[0].content"},
		{"unknown block", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`, "messages[0].content[0].type"},
		{"unknown block field", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}`,
			"messages[0].content[0].cache_control"},
		{"tool_use from the user", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}`, "messages[0].content[0].type"},
		{"image from the assistant", `{"model":"demo","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}]}`, "messages[0].content[0].type"},
		{"tool_use input not an object", `{"model":"demo","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":[1]}]}]}`, "messages[0].content[0].input"},
		{"bad base64", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"@@@"}}]}]}`, "data"},
		{"bad media type", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"text/html","data":"aGk="}}]}]}`, "media_type"},
		{"http image", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"http://10.0.0.1/a.png"}}]}]}`, "source.url"},
		{"image in tool result", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"image","source":{}}]}]}]}`, "content[0]"},
		{"tool result without id", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","content":"x"}]}]}`, "tool_use_id"},
		{"server tool", `{"model":"demo","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],` + msgs + `}`, "tools[0].type"},
		{"tool without schema", `{"model":"demo","max_tokens":5,"tools":[{"name":"t"}],` + msgs + `}`, "tools[0].input_schema"},
		{"tool choice type", `{"model":"demo","max_tokens":5,"tool_choice":{"type":"required"},` + msgs + `}`, "tool_choice.type"},
		{"tool choice without name", `{"model":"demo","max_tokens":5,"tool_choice":{"type":"tool"},` + msgs + `}`, "tool_choice.name"},
		{"no parallel tool use", `{"model":"demo","max_tokens":5,"tool_choice":{"type":"auto","disable_parallel_tool_use":true},` + msgs + `}`, "disable_parallel_tool_use"},
		{"system block type", `{"model":"demo","max_tokens":5,"system":[{"type":"image"}],` + msgs + `}`, "system[0]"},
		{"too deep", `{"model":"demo","max_tokens":5,"metadata":` + strings.Repeat(`{"a":`, 70) + `1` + strings.Repeat(`}`, 70) + `,` + msgs + `}`, "deeper"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := &anthFakeGateway{}
			w := postMessages(t, gw, tt.body, nil)
			require.Equal(t, http.StatusBadRequest, w.Code, w.Body.String())
			e := anthErrorOf(t, w)
			assert.Equal(t, "invalid_request_error", e.Error.Type)
			assert.Contains(t, e.Error.Message, tt.message)
			assert.Zero(t, gw.calls)
		})
	}

	t.Run("too large", func(t *testing.T) {
		w := postMessages(t, &anthFakeGateway{}, `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"`+
			strings.Repeat("a", MaxBodyBytes)+`"}]}`, nil)
		assert.Equal(t, http.StatusRequestEntityTooLarge, w.Code)
		assert.Equal(t, "request_too_large", anthErrorOf(t, w).Error.Type)
	})
	t.Run("method", func(t *testing.T) {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/messages", nil)
		w := httptest.NewRecorder()
		anthropicHandler(&anthFakeGateway{}).ServeHTTP(w, r)
		assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
		assert.Equal(t, "POST", w.Header().Get("Allow"))
		assert.Equal(t, "invalid_request_error", anthErrorOf(t, w).Error.Type)
	})
}

func TestAnthropicErrors(t *testing.T) {
	tests := []struct {
		err   error
		code  int
		typ   string
		retry string
	}{
		{status.Error(codes.Unauthenticated, "invalid API key"), 401, "authentication_error", ""},
		{status.Error(codes.PermissionDenied, "model demo is not granted"), 403, "permission_error", ""},
		{status.Error(codes.NotFound, `model "x" not found`), 404, "not_found_error", ""},
		{apierr.ResourceExhausted("too many requests", "rpm", 1500*time.Millisecond), 429, "rate_limit_error", "2"},
		{apierr.ResourceExhausted("too many requests", "rpm", 10*time.Millisecond), 429, "rate_limit_error", "1"},
		{status.Error(codes.ResourceExhausted, "no retry info"), 429, "rate_limit_error", ""},
		{apierr.Field("params.temperature", "must be between 0 and 2"), 400, "invalid_request_error", ""},
		{status.Error(codes.FailedPrecondition, "model is proposed"), 400, "invalid_request_error", ""},
		{status.Error(codes.Unimplemented, "images are not supported by this endpoint"), 400, "invalid_request_error", ""},
		{status.Error(codes.Unavailable, "every endpoint failed"), 529, "overloaded_error", ""},
		{status.Error(codes.DeadlineExceeded, "deadline"), 504, "timeout_error", ""},
		{status.Error(codes.Internal, "internal error (request id r-1)"), 500, "api_error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+status.Convert(tt.err).Message(), func(t *testing.T) {
			gw := &anthFakeGateway{err: tt.err}
			w := postMessages(t, gw, `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil)
			require.Equal(t, tt.code, w.Code, w.Body.String())
			e := anthErrorOf(t, w)
			assert.Equal(t, tt.typ, e.Error.Type)
			assert.Equal(t, status.Convert(tt.err).Message(), e.Error.Message)
			assert.Equal(t, tt.retry, w.Header().Get("Retry-After"))
		})
	}
}

// anthSSEEvent is one parsed server-sent event.
type anthSSEEvent struct {
	name string
	data map[string]any
}

func anthParseSSE(t *testing.T, body string) []anthSSEEvent {
	t.Helper()
	var out []anthSSEEvent
	var cur anthSSEEvent
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			require.NotEmpty(t, cur.name, "an event without a name")
			out = append(out, cur)
			cur = anthSSEEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data), line)
			assert.Equal(t, cur.name, cur.data["type"], "data.type repeats the event name")
		default:
			t.Fatalf("unexpected line %q", line)
		}
	}
	require.Empty(t, cur.name, "the last event is terminated")
	return out
}

func anthNames(events []anthSSEEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.name)
	}
	return out
}

func TestAnthropicStream(t *testing.T) {
	body := `{"model":"alias","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	ev := func(text string, calls ...*typev1.ToolCallDelta) *gatewayv1.StreamGenerateResponse {
		return &gatewayv1.StreamGenerateResponse{Id: "gen-s1", Model: "alias", TextDelta: text, ToolCalls: calls}
	}
	last := func(e *gatewayv1.StreamGenerateResponse, reason typev1.FinishReason) *gatewayv1.StreamGenerateResponse {
		e.FinishReason, e.Usage = reason, &typev1.Usage{InputTokens: 4, OutputTokens: 6, TotalTokens: 10}
		return e
	}

	t.Run("text and tool calls", func(t *testing.T) {
		gw := &anthFakeGateway{events: []*gatewayv1.StreamGenerateResponse{
			ev("Hello "), ev("world. "),
			ev("", &typev1.ToolCallDelta{Index: 0, Id: "call_a", Name: "get_weather", ArgumentsDelta: `{"city":`}),
			ev("", &typev1.ToolCallDelta{Index: 0, ArgumentsDelta: `"Paris"}`}, &typev1.ToolCallDelta{Index: 1, Id: "call_b", Name: "get_time"}),
			last(ev(""), typev1.FinishReason_FINISH_REASON_TOOL_CALLS),
		}}
		w := postMessages(t, gw, body, nil)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "text/event-stream; charset=utf-8", w.Header().Get("Content-Type"))
		assert.True(t, w.Flushed)
		require.NotNil(t, gw.stream)
		assert.Equal(t, "alias", gw.stream.GetModel())
		events := anthParseSSE(t, w.Body.String())
		assert.Equal(t, []string{
			"message_start", "ping",
			"content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
			"content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
			"content_block_start", "content_block_stop",
			"message_delta", "message_stop",
		}, anthNames(events))

		start := events[0].data["message"].(map[string]any)
		assert.Equal(t, "msg_s1", start["id"])
		assert.Equal(t, "alias", start["model"])
		assert.Equal(t, "assistant", start["role"])
		assert.Equal(t, []any{}, start["content"])
		assert.Nil(t, start["stop_reason"])
		assert.Equal(t, map[string]any{"input_tokens": 0.0, "output_tokens": 0.0}, start["usage"])

		assert.Equal(t, map[string]any{"type": "content_block_start", "index": 0.0, "content_block": map[string]any{"type": "text", "text": ""}}, events[2].data)
		assert.Equal(t, map[string]any{"type": "text_delta", "text": "Hello "}, events[3].data["delta"])
		assert.Equal(t, map[string]any{"type": "text_delta", "text": "world. "}, events[4].data["delta"])
		assert.Equal(t, 0.0, events[5].data["index"])
		assert.Equal(t, map[string]any{"type": "content_block_start", "index": 1.0,
			"content_block": map[string]any{"type": "tool_use", "id": "call_a", "name": "get_weather", "input": map[string]any{}}}, events[6].data)
		assert.Equal(t, map[string]any{"type": "input_json_delta", "partial_json": `{"city":`}, events[7].data["delta"])
		assert.Equal(t, map[string]any{"type": "input_json_delta", "partial_json": `"Paris"}`}, events[8].data["delta"])
		assert.Equal(t, 1.0, events[9].data["index"])
		assert.Equal(t, "call_b", events[10].data["content_block"].(map[string]any)["id"])
		assert.Equal(t, 2.0, events[11].data["index"])
		assert.Equal(t, map[string]any{"type": "message_delta",
			"delta": map[string]any{"stop_reason": "tool_use", "stop_sequence": nil},
			"usage": map[string]any{"input_tokens": 4.0, "output_tokens": 6.0}}, events[12].data)
	})

	finishes := []struct {
		reason typev1.FinishReason
		want   string
	}{
		{typev1.FinishReason_FINISH_REASON_STOP, "end_turn"},
		{typev1.FinishReason_FINISH_REASON_LENGTH, "max_tokens"},
		{typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, "refusal"},
	}
	for _, tt := range finishes {
		t.Run(tt.want, func(t *testing.T) {
			gw := &anthFakeGateway{events: []*gatewayv1.StreamGenerateResponse{ev("Hi "), last(ev("there"), tt.reason)}}
			w := postMessages(t, gw, body, nil)
			events := anthParseSSE(t, w.Body.String())
			assert.Equal(t, []string{"message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
				"content_block_stop", "message_delta", "message_stop"}, anthNames(events))
			assert.Equal(t, tt.want, events[6].data["delta"].(map[string]any)["stop_reason"])
		})
	}

	t.Run("refused before the first event", func(t *testing.T) {
		gw := &anthFakeGateway{streamErr: status.Error(codes.PermissionDenied, "model alias is not granted")}
		w := postMessages(t, gw, body, nil)
		assert.Equal(t, http.StatusForbidden, w.Code)
		assert.Equal(t, "permission_error", anthErrorOf(t, w).Error.Type)
	})

	t.Run("failure mid-stream", func(t *testing.T) {
		gw := &anthFakeGateway{events: []*gatewayv1.StreamGenerateResponse{ev("Hello ")},
			streamErr: status.Error(codes.Unavailable, "upstream stream ended without a final chunk")}
		w := postMessages(t, gw, body, nil)
		assert.Equal(t, http.StatusOK, w.Code, "the status was sent with the first event")
		events := anthParseSSE(t, w.Body.String())
		assert.Equal(t, []string{"message_start", "ping", "content_block_start", "content_block_delta", "error"}, anthNames(events))
		assert.Equal(t, map[string]any{"type": "overloaded_error", "message": "upstream stream ended without a final chunk"},
			events[4].data["error"])
	})

	t.Run("end without a finish reason", func(t *testing.T) {
		gw := &anthFakeGateway{events: []*gatewayv1.StreamGenerateResponse{ev("Hello ")}}
		w := postMessages(t, gw, body, nil)
		events := anthParseSSE(t, w.Body.String())
		assert.Equal(t, "error", events[len(events)-1].name)
		assert.NotContains(t, anthNames(events), "message_stop")
	})

	t.Run("interleaved tool calls", func(t *testing.T) {
		gw := &anthFakeGateway{events: []*gatewayv1.StreamGenerateResponse{
			ev("", &typev1.ToolCallDelta{Index: 0, Id: "a", Name: "x"}),
			ev("", &typev1.ToolCallDelta{Index: 1, Id: "b", Name: "y"}),
			ev("", &typev1.ToolCallDelta{Index: 0, ArgumentsDelta: "{}"}),
			last(ev(""), typev1.FinishReason_FINISH_REASON_TOOL_CALLS),
		}}
		w := postMessages(t, gw, body, nil)
		events := anthParseSSE(t, w.Body.String())
		assert.Equal(t, "error", events[len(events)-1].name)
		assert.NotContains(t, anthNames(events), "message_stop")
	})
}

func FuzzParseAnthropicRequest(f *testing.F) {
	f.Add(`{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	f.Add(`{"model":"demo","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"text","text":"r"}]}]}]}`)
	f.Add(`{"model":"demo","max_tokens":5,"tools":[{"name":"t","input_schema":{"api_key":1}}],"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"t","input":{}}]}]}`)
	f.Add(`{"model":"d","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"aGk="}}]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := parseAnthropicRequest([]byte(body))
		if err != nil {
			// Every refusal is a 400 in Anthropic's shape.
			e := anthropicErrorOf(err)
			if e.status != http.StatusBadRequest || e.typ != "invalid_request_error" || e.message == "" {
				t.Fatalf("refusal %v is not an invalid request", e)
			}
			return
		}
		if req.model == "" || len(req.messages) == 0 || req.params.GetMaxOutputTokens() < 1 {
			t.Fatalf("accepted an incomplete request: %+v", req)
		}
	})
}
