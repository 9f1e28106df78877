package simulator_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/fmgate/fmgate/internal/simulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const key = "sk-sim-test"

// newClient starts sim on loopback and returns an official SDK client for it, with retries
// off so that faults are seen as they are.
func newClient(t *testing.T, cfg simulator.Config, apiKey string) (openai.Client, *simulator.Simulator) {
	t.Helper()
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	c := openai.NewClient(
		option.WithBaseURL(srv.URL+"/v1"),
		option.WithAPIKey(apiKey),
		option.WithHTTPClient(hc),
		option.WithMaxRetries(0),
	)
	return c, sim
}

func chatParams(model, prompt string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("You are terse."),
			openai.UserMessage(prompt),
		},
	}
}

func TestChatCompletion(t *testing.T) {
	c, sim := newClient(t, simulator.Config{APIKey: key}, key)
	res, err := c.Chat.Completions.New(t.Context(), chatParams("demo", "Hello   there\nfriend"))
	require.NoError(t, err)

	assert.Equal(t, "chat.completion", string(res.Object))
	assert.True(t, strings.HasPrefix(res.ID, "chatcmpl-sim-"), res.ID)
	assert.Equal(t, "demo", res.Model)
	assert.InDelta(t, time.Now().Unix(), res.Created, 5)
	require.Len(t, res.Choices, 1)
	ch := res.Choices[0]
	assert.Equal(t, "Simulated answer from demo. You said: Hello there friend", ch.Message.Content)
	assert.Equal(t, "assistant", string(ch.Message.Role))
	assert.Equal(t, "stop", ch.FinishReason)
	// 3 system words + 3 user words; 9 answer words.
	assert.Equal(t, int64(6), res.Usage.PromptTokens)
	assert.Equal(t, int64(9), res.Usage.CompletionTokens)
	assert.Equal(t, int64(15), res.Usage.TotalTokens)
	assert.Equal(t, int64(1), sim.Stats().Requests)
}

func TestChatCompletionContentParts(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	p := openai.ChatCompletionNewParams{
		Model: "m",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("look at"),
			openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64,AAAA"}),
			openai.TextContentPart("this"),
		})},
	}
	res, err := c.Chat.Completions.New(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from m. You said: look at this", res.Choices[0].Message.Content)
	assert.Equal(t, int64(3+85), res.Usage.PromptTokens, "three words and one image")
}

func TestChatCompletionStream(t *testing.T) {
	c, _ := newClient(t, simulator.Config{APIKey: key, ChunkDelay: time.Millisecond}, key)
	p := chatParams("demo", "stream me")
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	stream := c.Chat.Completions.NewStreaming(t.Context(), p)
	defer stream.Close()

	var acc openai.ChatCompletionAccumulator
	var deltas []string
	var sawUsageChunk bool
	for stream.Next() {
		chunk := stream.Current()
		assert.Equal(t, "chat.completion.chunk", string(chunk.Object))
		require.True(t, acc.AddChunk(chunk))
		if len(chunk.Choices) == 0 {
			sawUsageChunk = true
			assert.Equal(t, int64(5), chunk.Usage.PromptTokens)
			continue
		}
		if d := chunk.Choices[0].Delta.Content; d != "" {
			deltas = append(deltas, d)
		}
	}
	require.NoError(t, stream.Err())
	want := "Simulated answer from demo. You said: stream me"
	assert.Equal(t, want, strings.Join(deltas, ""))
	assert.Len(t, deltas, 8, "one token per chunk")
	assert.True(t, sawUsageChunk)
	assert.Equal(t, want, acc.Choices[0].Message.Content)
	assert.Equal(t, "stop", acc.Choices[0].FinishReason)
	assert.Equal(t, int64(8), acc.Usage.CompletionTokens)
	assert.Equal(t, int64(13), acc.Usage.TotalTokens)
}

func TestStreamWithoutUsage(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	stream := c.Chat.Completions.NewStreaming(t.Context(), chatParams("demo", "hi"))
	defer stream.Close()
	for stream.Next() {
		assert.NotEmpty(t, stream.Current().Choices, "no usage chunk unless asked")
	}
	require.NoError(t, stream.Err())
}

func TestMaxTokens(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	for name, set := range map[string]func(*openai.ChatCompletionNewParams){
		"max_tokens":            func(p *openai.ChatCompletionNewParams) { p.MaxTokens = openai.Int(3) },
		"max_completion_tokens": func(p *openai.ChatCompletionNewParams) { p.MaxCompletionTokens = openai.Int(3) },
	} {
		t.Run(name, func(t *testing.T) {
			p := chatParams("demo", "a long question")
			set(&p)
			res, err := c.Chat.Completions.New(t.Context(), p)
			require.NoError(t, err)
			assert.Equal(t, "Simulated answer from", res.Choices[0].Message.Content)
			assert.Equal(t, "length", res.Choices[0].FinishReason)
			assert.Equal(t, int64(3), res.Usage.CompletionTokens)

			stream := c.Chat.Completions.NewStreaming(t.Context(), p)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			require.NoError(t, stream.Err())
			assert.Equal(t, "Simulated answer from", acc.Choices[0].Message.Content)
			assert.Equal(t, "length", acc.Choices[0].FinishReason)
		})
	}
}

