package simulator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/simulator"
)

const anthropicKey = "sk-ant-sim-test"

// newAnthropicClient starts sim on loopback and returns Anthropic's official SDK client for
// it, with retries off so that faults are seen as they are and without the SDK's
// environment defaults so that nothing from the machine reaches the test.
func newAnthropicClient(t *testing.T, cfg simulator.Config, apiKey string) (anthropic.Client, *simulator.Simulator) {
	t.Helper()
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	c := anthropic.NewClient(
		option.WithoutEnvironmentDefaults(),
		option.WithBaseURL(srv.URL),
		option.WithAPIKey(apiKey),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
	)
	return c, sim
}

func anthropicParams(model, prompt string) anthropic.MessageNewParams {
	return anthropic.MessageNewParams{
		Model:     anthropic.Model(model),
		MaxTokens: 1024,
		System:    []anthropic.TextBlockParam{{Text: "You are terse."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
	}
}

// anthropicWeatherTool takes a city and a unit.
func anthropicWeatherTool() anthropic.ToolUnionParam {
	return anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
		Name:        "get_weather",
		Description: anthropic.String("Current weather of a city"),
		InputSchema: anthropic.ToolInputSchemaParam{
			Properties: map[string]any{
				"city": map[string]any{"type": "string"},
				"unit": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
			},
			Required: []string{"city"},
		},
	}}
}

func TestAnthropicMessage(t *testing.T) {
	c, sim := newAnthropicClient(t, simulator.Config{APIKey: anthropicKey}, anthropicKey)
	p := anthropicParams("demo", "Hello   there\nfriend")
	p.Temperature = anthropic.Float(0.2)
	p.TopP = anthropic.Float(0.9)
	p.TopK = anthropic.Int(5)
	p.Metadata.UserID = anthropic.String("user-1")
	res, err := c.Messages.New(t.Context(), p)
	require.NoError(t, err)

	assert.True(t, strings.HasPrefix(res.ID, "msg_sim_"), res.ID)
	assert.Equal(t, "message", string(res.Type))
	assert.Equal(t, "assistant", string(res.Role))
	assert.Equal(t, "demo", string(res.Model))
	require.Len(t, res.Content, 1)
	assert.Equal(t, "text", res.Content[0].Type)
	assert.Equal(t, "Simulated answer from demo. You said: Hello there friend", res.Content[0].Text)
	assert.Equal(t, anthropic.StopReasonEndTurn, res.StopReason)
	assert.Empty(t, res.StopSequence)
	assert.Contains(t, res.RawJSON(), `"stop_sequence":null`)
	// 3 system words + 3 user words; 9 answer words.
	assert.Equal(t, int64(6), res.Usage.InputTokens)
	assert.Equal(t, int64(9), res.Usage.OutputTokens)
	assert.Equal(t, int64(1), sim.Stats().Requests)
}

func TestAnthropicContentBlocks(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	p := anthropic.MessageNewParams{
		Model:     "m",
		MaxTokens: 100,
		Messages: []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock("first question")),
			anthropic.NewAssistantMessage(anthropic.NewTextBlock("first answer")),
			anthropic.NewUserMessage(
				anthropic.NewTextBlock("look at"),
				anthropic.NewImageBlockBase64("image/png", "iVBORw0KGgo="),
				anthropic.NewImageBlock(anthropic.URLImageSourceParam{URL: "https://example.com/cat.png"}),
				anthropic.NewTextBlock("these"),
			),
		},
	}
	res, err := c.Messages.New(t.Context(), p)
	require.NoError(t, err)
	require.Len(t, res.Content, 1)
	assert.Equal(t, "Simulated answer from m. You said: look at these", res.Content[0].Text)
	// 7 words and two images at 85 tokens each.
	assert.Equal(t, int64(7+2*85), res.Usage.InputTokens)
}

