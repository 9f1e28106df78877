package simulator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genai"

	"github.com/fmgate/fmgate/internal/simulator"
)

// geminiEnv are the variables genai.NewClient reads to fill the configuration it is not given.
var geminiEnv = []string{
	"GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_VERTEX_BASE_URL",
	"GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_CLOUD_PROJECT",
	"GOOGLE_CLOUD_LOCATION", "GOOGLE_CLOUD_REGION",
}

// newGeminiClient starts sim on loopback and returns the official SDK's client for it, with
// no environment credentials in reach. It also returns the server's URL for raw requests.
func newGeminiClient(t *testing.T, cfg simulator.Config, apiKey string) (*genai.Client, *simulator.Simulator, string) {
	t.Helper()
	for _, v := range geminiEnv {
		t.Setenv(v, "")
	}
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	c, err := genai.NewClient(t.Context(), &genai.ClientConfig{
		APIKey: apiKey, Backend: genai.BackendGeminiAPI, HTTPClient: hc,
		HTTPOptions: genai.HTTPOptions{BaseURL: srv.URL},
	})
	require.NoError(t, err)
	return c, sim, srv.URL
}

func geminiUser(text string) []*genai.Content {
	return []*genai.Content{genai.NewContentFromText(text, genai.RoleUser)}
}

func geminiWeatherTool() *genai.Tool {
	return &genai.Tool{FunctionDeclarations: []*genai.FunctionDeclaration{{
		Name: "get_weather", Description: "Weather in a city",
		ParametersJsonSchema: map[string]any{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required":   []string{"city"},
		},
	}, {Name: "get_time", Description: "Local time"}}}
}

// geminiStream collects a stream: the chunks, their text, the last finish reason and usage.
type geminiStreamed struct {
	chunks []*genai.GenerateContentResponse
	text   string
	finish genai.FinishReason
	usage  *genai.GenerateContentResponseUsageMetadata
}

func geminiCollect(ctx context.Context, c *genai.Client, model string, contents []*genai.Content, cfg *genai.GenerateContentConfig) (geminiStreamed, error) {
	var s geminiStreamed
	for chunk, err := range c.Models.GenerateContentStream(ctx, model, contents, cfg) {
		if err != nil {
			return s, err
		}
		s.chunks = append(s.chunks, chunk)
		s.text += chunk.Text()
		if len(chunk.Candidates) > 0 && chunk.Candidates[0].FinishReason != "" {
			s.finish = chunk.Candidates[0].FinishReason
		}
		if chunk.UsageMetadata != nil {
			s.usage = chunk.UsageMetadata
		}
	}
	return s, nil
}

func TestGeminiGenerateContent(t *testing.T) {
	c, sim, _ := newGeminiClient(t, simulator.Config{APIKey: key}, key)
	for _, tc := range []struct {
		name   string
		system string
		prompt string
		want   string
		input  int32
	}{
		{"plain", "", "Hello   there\nfriend", "Simulated answer from demo. You said: Hello there friend", 3},
		{"system instruction", "You are terse.", "Hi", "Simulated answer from demo. You said: Hi", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cfg *genai.GenerateContentConfig
			if tc.system != "" {
				cfg = &genai.GenerateContentConfig{SystemInstruction: genai.NewContentFromText(tc.system, "")}
			}
			res, err := c.Models.GenerateContent(t.Context(), "demo", geminiUser(tc.prompt), cfg)
			require.NoError(t, err)
			require.Len(t, res.Candidates, 1)
			cand := res.Candidates[0]
			assert.Equal(t, tc.want, res.Text())
			assert.Equal(t, genai.RoleModel, cand.Content.Role)
			assert.Equal(t, genai.FinishReasonStop, cand.FinishReason)
			assert.Equal(t, "demo", res.ModelVersion)
			assert.True(t, strings.HasPrefix(res.ResponseID, "sim-"), res.ResponseID)
			words := int32(len(strings.Fields(tc.want)))
			assert.Equal(t, &genai.GenerateContentResponseUsageMetadata{
				PromptTokenCount: tc.input, CandidatesTokenCount: words, TotalTokenCount: tc.input + words,
			}, res.UsageMetadata)
		})
	}
	assert.EqualValues(t, 2, sim.Stats().Requests)
}

