package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

const anthropicTestKey = "sk-ant-dispatch-test-0123456789"

// anthWire keeps the bodies and headers of the requests a vendor sends, so that tests
// can check the translation on the wire.
type anthWire struct {
	base http.RoundTripper
	mu   sync.Mutex
	reqs []anthWireRequest
}

type anthWireRequest struct {
	header http.Header
	body   []byte
}

func (r *anthWire) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		_ = req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, anthWireRequest{header: req.Header.Clone(), body: body})
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

// last returns the last request's body, decoded.
func (r *anthWire) last(t *testing.T) map[string]any {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.reqs)
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.reqs[len(r.reqs)-1].body, &m))
	return m
}

// startAnthropic serves handler (the simulator when nil, requiring anthropicTestKey) on
// loopback and returns an Anthropic adapter for it built as the endpoint cache builds one,
// with the wire recorded.
func startAnthropic(t *testing.T, cfg simulator.Config, handler http.Handler, model, cred string) (*anthropicVendor, *anthWire) {
	t.Helper()
	if handler == nil {
		cfg.APIKey = anthropicTestKey
		handler = simulator.New(cfg)
	}
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	rec := &anthWire{base: hc.Transport}
	hc.Transport = rec
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	v, err := newAnthropicVendor(vendorConfig{
		endpointID: "anthropic-1", provider: registryv1.ProviderKind_PROVIDER_KIND_ANTHROPIC, baseURL: u,
		upstreamModel: model, cred: NewCredential(cred), client: hc,
	})
	require.NoError(t, err)
	return v.(*anthropicVendor), rec
}

func anthText(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

func anthImage(u string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: u, Detail: "low"}}}
}

func anthMsg(role typev1.Role, parts ...*typev1.ContentPart) *typev1.Message {
	return &typev1.Message{Role: role, Content: parts}
}

func anthWeatherTool() *typev1.Tool {
	return &typev1.Tool{
		Name: "get_weather", Description: "Weather in a city",
		ParametersJson: `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}`,
	}
}

// requireAnthropicAttempt asserts err is an *attemptError of kind with no trace of the key.
func requireAnthropicAttempt(t *testing.T, err error, kind failure) *attemptError {
	t.Helper()
	var ae *attemptError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kind, ae.kind, ae.Error())
	assert.Equal(t, "anthropic-1", ae.endpointID)
	assert.NotContains(t, ae.Error(), anthropicTestKey)
	assert.NotContains(t, ae.vendorMessage, anthropicTestKey)
	return ae
}

func anthPtr[T any](v T) *T { return &v }

func TestAnthropicGenerate(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "claude-sim", anthropicTestKey)
	res, err := v.generate(t.Context(), &vendorRequest{
		messages: []*typev1.Message{
			anthMsg(typev1.Role_ROLE_SYSTEM, anthText("You are terse.")),
			anthMsg(typev1.Role_ROLE_DEVELOPER, anthText("Answer in English.")),
			anthMsg(typev1.Role_ROLE_USER, anthText("Hello there")),
		},
		params: &typev1.GenerationParams{
			Temperature: anthPtr(0.5), TopP: anthPtr(0.9), Stop: []string{"never-said"}, EndUserId: "user-42",
		},
	})
	require.NoError(t, err)
	assert.Equal(t, "claude-sim", res.model)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
	require.Len(t, res.message.GetContent(), 1)
	assert.Equal(t, "Simulated answer from claude-sim. You said: Hello there", res.message.GetContent()[0].GetText())
	assert.Equal(t, typev1.Role_ROLE_ASSISTANT, res.message.GetRole())
	// 3 + 3 system words and 2 user words; 8 answer words.
	assert.Equal(t, &typev1.Usage{InputTokens: 8, OutputTokens: 8, TotalTokens: 16}, res.usage)

	wire := rec.last(t)
	assert.Equal(t, []any{
		map[string]any{"type": "text", "text": "You are terse."},
		map[string]any{"type": "text", "text": "Answer in English."},
	}, wire["system"])
	assert.Equal(t, []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "Hello there"}}}}, wire["messages"])
	assert.InDelta(t, defaultAnthropicMaxTokens, wire["max_tokens"], 0)
	assert.InDelta(t, 0.5, wire["temperature"], 0)
	assert.InDelta(t, 0.9, wire["top_p"], 0)
	assert.Equal(t, []any{"never-said"}, wire["stop_sequences"])
	assert.Equal(t, map[string]any{"user_id": "user-42"}, wire["metadata"])
}