func TestAnthropicStream(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{APIKey: anthropicKey, ChunkDelay: time.Millisecond}, anthropicKey)
	stream := c.Messages.NewStreaming(t.Context(), anthropicParams("demo", "stream me"))
	defer stream.Close()

	var msg anthropic.Message
	var events, deltas []string
	for stream.Next() {
		ev := stream.Current()
		require.NoError(t, msg.Accumulate(ev))
		events = append(events, ev.Type)
		if ev.Type == "message_start" {
			assert.Equal(t, int64(5), ev.Message.Usage.InputTokens)
		}
		if ev.Type == "content_block_delta" {
			assert.Equal(t, "text_delta", ev.Delta.Type)
			deltas = append(deltas, ev.Delta.Text)
		}
	}
	require.NoError(t, stream.Err())
	want := "Simulated answer from demo. You said: stream me"
	assert.Equal(t, want, strings.Join(deltas, ""))
	assert.Len(t, deltas, 8, "one token per delta")
	wantEvents := []string{"message_start", "content_block_start"}
	for range deltas {
		wantEvents = append(wantEvents, "content_block_delta")
	}
	wantEvents = append(wantEvents, "content_block_stop", "message_delta", "message_stop")
	assert.Equal(t, wantEvents, events)

	assert.True(t, strings.HasPrefix(msg.ID, "msg_sim_"), msg.ID)
	require.Len(t, msg.Content, 1)
	assert.Equal(t, want, msg.Content[0].Text)
	assert.Equal(t, anthropic.StopReasonEndTurn, msg.StopReason)
	assert.Equal(t, int64(5), msg.Usage.InputTokens)
	assert.Equal(t, int64(8), msg.Usage.OutputTokens)
}