func TestGeminiLimits(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{}, key)
	for _, tc := range []struct {
		name   string
		cfg    *genai.GenerateContentConfig
		want   string
		finish genai.FinishReason
	}{
		{"max tokens", &genai.GenerateContentConfig{MaxOutputTokens: 3}, "Simulated answer from", genai.FinishReasonMaxTokens},
		{"stop sequence", &genai.GenerateContentConfig{StopSequences: []string{" You"}}, "Simulated answer from demo.", genai.FinishReasonStop},
		{"two candidates", &genai.GenerateContentConfig{CandidateCount: 2}, "Simulated answer from demo. You said: hi", genai.FinishReasonStop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Models.GenerateContent(t.Context(), "demo", geminiUser("hi"), tc.cfg)
			require.NoError(t, err)
			assert.Equal(t, tc.want, res.Text())
			n := max(int(tc.cfg.CandidateCount), 1)
			require.Len(t, res.Candidates, n)
			assert.Equal(t, tc.finish, res.Candidates[n-1].FinishReason)
			assert.EqualValues(t, n*len(strings.Fields(tc.want)), res.UsageMetadata.CandidatesTokenCount)

			s, err := geminiCollect(t.Context(), c, "demo", geminiUser("hi"), tc.cfg)
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.text, "the stream says the same")
			assert.Equal(t, tc.finish, s.finish)
		})
	}
}

func TestGeminiStream(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{APIKey: key}, key)
	cfg := &genai.GenerateContentConfig{SystemInstruction: genai.NewContentFromText("Be brief.", "")}
	whole, err := c.Models.GenerateContent(t.Context(), "demo", geminiUser("tell me more"), cfg)
	require.NoError(t, err)

	s, err := geminiCollect(t.Context(), c, "demo", geminiUser("tell me more"), cfg)
	require.NoError(t, err)
	assert.Equal(t, whole.Text(), s.text)
	assert.Len(t, s.chunks, len(strings.Fields(whole.Text())), "one chunk per token")
	assert.Equal(t, genai.FinishReasonStop, s.finish)
	for _, ch := range s.chunks[:len(s.chunks)-1] {
		assert.Empty(t, ch.Candidates[0].FinishReason, "only the last chunk finishes")
	}
	assert.Equal(t, whole.UsageMetadata, s.usage, "the last chunk carries the whole usage")
	assert.EqualValues(t, 1, s.chunks[0].UsageMetadata.CandidatesTokenCount, "usage so far")
}

func TestGeminiStreamWire(t *testing.T) {
	_, _, url := newGeminiClient(t, simulator.Config{}, key)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		url+"/v1beta/models/demo:streamGenerateContent?alt=sse&key="+key,
		strings.NewReader(`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`))
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	require.Len(t, events, 7)
	for _, e := range events {
		data, ok := strings.CutPrefix(e, "data: ")
		require.True(t, ok, e)
		var v map[string]any
		require.NoError(t, json.Unmarshal([]byte(data), &v), "each event is one JSON document")
		assert.Contains(t, v, "candidates")
	}
	assert.NotContains(t, string(body), "[DONE]")
}

func TestGeminiFunctionCallRoundTrip(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{}, key)
	cfg := &genai.GenerateContentConfig{Tools: []*genai.Tool{geminiWeatherTool()}}
	contents := geminiUser("Please call get_weather for Paris")
	res, err := c.Models.GenerateContent(t.Context(), "demo", contents, cfg)
	require.NoError(t, err)
	calls := res.FunctionCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, "get_weather", calls[0].Name)
	assert.Equal(t, map[string]any{"city": "Please call get_weather for Paris"}, calls[0].Args, "arguments follow the schema")
	assert.Empty(t, calls[0].ID, "Gemini API calls have no id")
	assert.Equal(t, genai.FinishReasonStop, res.Candidates[0].FinishReason)
	assert.Empty(t, res.Text())

	s, err := geminiCollect(t.Context(), c, "demo", contents, cfg)
	require.NoError(t, err)
	require.Len(t, s.chunks, 1, "a call comes whole")
	assert.Equal(t, calls, s.chunks[0].FunctionCalls())
	assert.Equal(t, genai.FinishReasonStop, s.finish)

	contents = append(contents, res.Candidates[0].Content,
		genai.NewContentFromFunctionResponse("get_weather", map[string]any{"temp": 21}, genai.RoleUser))
	res, err = c.Models.GenerateContent(t.Context(), "demo", contents, cfg)
	require.NoError(t, err)
	assert.Empty(t, res.FunctionCalls())
	assert.Equal(t, `Simulated answer from demo. Tool get_weather returned: {"temp":21}`, res.Text())
}