// TestAnthropicIgnoresEnvironment sets what the SDK's client would read from the environment:
// none of it may reach the request, which carries the registry's URL and credential only.
func TestAnthropicIgnoresEnvironment(t *testing.T) {
	for _, env := range []map[string]string{
		{"ANTHROPIC_API_KEY": "sk-ant-ambient-env-key", "ANTHROPIC_BASE_URL": "http://127.0.0.1:1"},
		{"ANTHROPIC_AUTH_TOKEN": "ambient-token"},
		{"ANTHROPIC_CUSTOM_HEADERS": "X-Ambient: yes"},
	} {
		for k, val := range env {
			t.Setenv(k, val)
		}
		v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
		_, err := v.generate(t.Context(), &vendorRequest{messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("hi"))}})
		require.NoError(t, err, "the registry's base URL, not the environment's")
		h := rec.reqs[0].header
		assert.Equal(t, anthropicTestKey, h.Get("X-Api-Key"), "the registry's credential, not the environment's")
		assert.Empty(t, h.Get("Authorization"))
		assert.Empty(t, h.Get("X-Ambient"))
		for k := range env {
			require.NoError(t, os.Unsetenv(k)) // t.Setenv restores it at the end
		}
	}
}

func TestAnthropicLengthAndStop(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	user := []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("say STOP now"))}
	for _, tc := range []struct {
		name   string
		params *typev1.GenerationParams
		text   string
		finish typev1.FinishReason
	}{
		{"max tokens", &typev1.GenerationParams{MaxOutputTokens: anthPtr[int32](3)}, "Simulated answer from", typev1.FinishReason_FINISH_REASON_LENGTH},
		{"stop sequence", &typev1.GenerationParams{Stop: []string{"STOP"}}, "Simulated answer from demo. You said: say ", typev1.FinishReason_FINISH_REASON_STOP},
		// The SDK refuses a non-streamed max_tokens this large unless given a timeout.
		{"large max tokens", &typev1.GenerationParams{MaxOutputTokens: anthPtr[int32](64000)}, "Simulated answer from demo. You said: say STOP now", typev1.FinishReason_FINISH_REASON_STOP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{messages: user, params: tc.params})
			require.NoError(t, err)
			assert.Equal(t, tc.finish, res.finish)
			assert.Equal(t, tc.text, res.message.GetContent()[0].GetText())
			if tc.params.MaxOutputTokens != nil {
				assert.InDelta(t, tc.params.GetMaxOutputTokens(), rec.last(t)["max_tokens"], 0)
			}
		})
	}
}

func TestAnthropicImages(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	res, err := v.generate(t.Context(), &vendorRequest{messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER,
		anthText("compare"), anthImage("data:image/png;base64,iVBORw0KGgo="), anthImage("https://example.com/cat.jpg"),
	)}})
	require.NoError(t, err)
	assert.Equal(t, int64(1+2*85), res.usage.GetInputTokens(), "the simulator saw two images")
	content := rec.last(t)["messages"].([]any)[0].(map[string]any)["content"]
	assert.Equal(t, []any{
		map[string]any{"type": "text", "text": "compare"},
		map[string]any{"type": "image", "source": map[string]any{"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
		map[string]any{"type": "image", "source": map[string]any{"type": "url", "url": "https://example.com/cat.jpg"}},
	}, content)

	for _, tc := range []struct {
		url  string
		kind failure
	}{
		{"data:image/bmp;base64,Qk0=", failUnsupported},
		{"data:image/png,rawbytes", failBadRequest},
		{"ftp://example.com/cat.png", failBadRequest},
	} {
		_, err := v.generate(t.Context(), &vendorRequest{messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthImage(tc.url))}})
		requireAnthropicAttempt(t, err, tc.kind)
	}
}