func TestWrongKey(t *testing.T) {
	for name, presented := range map[string]string{"wrong": "sk-wrong", "missing": ""} {
		t.Run(name, func(t *testing.T) {
			c, sim := newClient(t, simulator.Config{APIKey: key}, presented)
			_, err := c.Chat.Completions.New(t.Context(), chatParams("demo", "hi"))
			var apiErr *openai.Error
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
			assert.Equal(t, "invalid_api_key", apiErr.Code)
			assert.Equal(t, "invalid_request_error", apiErr.Type)
			if presented != "" {
				assert.NotContains(t, apiErr.Message, presented, "the presented key is never echoed")
			}
			assert.Zero(t, sim.Stats().Requests)
		})
	}
}

func TestStatusFaults(t *testing.T) {
	c, _ := newClient(t, simulator.Config{Faults: map[string]simulator.Fault{
		"limited": simulator.FailWith(http.StatusTooManyRequests, 1500*time.Millisecond),
		"broken":  simulator.FailWith(http.StatusInternalServerError, 0),
		"busy":    simulator.FailWith(http.StatusServiceUnavailable, 0),
	}}, "")
	for model, want := range map[string]int{"limited": 429, "broken": 500, "busy": 503} {
		t.Run(model, func(t *testing.T) {
			_, err := c.Chat.Completions.New(t.Context(), chatParams(model, "hi"))
			var apiErr *openai.Error
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, want, apiErr.StatusCode)
			assert.NotEmpty(t, apiErr.Message)
			if want == 429 {
				assert.Equal(t, "2", apiErr.Response.Header.Get("Retry-After"))
				assert.Equal(t, "rate_limit_exceeded", apiErr.Code)
			}
		})
	}
	// Other models still answer.
	_, err := c.Chat.Completions.New(t.Context(), chatParams("fine", "hi"))
	require.NoError(t, err)
}

func TestStreamCutIsAnError(t *testing.T) {
	c, _ := newClient(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(2)}}, "")
	p := chatParams("flaky", "tell me a story")
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	stream := c.Chat.Completions.NewStreaming(t.Context(), p)
	defer stream.Close()
	var got string
	for stream.Next() {
		if ch := stream.Current().Choices; len(ch) > 0 {
			got += ch[0].Delta.Content
			assert.Empty(t, ch[0].FinishReason)
		}
	}
	require.Error(t, stream.Err(), "a cut stream must not look like a clean end")
	assert.Equal(t, "Simulated answer ", got)
}

func TestCutWithoutStreamDropsConnection(t *testing.T) {
	c, _ := newClient(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(0)}}, "")
	_, err := c.Chat.Completions.New(t.Context(), chatParams("flaky", "hi"))
	require.Error(t, err)
	var apiErr *openai.Error
	assert.False(t, errors.As(err, &apiErr), "a dropped connection has no HTTP status")
}

func TestHangEndsWhenClientLeaves(t *testing.T) {
	c, sim := newClient(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}}, "")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := c.Chat.Completions.New(ctx, chatParams("stuck", "hi"))
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

func TestLatency(t *testing.T) {
	c, _ := newClient(t, simulator.Config{Latency: 50 * time.Millisecond}, "")
	start := time.Now()
	_, err := c.Chat.Completions.New(t.Context(), chatParams("demo", "hi"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
}

func TestModels(t *testing.T) {
	c, _ := newClient(t, simulator.Config{APIKey: key, Models: []string{"demo", "demo-large"}}, key)
	page, err := c.Models.List(t.Context())
	require.NoError(t, err)
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		assert.Equal(t, "model", string(m.Object))
	}
	assert.Equal(t, []string{"demo", "demo-large"}, ids)

	m, err := c.Models.Get(t.Context(), "demo-large")
	require.NoError(t, err)
	assert.Equal(t, "demo-large", m.ID)

	_, err = c.Models.Get(t.Context(), "nope")
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.StatusCode)
}

func TestDefaultModels(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	page, err := c.Models.List(t.Context())
	require.NoError(t, err)
	require.Len(t, page.Data, 1)
	assert.Equal(t, "demo", page.Data[0].ID)
}

func TestValidation(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	for _, tc := range []struct {
		name, body, param string
		status            int
	}{
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, "model", 400},
		{"no messages", `{"model":"demo"}`, "messages", 400},
		{"empty messages", `{"model":"demo","messages":[]}`, "messages", 400},
		{"bad role", `{"model":"demo","messages":[{"role":"robot","content":"hi"}]}`, "messages[0].role", 400},
		{"bad content", `{"model":"demo","messages":[{"role":"user","content":42}]}`, "messages[0].content", 400},
		{"bad max_tokens", `{"model":"demo","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens", 400},
		{"not json", `{`, "", 400},
		{"too large", `{"model":"demo","messages":[{"role":"user","content":"` + strings.Repeat("a", simulator.MaxBodyBytes) + `"}]}`, "", 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(tc.body)))
			assert.Equal(t, tc.status, rec.Code)
			assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
			var body struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.NotEmpty(t, body.Error.Message)
			assert.Equal(t, "invalid_request_error", body.Error.Type)
			if tc.param != "" {
				require.NotNil(t, body.Error.Param)
				assert.Equal(t, tc.param, *body.Error.Param)
			}
		})
	}
}

func TestUnknownPath(t *testing.T) {
	rec := httptest.NewRecorder()
	simulator.New(simulator.Config{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/nope", nil))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	assert.Contains(t, rec.Body.String(), `"error"`)
}