func TestGeminiFunctionCallingModes(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{}, key)
	schemaTool := &genai.Tool{FunctionDeclarations: []*genai.FunctionDeclaration{{
		Name: "lookup",
		Parameters: &genai.Schema{Type: genai.TypeObject, Required: []string{"n"}, Properties: map[string]*genai.Schema{
			"n": {Type: genai.TypeInteger, Minimum: genai.Ptr(10.0)},
		}},
	}}}
	mode := func(m genai.FunctionCallingConfigMode, names ...string) *genai.ToolConfig {
		return &genai.ToolConfig{FunctionCallingConfig: &genai.FunctionCallingConfig{Mode: m, AllowedFunctionNames: names}}
	}
	for _, tc := range []struct {
		name   string
		tools  []*genai.Tool
		config *genai.ToolConfig
		prompt string
		call   string
		args   map[string]any
	}{
		{"auto without cue answers", []*genai.Tool{geminiWeatherTool()}, nil, "hello", "", nil},
		{"auto with a tool's name", []*genai.Tool{geminiWeatherTool()}, nil, "what is get_time", "get_time", nil},
		{"none", []*genai.Tool{geminiWeatherTool()}, mode(genai.FunctionCallingConfigModeNone), "call get_weather", "", nil},
		{"any", []*genai.Tool{geminiWeatherTool()}, mode(genai.FunctionCallingConfigModeAny), "hello", "get_weather", map[string]any{"city": "hello"}},
		{"any with one name", []*genai.Tool{geminiWeatherTool()}, mode(genai.FunctionCallingConfigModeAny, "get_time"), "hello", "get_time", nil},
		{"gemini schema", []*genai.Tool{schemaTool}, mode(genai.FunctionCallingConfigModeAny), "a b c", "lookup", map[string]any{"n": 10.0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Models.GenerateContent(t.Context(), "demo", geminiUser(tc.prompt),
				&genai.GenerateContentConfig{Tools: tc.tools, ToolConfig: tc.config})
			require.NoError(t, err)
			calls := res.FunctionCalls()
			if tc.call == "" {
				assert.Empty(t, calls)
				assert.NotEmpty(t, res.Text())
				return
			}
			require.Len(t, calls, 1)
			assert.Equal(t, tc.call, calls[0].Name)
			assert.Equal(t, tc.args, calls[0].Args)
		})
	}
}

func TestGeminiJSONMode(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{}, key)
	schema := map[string]any{
		"type":       "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}, "count": map[string]any{"type": "integer"}},
		"required":   []string{"city", "count"},
	}
	for _, tc := range []struct {
		name string
		cfg  *genai.GenerateContentConfig
		want map[string]any
	}{
		{"json object", &genai.GenerateContentConfig{ResponseMIMEType: "application/json"},
			map[string]any{"answer": "Simulated answer from demo. You said: two words"}},
		{"json schema", &genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseJsonSchema: schema},
			map[string]any{"city": "Simulated answer from demo. You said: two words", "count": 8.0}},
		{"gemini schema", &genai.GenerateContentConfig{ResponseMIMEType: "application/json", ResponseSchema: &genai.Schema{
			Type: genai.TypeObject, Properties: map[string]*genai.Schema{"ok": {Type: genai.TypeBoolean}},
		}}, map[string]any{"ok": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Models.GenerateContent(t.Context(), "demo", geminiUser("two words"), tc.cfg)
			require.NoError(t, err)
			var got map[string]any
			require.NoError(t, json.Unmarshal([]byte(res.Text()), &got), res.Text())
			assert.Equal(t, tc.want, got)

			s, err := geminiCollect(t.Context(), c, "demo", geminiUser("two words"), tc.cfg)
			require.NoError(t, err)
			assert.Equal(t, res.Text(), s.text)
		})
	}
}

func TestGeminiEmbedContent(t *testing.T) {
	c, sim, _ := newGeminiClient(t, simulator.Config{APIKey: key}, key)
	contents := []*genai.Content{genai.NewContentFromText("first text", ""), genai.NewContentFromText("second text", "")}
	res, err := c.Models.EmbedContent(t.Context(), "embed-sim", contents, nil)
	require.NoError(t, err)
	require.Len(t, res.Embeddings, 2)
	assert.Len(t, res.Embeddings[0].Values, simulator.DefaultEmbeddingDimensions)
	assert.NotEqual(t, res.Embeddings[0].Values, res.Embeddings[1].Values)

	again, err := c.Models.EmbedContent(t.Context(), "embed-sim", contents[:1],
		&genai.EmbedContentConfig{OutputDimensionality: genai.Ptr[int32](64)})
	require.NoError(t, err)
	require.Len(t, again.Embeddings, 1)
	v := again.Embeddings[0].Values
	require.Len(t, v, 64, "outputDimensionality is honoured")
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	assert.InDelta(t, 1, math.Sqrt(norm), 1e-5, "unit length")

	same, err := c.Models.EmbedContent(t.Context(), "embed-sim", contents[:1],
		&genai.EmbedContentConfig{OutputDimensionality: genai.Ptr[int32](64)})
	require.NoError(t, err)
	assert.Equal(t, v, same.Embeddings[0].Values, "deterministic")
	assert.EqualValues(t, 3, sim.Stats().Requests)

	_, err = c.Models.EmbedContent(t.Context(), "embed-sim", contents[:1],
		&genai.EmbedContentConfig{OutputDimensionality: genai.Ptr[int32](simulator.MaxEmbeddingDimensions + 1)})
	var apiErr genai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadRequest, apiErr.Code)
}