func TestAnthropicToolRoundTrip(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	params := &typev1.GenerationParams{Tools: []*typev1.Tool{anthWeatherTool(), {Name: "get_time"}}}
	msgs := []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("Paris? use get_weather"))}
	res, err := v.generate(t.Context(), &vendorRequest{messages: msgs, params: params})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)
	require.Len(t, res.message.GetToolCalls(), 1)
	call := res.message.GetToolCalls()[0]
	assert.True(t, strings.HasPrefix(call.GetId(), "toolu_"), call.GetId())
	assert.Equal(t, "get_weather", call.GetName())
	assert.JSONEq(t, `{"city":"Paris? use get_weather"}`, call.GetArgumentsJson())
	assert.Empty(t, res.message.GetContent())
	tools := rec.last(t)["tools"].([]any)
	assert.Equal(t, map[string]any{
		"name": "get_weather", "description": "Weather in a city",
		"input_schema": map[string]any{
			"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required": []any{"city"}, "additionalProperties": false,
		},
	}, tools[0], "the schema goes as given")
	assert.Equal(t, map[string]any{"type": "object", "properties": map[string]any{}}, tools[1].(map[string]any)["input_schema"])

	// The assistant calls two tools at once; both results must come back in one user turn,
	// which the simulator checks as Anthropic does.
	second := &typev1.ToolCall{Id: "toolu_other", Name: "get_time", ArgumentsJson: ""}
	msgs = append(msgs,
		&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, Content: []*typev1.ContentPart{anthText("Checking.")}, ToolCalls: []*typev1.ToolCall{call, second}},
		&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: "toolu_other", Content: []*typev1.ContentPart{anthText("noon")}},
		&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: call.GetId(), Content: []*typev1.ContentPart{anthText("Sunny, 21 C")}},
	)
	res, err = v.generate(t.Context(), &vendorRequest{messages: msgs, params: params})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
	assert.Equal(t, "Simulated answer from demo. Tool get_weather returned: Sunny, 21 C", res.message.GetContent()[0].GetText())

	wire := rec.last(t)["messages"].([]any)
	require.Len(t, wire, 3)
	assert.Equal(t, map[string]any{"role": "assistant", "content": []any{
		map[string]any{"type": "text", "text": "Checking."},
		map[string]any{"type": "tool_use", "id": call.GetId(), "name": "get_weather", "input": map[string]any{"city": "Paris? use get_weather"}},
		map[string]any{"type": "tool_use", "id": "toolu_other", "name": "get_time", "input": map[string]any{}},
	}}, wire[1])
	assert.Equal(t, map[string]any{"role": "user", "content": []any{
		map[string]any{"type": "tool_result", "tool_use_id": "toolu_other", "content": []any{map[string]any{"type": "text", "text": "noon"}}},
		map[string]any{"type": "tool_result", "tool_use_id": call.GetId(), "content": []any{map[string]any{"type": "text", "text": "Sunny, 21 C"}}},
	}}, wire[2])
}

func TestAnthropicToolChoice(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	tools := []*typev1.Tool{anthWeatherTool(), {Name: "lookup", ParametersJson: `{"properties":{}}`}}
	for _, tc := range []struct {
		name   string
		choice *typev1.ToolChoice
		wire   any
		called string
	}{
		{"none", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}, map[string]any{"type": "none"}, ""},
		{"required", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}, map[string]any{"type": "any"}, "get_weather"},
		{"named", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "lookup"}, map[string]any{"type": "tool", "name": "lookup"}, "lookup"},
		{"auto", nil, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{
				messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("hello"))},
				params:   &typev1.GenerationParams{Tools: tools, ToolChoice: tc.choice},
			})
			require.NoError(t, err)
			assert.Equal(t, tc.wire, rec.last(t)["tool_choice"])
			if tc.called == "" {
				assert.Empty(t, res.message.GetToolCalls())
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
				return
			}
			require.Len(t, res.message.GetToolCalls(), 1)
			assert.Equal(t, tc.called, res.message.GetToolCalls()[0].GetName())
		})
	}
}

func TestAnthropicStructuredOutput(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	schema := `{"type":"object","properties":{"reply":{"type":"string"}},"required":["reply"],"additionalProperties":false}`
	res, err := v.generate(t.Context(), &vendorRequest{
		messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("hi"))},
		params: &typev1.GenerationParams{ResponseFormat: &typev1.ResponseFormat{
			Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "r", SchemaJson: schema,
		}},
	})
	require.NoError(t, err)
	assert.JSONEq(t, `{"reply":"Simulated answer from demo. You said: hi"}`, res.message.GetContent()[0].GetText())
	format := rec.last(t)["output_config"].(map[string]any)["format"].(map[string]any)
	assert.Equal(t, "json_schema", format["type"])
	assert.Equal(t, "object", format["schema"].(map[string]any)["type"])
}