// TestAnthropicStreamWire reads the raw stream: every event is "event: X\ndata: {json}\n\n"
// with the event name repeated as the data's type, and a ping follows the first block start,
// as Anthropic sends them.
func TestAnthropicStreamWire(t *testing.T) {
	srv := httptest.NewServer(simulator.New(simulator.Config{}))
	t.Cleanup(srv.Close)
	body := `{"model":"demo","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/v1/messages", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("content-type", "application/json")
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream; charset=utf-8", res.Header.Get("Content-Type"))

	var names []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		event, ok := strings.CutPrefix(sc.Text(), "event: ")
		require.True(t, ok, "event line, got %q", sc.Text())
		require.True(t, sc.Scan())
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		require.True(t, ok, "data line, got %q", sc.Text())
		var v struct {
			Type string `json:"type"`
		}
		require.NoError(t, json.Unmarshal([]byte(data), &v))
		assert.Equal(t, event, v.Type)
		require.True(t, sc.Scan())
		require.Empty(t, sc.Text(), "an empty line ends each event")
		names = append(names, event)
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, []string{
		"message_start", "content_block_start", "ping",
		"content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta",
		"content_block_delta", "content_block_delta", "content_block_delta",
		"content_block_stop", "message_delta", "message_stop",
	}, names)
}

func TestAnthropicLength(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	for _, stream := range []bool{false, true} {
		p := anthropicParams("demo", "a long question")
		p.MaxTokens = 3
		msg := anthropicCall(t, c, p, stream)
		require.Len(t, msg.Content, 1)
		assert.Equal(t, "Simulated answer from", msg.Content[0].Text)
		assert.Equal(t, anthropic.StopReasonMaxTokens, msg.StopReason)
		assert.Equal(t, int64(3), msg.Usage.OutputTokens)
	}
}

func TestAnthropicStopSequence(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	for _, stream := range []bool{false, true} {
		p := anthropicParams("demo", "say STOP here")
		p.StopSequences = []string{"nowhere", "STOP"}
		msg := anthropicCall(t, c, p, stream)
		require.Len(t, msg.Content, 1)
		assert.Equal(t, "Simulated answer from demo. You said: say ", msg.Content[0].Text)
		assert.Equal(t, anthropic.StopReasonStopSequence, msg.StopReason)
		assert.Equal(t, "STOP", msg.StopSequence)
		assert.Equal(t, int64(7), msg.Usage.OutputTokens)
	}
}

// anthropicCall sends p plainly or as a stream accumulated with the SDK's Accumulate.
func anthropicCall(t *testing.T, c anthropic.Client, p anthropic.MessageNewParams, stream bool) anthropic.Message {
	t.Helper()
	if !stream {
		res, err := c.Messages.New(t.Context(), p)
		require.NoError(t, err)
		return *res
	}
	s := c.Messages.NewStreaming(t.Context(), p)
	defer s.Close()
	var msg anthropic.Message
	for s.Next() {
		require.NoError(t, msg.Accumulate(s.Current()))
	}
	require.NoError(t, s.Err())
	return msg
}

func TestAnthropicToolRoundTrip(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "stream"}[stream], func(t *testing.T) {
			p := anthropicParams("demo", "What is the weather in Paris? use get_weather")
			p.Tools = []anthropic.ToolUnionParam{anthropicWeatherTool()}
			msg := anthropicCall(t, c, p, stream)
			assert.Equal(t, anthropic.StopReasonToolUse, msg.StopReason)
			require.Len(t, msg.Content, 1)
			call := msg.Content[0]
			require.Equal(t, "tool_use", call.Type)
			assert.True(t, strings.HasPrefix(call.ID, "toolu_"), call.ID)
			assert.Equal(t, "get_weather", call.Name)
			assert.JSONEq(t, `{"city":"What is the weather in Paris? use get_weather","unit":"celsius"}`, string(call.Input))
			assert.Equal(t, int64(1+8), msg.Usage.OutputTokens, "the tool's name and its arguments")

			p.Messages = append(p.Messages, msg.ToParam(),
				anthropic.NewUserMessage(anthropic.NewToolResultBlock(call.ID, "Sunny, 21 C", false)))
			final := anthropicCall(t, c, p, stream)
			assert.Equal(t, anthropic.StopReasonEndTurn, final.StopReason)
			require.Len(t, final.Content, 1)
			assert.Equal(t, "Simulated answer from demo. Tool get_weather returned: Sunny, 21 C", final.Content[0].Text)
		})
	}
}

func TestAnthropicToolStreamPieces(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	p := anthropicParams("demo", "call it")
	p.Tools = []anthropic.ToolUnionParam{anthropicWeatherTool()}
	s := c.Messages.NewStreaming(t.Context(), p)
	defer s.Close()
	var pieces []string
	for s.Next() {
		ev := s.Current()
		switch ev.Type {
		case "content_block_start":
			assert.Equal(t, "tool_use", ev.ContentBlock.Type)
			assert.Equal(t, "get_weather", ev.ContentBlock.Name)
			assert.NotEmpty(t, ev.ContentBlock.ID)
		case "content_block_delta":
			assert.Equal(t, "input_json_delta", ev.Delta.Type)
			assert.LessOrEqual(t, len(ev.Delta.PartialJSON), 8)
			pieces = append(pieces, ev.Delta.PartialJSON)
		}
	}
	require.NoError(t, s.Err())
	assert.Greater(t, len(pieces), 1)
	assert.JSONEq(t, `{"city":"call it","unit":"celsius"}`, strings.Join(pieces, ""))
}

func TestAnthropicToolChoice(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	lookup := anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{Name: "lookup", InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{}}}}
	for _, tc := range []struct {
		name   string
		prompt string
		choice anthropic.ToolChoiceUnionParam
		want   string // the tool called, or "" for text
	}{
		{"auto without mention answers text", "hello", anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{}}, ""},
		{"auto with mention", "try lookup please", anthropic.ToolChoiceUnionParam{}, "lookup"},
		{"any calls the first tool", "hello", anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}}, "get_weather"},
		{"tool forces it", "hello", anthropic.ToolChoiceParamOfTool("lookup"), "lookup"},
		{"none never calls", "call get_weather", anthropic.ToolChoiceUnionParam{OfNone: &anthropic.ToolChoiceNoneParam{}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := anthropicParams("demo", tc.prompt)
			p.Tools = []anthropic.ToolUnionParam{anthropicWeatherTool(), lookup}
			p.ToolChoice = tc.choice
			res, err := c.Messages.New(t.Context(), p)
			require.NoError(t, err)
			require.Len(t, res.Content, 1)
			if tc.want == "" {
				assert.Equal(t, "text", res.Content[0].Type)
				assert.Equal(t, anthropic.StopReasonEndTurn, res.StopReason)
				return
			}
			assert.Equal(t, tc.want, res.Content[0].Name)
			assert.Equal(t, anthropic.StopReasonToolUse, res.StopReason)
		})
	}
}

func TestAnthropicStructuredOutput(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{}, "unused")
	p := anthropicParams("demo", "hi")
	p.OutputConfig.Format = anthropic.JSONOutputFormatParam{Schema: map[string]any{
		"type":                 "object",
		"properties":           map[string]any{"reply": map[string]any{"type": "string"}},
		"required":             []string{"reply"},
		"additionalProperties": false,
	}}
	res, err := c.Messages.New(t.Context(), p)
	require.NoError(t, err)
	require.Len(t, res.Content, 1)
	assert.JSONEq(t, `{"reply":"Simulated answer from demo. You said: hi"}`, res.Content[0].Text)
}

func TestAnthropicAuthentication(t *testing.T) {
	for _, presented := range []string{"sk-ant-wrong-key", ""} {
		c, sim := newAnthropicClient(t, simulator.Config{APIKey: anthropicKey}, presented)
		_, err := c.Messages.New(t.Context(), anthropicParams("demo", "hi"))
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
		assert.Equal(t, "authentication_error", string(apiErr.Type()))
		assert.NotContains(t, apiErr.RawJSON(), "sk-ant-wrong-key", "the presented key is never echoed")
		assert.Equal(t, int64(0), sim.Stats().Requests, "unauthenticated requests are not counted")
	}
}

func TestAnthropicStatusFaults(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{Faults: map[string]simulator.Fault{
		"limited":    simulator.FailWith(http.StatusTooManyRequests, 1500*time.Millisecond),
		"broken":     simulator.FailWith(http.StatusInternalServerError, 0),
		"busy":       simulator.FailWith(http.StatusServiceUnavailable, 0),
		"overloaded": simulator.FailWith(529, 0),
		"forbidden":  simulator.FailWith(http.StatusForbidden, 0),
	}}, "unused")
	for _, tc := range []struct {
		model, typ string
		status     int
	}{
		{"limited", "rate_limit_error", 429},
		{"broken", "api_error", 500},
		{"busy", "overloaded_error", 529},
		{"overloaded", "overloaded_error", 529},
		{"forbidden", "permission_error", 403},
	} {
		t.Run(tc.model, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				var err error
				if stream {
					s := c.Messages.NewStreaming(t.Context(), anthropicParams(tc.model, "hi"))
					for s.Next() {
						t.Fatal("a failed stream has no events")
					}
					err = s.Err()
					require.NoError(t, s.Close())
				} else {
					_, err = c.Messages.New(t.Context(), anthropicParams(tc.model, "hi"))
				}
				var apiErr *anthropic.Error
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, tc.status, apiErr.StatusCode)
				assert.Equal(t, tc.typ, string(apiErr.Type()))
				assert.Contains(t, apiErr.RawJSON(), `"type":"error"`)
				if tc.status == 429 {
					assert.Equal(t, "2", apiErr.Response.Header.Get("Retry-After"))
				}
			}
		})
	}
	_, err := c.Messages.New(t.Context(), anthropicParams("fine", "hi"))
	require.NoError(t, err, "other models still answer")
}

func TestAnthropicStreamCutIsAnError(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(2)}}, "unused")
	s := c.Messages.NewStreaming(t.Context(), anthropicParams("flaky", "tell me a story"))
	defer s.Close()
	var msg anthropic.Message
	var types []string
	for s.Next() {
		require.NoError(t, msg.Accumulate(s.Current()))
		types = append(types, s.Current().Type)
	}
	require.Error(t, s.Err(), "a cut stream must not look like a clean end")
	assert.NotContains(t, types, "message_stop")
	assert.NotContains(t, types, "message_delta")
	require.Len(t, msg.Content, 1)
	assert.Equal(t, "Simulated answer ", msg.Content[0].Text)
}

func TestAnthropicCutWithoutStreamDropsConnection(t *testing.T) {
	c, _ := newAnthropicClient(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(0)}}, "unused")
	_, err := c.Messages.New(t.Context(), anthropicParams("flaky", "hi"))
	require.Error(t, err)
	var apiErr *anthropic.Error
	assert.False(t, errors.As(err, &apiErr), "a dropped connection has no HTTP status")
}

func TestAnthropicHangEndsWhenClientLeaves(t *testing.T) {
	c, sim := newAnthropicClient(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}}, "unused")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Messages.New(ctx, anthropicParams("stuck", "hi"))
		done <- err
	}()
	require.Eventually(t, func() bool { return sim.Stats().Requests == 1 }, 5*time.Second, time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("hung request answered: %v", err)
	default:
	}
	cancel()
	require.Eventually(t, func() bool { return sim.Stats().Canceled == 1 }, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestAnthropicValidation(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	const user = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name, body, version, want string
		status                    int
	}{
		{"no version", `{"model":"demo","max_tokens":5,` + user + `}`, "-", "anthropic-version", 400},
		{"unknown version", `{"model":"demo","max_tokens":5,` + user + `}`, "1999-01-01", "anthropic-version", 400},
		{"no model", `{"max_tokens":5,` + user + `}`, "", "model", 400},
		{"no max_tokens", `{"model":"demo",` + user + `}`, "", "max_tokens", 400},
		{"zero max_tokens", `{"model":"demo","max_tokens":0,` + user + `}`, "", "max_tokens", 400},
		{"no messages", `{"model":"demo","max_tokens":5,"messages":[]}`, "", "messages", 400},
		{"system role", `{"model":"demo","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, "", "messages.0.role", 400},
		{"empty content", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":""}]}`, "", "messages.0", 400},
		{"blank text block", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":" "}]}]}`, "", "non-whitespace", 400},
		{"bad temperature", `{"model":"demo","max_tokens":5,"temperature":1.5,` + user + `}`, "", "temperature", 400},
		{"bad image media type", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/bmp","data":"AAAA"}}]}]}`, "", "media_type", 400},
		{"bad image data", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"data:image/png;base64,AAAA"}}]}]}`, "", "base64", 400},
		{"tool_result without tool_use", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"x"}]}]}`, "", "tool_use_id", 400},
		{"tool_use without tool_result", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":{}}]},{"role":"user","content":"and?"}]}`, "", "messages.1: `tool_use` ids", 400},
		{"tool_use input not an object", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f","input":"x"}]}]}`, "", "input", 400},
		{"unknown tool choice", `{"model":"demo","max_tokens":5,"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"g"},` + user + `}`, "", "tool_choice", 400},
		{"tool without schema", `{"model":"demo","max_tokens":5,"tools":[{"name":"f"}],` + user + `}`, "", "input_schema", 400},
		{"not json", `{`, "", "parsing the body", 400},
		{"too large", `{"model":"demo","max_tokens":5,"messages":[{"role":"user","content":"` + strings.Repeat("a", simulator.MaxBodyBytes) + `"}]}`, "", "maximum", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(tc.body))
			switch tc.version {
			case "-":
			case "":
				req.Header.Set("anthropic-version", "2023-06-01")
			default:
				req.Header.Set("anthropic-version", tc.version)
			}
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, req)
			assert.Equal(t, tc.status, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, "error", body.Type)
			wantType := "invalid_request_error"
			if tc.status == 413 {
				wantType = "request_too_large"
			}
			assert.Equal(t, wantType, body.Error.Type)
			assert.Contains(t, body.Error.Message, tc.want)
		})
	}
	assert.Equal(t, int64(0), sim.Stats().Requests, "invalid requests are not counted")
}