func TestGeminiModels(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{Models: []string{"demo", "other"}}, key)
	var names []string
	for m, err := range c.Models.All(t.Context()) {
		require.NoError(t, err)
		names = append(names, m.Name)
	}
	assert.Equal(t, []string{"models/demo", "models/other"}, names)

	m, err := c.Models.Get(t.Context(), "other", nil)
	require.NoError(t, err)
	assert.Equal(t, "models/other", m.Name)
	_, err = c.Models.Get(t.Context(), "missing", nil)
	var apiErr genai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusNotFound, apiErr.Code)
	assert.Equal(t, "NOT_FOUND", apiErr.Status)
}

func TestGeminiAuthentication(t *testing.T) {
	c, sim, url := newGeminiClient(t, simulator.Config{APIKey: key}, "wrong-key")
	_, err := c.Models.GenerateContent(t.Context(), "demo", geminiUser("hi"), nil)
	var apiErr genai.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadRequest, apiErr.Code, "Gemini answers a wrong key with 400")
	assert.Equal(t, "INVALID_ARGUMENT", apiErr.Status)
	require.Len(t, apiErr.Details, 1)
	assert.Equal(t, "API_KEY_INVALID", apiErr.Details[0]["reason"])
	assert.NotContains(t, apiErr.Error(), "wrong-key")

	for name, tc := range map[string]struct {
		query  string
		header string
		status int
	}{
		"no key":           {"", "", http.StatusForbidden},
		"key in the query": {"?key=" + key, "", http.StatusOK},
		"key header":       {"", key, http.StatusOK},
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v1beta/models/demo:generateContent"+tc.query,
				strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}]}`))
			require.NoError(t, err)
			if tc.header != "" {
				req.Header.Set("x-goog-api-key", tc.header)
			}
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer res.Body.Close()
			assert.Equal(t, tc.status, res.StatusCode)
		})
	}
	assert.EqualValues(t, 2, sim.Stats().Requests, "rejected requests are not counted")
}

func TestGeminiStatusFaults(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{Faults: map[string]simulator.Fault{
		"limited":    simulator.FailWith(http.StatusTooManyRequests, 2500*time.Millisecond),
		"broken":     simulator.FailWith(http.StatusInternalServerError, 0),
		"overloaded": simulator.FailWith(http.StatusServiceUnavailable, 0),
	}}, key)
	for _, tc := range []struct {
		model, status string
		code          int
		retryDelay    string
	}{
		{"limited", "RESOURCE_EXHAUSTED", 429, "3s"},
		{"broken", "INTERNAL", 500, ""},
		{"overloaded", "UNAVAILABLE", 503, ""},
	} {
		t.Run(tc.model, func(t *testing.T) {
			for _, call := range []func() error{
				func() error {
					_, err := c.Models.GenerateContent(t.Context(), tc.model, geminiUser("hi"), nil)
					return err
				},
				func() error {
					_, err := geminiCollect(t.Context(), c, tc.model, geminiUser("hi"), nil)
					return err
				},
				func() error {
					_, err := c.Models.EmbedContent(t.Context(), tc.model, geminiUser("hi"), nil)
					return err
				},
			} {
				err := call()
				var apiErr genai.APIError
				require.ErrorAs(t, err, &apiErr)
				assert.Equal(t, tc.code, apiErr.Code)
				assert.Equal(t, tc.status, apiErr.Status)
				if tc.retryDelay == "" {
					assert.Empty(t, apiErr.Details)
					continue
				}
				require.Len(t, apiErr.Details, 1)
				assert.Equal(t, "type.googleapis.com/google.rpc.RetryInfo", apiErr.Details[0]["@type"])
				assert.Equal(t, tc.retryDelay, apiErr.Details[0]["retryDelay"])
			}
		})
	}
}

func TestGeminiRetryAfterHeader(t *testing.T) {
	_, _, url := newGeminiClient(t, simulator.Config{Faults: map[string]simulator.Fault{
		"limited": simulator.FailWith(http.StatusTooManyRequests, 2*time.Second),
	}}, key)
	res, err := http.Post(url+"/v1beta/models/limited:generateContent", "application/json",
		strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}]}`))
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	assert.Equal(t, "2", res.Header.Get("Retry-After"))
}