func TestAnthropicUnsupported(t *testing.T) {
	v, rec := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	user := []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("hi"))}
	for _, tc := range []struct {
		name   string
		params *typev1.GenerationParams
		msgs   []*typev1.Message
		kind   failure
	}{
		{"json object", &typev1.GenerationParams{ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_OBJECT}}, user, failUnsupported},
		{"seed", &typev1.GenerationParams{Seed: anthPtr[int64](7)}, user, failUnsupported},
		{"frequency penalty", &typev1.GenerationParams{FrequencyPenalty: anthPtr(0.5)}, user, failUnsupported},
		{"presence penalty", &typev1.GenerationParams{PresencePenalty: anthPtr(0.5)}, user, failUnsupported},
		{"temperature above 1", &typev1.GenerationParams{Temperature: anthPtr(1.5)}, user, failUnsupported},
		{"bad schema", &typev1.GenerationParams{ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaJson: "[1]"}}, user, failBadRequest},
		{"bad tool parameters", &typev1.GenerationParams{Tools: []*typev1.Tool{{Name: "f", ParametersJson: "{"}}}, user, failBadRequest},
		{"bad tool arguments", nil, []*typev1.Message{
			anthMsg(typev1.Role_ROLE_USER, anthText("hi")),
			{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: "t1", Name: "f", ArgumentsJson: `"x"`}}},
		}, failBadRequest},
		{"empty message", nil, []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("  "))}, failBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				var err error
				if stream {
					_, err = v.stream(t.Context(), &vendorRequest{messages: tc.msgs, params: tc.params}, func(delta) error {
						t.Fatal("no delta expected")
						return nil
					})
				} else {
					_, err = v.generate(t.Context(), &vendorRequest{messages: tc.msgs, params: tc.params})
				}
				ae := requireAnthropicAttempt(t, err, tc.kind)
				assert.NotEmpty(t, ae.detail)
			}
		})
	}
	assert.Empty(t, rec.reqs, "nothing the vendor cannot honour is sent")

	_, err := v.embed(t.Context(), &embedRequest{inputs: []string{"x"}})
	ae := requireAnthropicAttempt(t, err, failUnsupported)
	assert.Contains(t, ae.detail, "no embeddings API")
}

func TestAnthropicStream(t *testing.T) {
	v, _ := startAnthropic(t, simulator.Config{ChunkDelay: time.Millisecond}, nil, "demo", anthropicTestKey)
	var text []string
	res, err := v.stream(t.Context(), &vendorRequest{
		messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_SYSTEM, anthText("be brief")), anthMsg(typev1.Role_ROLE_USER, anthText("stream me"))},
	}, func(d delta) error {
		assert.Equal(t, "demo", d.model)
		assert.Empty(t, d.toolCalls)
		text = append(text, d.text)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from demo. You said: stream me", strings.Join(text, ""))
	assert.Len(t, text, 8, "one delta per token")
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
	assert.Equal(t, "demo", res.model)
	assert.Nil(t, res.message)
	assert.Equal(t, &typev1.Usage{InputTokens: 4, OutputTokens: 8, TotalTokens: 12}, res.usage)
}

func TestAnthropicStreamToolCall(t *testing.T) {
	v, _ := startAnthropic(t, simulator.Config{}, nil, "demo", anthropicTestKey)
	var pieces []*typev1.ToolCallDelta
	res, err := v.stream(t.Context(), &vendorRequest{
		messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("weather in Rome"))},
		params: &typev1.GenerationParams{
			Tools: []*typev1.Tool{anthWeatherTool()}, ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED},
		},
	}, func(d delta) error {
		assert.Empty(t, d.text)
		pieces = append(pieces, d.toolCalls...)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)
	require.Greater(t, len(pieces), 2)
	assert.True(t, strings.HasPrefix(pieces[0].GetId(), "toolu_"))
	assert.Equal(t, "get_weather", pieces[0].GetName())
	var args strings.Builder
	for i, p := range pieces {
		assert.Equal(t, int32(0), p.GetIndex())
		if i > 0 {
			assert.Empty(t, p.GetId(), "id and name come with the first piece only")
			assert.Empty(t, p.GetName())
		}
		args.WriteString(p.GetArgumentsDelta())
	}
	assert.JSONEq(t, `{"city":"weather in Rome"}`, args.String())
	assert.Equal(t, int64(1+3), res.usage.GetOutputTokens(), "the name and the three words of the arguments")
}