func TestGeminiCutStreamIsAnError(t *testing.T) {
	c, _, _ := newGeminiClient(t, simulator.Config{Faults: map[string]simulator.Fault{
		"flaky": simulator.CutAfter(2), "gone": simulator.CutAfter(0),
	}}, key)
	s, err := geminiCollect(t.Context(), c, "flaky", geminiUser("a long enough prompt"), nil)
	require.Error(t, err)
	assert.Len(t, s.chunks, 2)
	assert.Empty(t, s.finish, "no finish reason before the cut")
	var apiErr genai.APIError
	assert.False(t, errors.As(err, &apiErr), "a transport error, not an API error")

	_, err = geminiCollect(t.Context(), c, "gone", geminiUser("hi"), nil)
	require.Error(t, err)
	_, err = c.Models.GenerateContent(t.Context(), "flaky", geminiUser("hi"), nil)
	require.Error(t, err, "a cut without a stream drops the connection")
}

func TestGeminiHangEndsWhenClientLeaves(t *testing.T) {
	c, sim, _ := newGeminiClient(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}}, key)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Models.GenerateContent(ctx, "stuck", geminiUser("hi"), nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return sim.Stats().Canceled == 1 }, 5*time.Second, time.Millisecond)
}

func TestGeminiValidation(t *testing.T) {
	c, _, url := newGeminiClient(t, simulator.Config{}, key)
	call := genai.NewContentFromFunctionCall("get_weather", map[string]any{"city": "Paris"}, genai.RoleModel)
	reply := genai.NewContentFromFunctionResponse("get_weather", map[string]any{"temp": 21}, genai.RoleUser)
	for _, tc := range []struct {
		name     string
		contents []*genai.Content
		cfg      *genai.GenerateContentConfig
		message  string
	}{
		{"no contents", nil, nil, "contents is not specified"},
		{"bad role", []*genai.Content{genai.NewContentFromText("hi", "assistant")}, nil, "valid role"},
		{"response without call", append(geminiUser("hi"), reply), nil, "immediately after a function call turn"},
		{"responses fewer than calls", append(geminiUser("hi"), &genai.Content{Role: genai.RoleModel,
			Parts: append(call.Parts, call.Parts...)}, reply), nil, "number of function response parts"},
		{"names without ANY", geminiUser("hi"), &genai.GenerateContentConfig{Tools: []*genai.Tool{geminiWeatherTool()},
			ToolConfig: &genai.ToolConfig{FunctionCallingConfig: &genai.FunctionCallingConfig{
				Mode: genai.FunctionCallingConfigModeAuto, AllowedFunctionNames: []string{"get_time"}}}}, "allowed_function_names"},
		{"schema without JSON", geminiUser("hi"), &genai.GenerateContentConfig{ResponseJsonSchema: map[string]any{"type": "object"}}, "response_mime_type"},
		{"temperature", geminiUser("hi"), &genai.GenerateContentConfig{Temperature: genai.Ptr[float32](3)}, "temperature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Models.GenerateContent(t.Context(), "demo", tc.contents, tc.cfg)
			var apiErr genai.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, http.StatusBadRequest, apiErr.Code)
			assert.Equal(t, "INVALID_ARGUMENT", apiErr.Status)
			assert.Contains(t, apiErr.Message, tc.message)
		})
	}

	t.Run("unknown field", func(t *testing.T) {
		res, err := http.Post(url+"/v1beta/models/demo:generateContent", "application/json",
			strings.NewReader(`{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxTokens":3}}`))
		require.NoError(t, err)
		defer res.Body.Close()
		assert.Equal(t, http.StatusBadRequest, res.StatusCode)
		var body struct {
			Error struct {
				Message, Status string
			}
		}
		require.NoError(t, json.NewDecoder(bufio.NewReader(res.Body)).Decode(&body))
		assert.Contains(t, body.Error.Message, `Unknown name "maxTokens"`)
		assert.Equal(t, "INVALID_ARGUMENT", body.Error.Status)
	})
}