// TestAnthropicStreamToolIndexes replays what Claude sends for text followed by two calls,
// the second without arguments: the calls are numbered among the tool calls, not among the
// content blocks, and a call without arguments still gets a JSON object.
func TestAnthropicStreamToolIndexes(t *testing.T) {
	events := []string{
		`message_start`, `{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}`,
		`content_block_start`, `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
		`ping`, `{"type":"ping"}`,
		`content_block_delta`, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}`,
		`content_block_stop`, `{"type":"content_block_stop","index":0}`,
		`content_block_start`, `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_a","name":"get_weather","input":{}}}`,
		`content_block_delta`, `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}`,
		`content_block_delta`, `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}`,
		`content_block_delta`, `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Oslo\"}"}}`,
		`content_block_stop`, `{"type":"content_block_stop","index":1}`,
		`content_block_start`, `{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_time","input":{}}}`,
		`content_block_stop`, `{"type":"content_block_stop","index":2}`,
		`message_delta`, `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":42}}`,
		`message_stop`, `{"type":"message_stop"}`,
	}
	replay := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < len(events); i += 2 {
			_, _ = io.WriteString(w, "event: "+events[i]+"\ndata: "+events[i+1]+"\n\n")
		}
	})
	v, _ := startAnthropic(t, simulator.Config{}, replay, "claude-x", anthropicTestKey)
	var text strings.Builder
	args := map[int32]string{}
	var heads []*typev1.ToolCallDelta
	res, err := v.stream(t.Context(), &vendorRequest{messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("x"))}}, func(d delta) error {
		text.WriteString(d.text)
		for _, p := range d.toolCalls {
			if p.GetId() != "" {
				heads = append(heads, p)
			}
			args[p.GetIndex()] += p.GetArgumentsDelta()
		}
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, "Let me check.", text.String())
	require.Len(t, heads, 2)
	assert.Equal(t, []any{int32(0), "toolu_a", "get_weather"}, []any{heads[0].GetIndex(), heads[0].GetId(), heads[0].GetName()})
	assert.Equal(t, []any{int32(1), "toolu_b", "get_time"}, []any{heads[1].GetIndex(), heads[1].GetId(), heads[1].GetName()})
	assert.JSONEq(t, `{"city":"Oslo"}`, args[0])
	assert.Equal(t, "{}", args[1])
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)
	assert.Equal(t, &typev1.Usage{InputTokens: 15, OutputTokens: 42, TotalTokens: 57}, res.usage, "cached prompt tokens count")
}

func TestAnthropicStreamErrors(t *testing.T) {
	noStop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\",\"content\":[],\"usage\":{\"input_tokens\":1}}}\n\n"+
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"+
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"par\"}}\n\n")
	})
	errorEvent := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"x\",\"content\":[],\"usage\":{\"input_tokens\":1}}}\n\n"+
			"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
	})
	for _, tc := range []struct {
		name    string
		handler http.Handler
		model   string
		kind    failure
	}{
		{"cut by the simulator", nil, "flaky", failInterrupted},
		{"clean end without message_stop", noStop, "x", failInterrupted},
		{"error event", errorEvent, "x", failInterrupted},
		{"rate limited before the stream", nil, "throttled", failRateLimited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := startAnthropic(t, simulator.Config{Faults: map[string]simulator.Fault{
				"flaky":     simulator.CutAfter(2),
				"throttled": simulator.FailWith(http.StatusTooManyRequests, time.Second),
			}}, tc.handler, tc.model, anthropicTestKey)
			_, err := v.stream(t.Context(), &vendorRequest{messages: []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("tell me a story"))}},
				func(delta) error { return nil })
			requireAnthropicAttempt(t, err, tc.kind)
		})
	}
}

func TestAnthropicErrors(t *testing.T) {
	faults := map[string]simulator.Fault{
		"throttled":  simulator.FailWith(http.StatusTooManyRequests, 2*time.Second),
		"overloaded": simulator.FailWith(http.StatusServiceUnavailable, 0),
		"broken":     simulator.FailWith(http.StatusInternalServerError, 0),
		"denied":     simulator.FailWith(http.StatusForbidden, 0),
		"invalid":    simulator.FailWith(http.StatusBadRequest, 0),
		"missing":    simulator.FailWith(http.StatusNotFound, 0),
		"cut":        simulator.CutAfter(0),
	}
	user := []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("hi"))}
	for _, tc := range []struct {
		name, model, cred string
		msgs              []*typev1.Message
		kind              failure
		status            int
	}{
		{"429", "throttled", anthropicTestKey, user, failRateLimited, 429},
		{"529", "overloaded", anthropicTestKey, user, failUnavailable, 529},
		{"500", "broken", anthropicTestKey, user, failUnavailable, 500},
		{"403", "denied", anthropicTestKey, user, failCredential, 403},
		{"400 fault", "invalid", anthropicTestKey, user, failBadRequest, 400},
		{"404", "missing", anthropicTestKey, user, failRejected, 404},
		{"dropped connection", "cut", anthropicTestKey, user, failUnavailable, 0},
		{"wrong key", "demo", "sk-ant-wrong-0123456789", user, failCredential, 401},
		{"vendor validation", "demo", anthropicTestKey, []*typev1.Message{
			anthMsg(typev1.Role_ROLE_USER, anthText("hi")),
			{Role: typev1.Role_ROLE_TOOL, ToolCallId: "toolu_unknown", Content: []*typev1.ContentPart{anthText("x")}},
		}, failBadRequest, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, _ := startAnthropic(t, simulator.Config{Faults: faults}, nil, tc.model, tc.cred)
			_, err := v.generate(t.Context(), &vendorRequest{messages: tc.msgs})
			ae := requireAnthropicAttempt(t, err, tc.kind)
			assert.Equal(t, tc.status, ae.httpStatus)
			assert.NotContains(t, ae.Error(), "sk-ant-wrong-0123456789")
			switch tc.kind {
			case failRateLimited:
				assert.Equal(t, 2*time.Second, ae.retryAfter)
			case failBadRequest:
				assert.NotEmpty(t, ae.vendorMessage)
			case failCredential:
				assert.Empty(t, ae.vendorMessage)
			}
		})
	}
}

func TestAnthropicTimeoutAndCancel(t *testing.T) {
	sim := simulator.New(simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	hc := srv.Client()
	hc.Timeout = 20 * time.Millisecond
	t.Cleanup(hc.CloseIdleConnections)
	built, err := newAnthropicVendor(vendorConfig{endpointID: "anthropic-1", baseURL: u, upstreamModel: "stuck", client: hc})
	require.NoError(t, err)
	v := built.(*anthropicVendor)
	user := []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("hi"))}

	_, err = v.generate(t.Context(), &vendorRequest{messages: user})
	requireAnthropicAttempt(t, err, failTimeout)
	_, err = v.stream(t.Context(), &vendorRequest{messages: user}, func(delta) error { return nil })
	requireAnthropicAttempt(t, err, failTimeout)

	// The caller's own end passes through, unclassified.
	hc.Timeout = 0
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := v.generate(ctx, &vendorRequest{messages: user})
		done <- err
	}()
	require.Eventually(t, func() bool { return sim.Stats().Requests == 3 }, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.Eventually(t, func() bool { return sim.Stats().Canceled == 3 }, 5*time.Second, time.Millisecond)
}

// TestAnthropicSecretNeverLogged sends every kind of failure through an adapter whose
// errors are logged, and finds the key nowhere.
func TestAnthropicSecretNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	v, _ := startAnthropic(t, simulator.Config{Faults: map[string]simulator.Fault{
		"throttled": simulator.FailWith(http.StatusTooManyRequests, time.Second),
		"cut":       simulator.CutAfter(1),
	}}, nil, "demo", anthropicTestKey)
	wrong, _ := startAnthropic(t, simulator.Config{}, nil, "demo", "sk-ant-"+anthropicTestKey)
	user := []*typev1.Message{anthMsg(typev1.Role_ROLE_USER, anthText("my key is "+anthropicTestKey))}
	for _, model := range []string{"throttled", "cut", "demo"} {
		v.model = model
		_, err := v.generate(t.Context(), &vendorRequest{messages: user})
		log.Info("generate", "model", model, "err", err, "cred", v.cred)
		_, err = v.stream(t.Context(), &vendorRequest{messages: user}, func(delta) error { return nil })
		log.Info("stream", "model", model, "err", err)
	}
	_, err := wrong.generate(t.Context(), &vendorRequest{messages: user})
	require.Error(t, err)
	log.Info("wrong key", "err", err, "cred", wrong.cred)
	// The simulator echoes the prompt; only the answer may carry it, never an error or a log
	// line about one.
	assert.NotContains(t, logs.String(), anthropicTestKey)
	assert.Contains(t, logs.String(), "[REDACTED]")
}
