package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/simulator"
)

// sdkResources: "demo" and "embed" are granted to everyone; "restricted" to no one; the
// limited key may make one request a minute.
const sdkResources = `
models:
  - {organization: acme, name: demo, display_name: Demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
  - {organization: acme, name: embed, display_name: Embed, vendor: sim, lifecycle: approved, endpoints: [sim]}
  - {organization: acme, name: restricted, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "%s/v1", upstream_model: demo, region: local}
api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
  - {organization: acme, id: limited, subject: "svc:batch", kind: service_account, team: ops, secret_env: FMGATE_TEST_LIMITED_KEY}
policies:
  - {organization: acme, id: allow-demo, effect: allow, subjects: ["*"], models: [demo, embed], moderation_profile: default}
limits:
  - {name: limited-rpm, organization: acme, api_key: limited, scope: api_key, kind: requests, amount: 1, window: 1m}
`

// startSDKStack runs `fmgate serve` all in one with sdkResources, its endpoint on the
// provider simulator, and returns the base URL of its HTTP surface.
func startSDKStack(t *testing.T) string {
	t.Helper()
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	t.Cleanup(sim.Close)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(sdkResources, sim.URL)), 0o600))
	t.Setenv("FMGATE_TEST_MAIN_KEY", mainKey)
	t.Setenv("FMGATE_TEST_LIMITED_KEY", limitedKey)

	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--http.addr=" + httpAddr, "--grpc.addr=" + grpcAddr, "--resources=" + res, "--log.level=error"}, io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(wait):
			t.Error("fmgate did not stop")
		}
	})
	base := "http://" + httpAddr
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, wait, tick, "fmgate did not become ready")
	return base
}

func sdkClient(base, key string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(base + "/v1"), option.WithAPIKey(key), option.WithMaxRetries(0),
	}, opts...)...)
}

func TestOpenAISDK(t *testing.T) {
	base := startSDKStack(t)
	client := sdkClient(base, mainKey)
	const prompt = "hello there"

	t.Run("chat", func(t *testing.T) {
		comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:    "demo",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage(prompt)},
		})
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(comp.ID, "chatcmpl-"), comp.ID)
		assert.Equal(t, "demo", comp.Model)
		require.Len(t, comp.Choices, 1)
		assert.Contains(t, comp.Choices[0].Message.Content, "You said: "+prompt)
		assert.Equal(t, "stop", comp.Choices[0].FinishReason)
		assert.Positive(t, comp.Usage.PromptTokens)
		assert.Equal(t, int64(len(strings.Fields(comp.Choices[0].Message.Content))), comp.Usage.CompletionTokens)
		assert.Equal(t, comp.Usage.PromptTokens+comp.Usage.CompletionTokens, comp.Usage.TotalTokens)
	})

	t.Run("chat stream", func(t *testing.T) {
		full, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "demo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
		})
		require.NoError(t, err)
		params := openai.ChatCompletionNewParams{Model: "demo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
		params.StreamOptions.IncludeUsage = openai.Bool(true)
		stream := client.Chat.Completions.NewStreaming(t.Context(), params)
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			chunks++
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.NoError(t, stream.Close())
		assert.Greater(t, chunks, 3, "the answer arrives in pieces")
		require.Len(t, acc.Choices, 1)
		assert.Equal(t, full.Choices[0].Message.Content, acc.Choices[0].Message.Content)
		assert.Equal(t, "stop", acc.Choices[0].FinishReason)
		assert.Equal(t, full.Usage.TotalTokens, acc.Usage.TotalTokens)
		assert.Positive(t, acc.Usage.CompletionTokens)
	})

	t.Run("tools", func(t *testing.T) {
		tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
			Name:        "get_weather",
			Description: openai.String("The weather in a city"),
			Parameters: shared.FunctionParameters{
				"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"},
			},
		})}
		msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("call get_weather for Paris")}
		comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "demo", Messages: msgs, Tools: tools})
		require.NoError(t, err)
		require.Equal(t, "tool_calls", comp.Choices[0].FinishReason, "the simulator answers with a tool call")
		require.Len(t, comp.Choices[0].Message.ToolCalls, 1)
		call := comp.Choices[0].Message.ToolCalls[0]
		assert.Equal(t, "get_weather", call.Function.Name)
		assert.NotEmpty(t, call.ID)
		var args map[string]any
		require.NoError(t, json.Unmarshal([]byte(call.Function.Arguments), &args))
		assert.Contains(t, args, "city")

		msgs = append(msgs, comp.Choices[0].Message.ToParam(), openai.ToolMessage("18 degrees and sunny", call.ID))
		final, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "demo", Messages: msgs, Tools: tools})
		require.NoError(t, err)
		assert.Equal(t, "stop", final.Choices[0].FinishReason)
		assert.Contains(t, final.Choices[0].Message.Content, "18 degrees and sunny")

		// Streamed, the call arrives in pieces that accumulate to the same call.
		stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
			Model: "demo", Messages: msgs[:1], Tools: tools,
		})
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		require.NoError(t, stream.Err())
		require.Len(t, acc.Choices, 1)
		assert.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
		require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
		assert.Equal(t, "get_weather", acc.Choices[0].Message.ToolCalls[0].Function.Name)
		assert.JSONEq(t, call.Function.Arguments, acc.Choices[0].Message.ToolCalls[0].Function.Arguments)
	})

	t.Run("json schema", func(t *testing.T) {
		comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:    "demo",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("describe Paris")},
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
					Name:   "city",
					Strict: openai.Bool(true),
					Schema: map[string]any{
						"type": "object", "additionalProperties": false, "required": []string{"name", "summary"},
						"properties": map[string]any{"name": map[string]any{"type": "string"}, "summary": map[string]any{"type": "string"}},
					},
				},
			}},
		})
		require.NoError(t, err)
		var doc struct {
			Name    *string `json:"name"`
			Summary *string `json:"summary"`
		}
		require.NoError(t, json.Unmarshal([]byte(comp.Choices[0].Message.Content), &doc), comp.Choices[0].Message.Content)
		assert.NotNil(t, doc.Name)
		assert.NotNil(t, doc.Summary)
	})

	t.Run("embeddings", func(t *testing.T) {
		resp, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model: "embed",
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second text here"}},
		})
		require.NoError(t, err)
		assert.Equal(t, "embed", resp.Model)
		require.Len(t, resp.Data, 2)
		for i, d := range resp.Data {
			assert.Equal(t, int64(i), d.Index)
			assert.NotEmpty(t, d.Embedding)
		}
		assert.NotEqual(t, resp.Data[0].Embedding, resp.Data[1].Embedding)
		assert.Equal(t, int64(5), resp.Usage.PromptTokens)

		// base64, as the Python SDK asks by default, decodes to the same vector.
		b64, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("first text")},
			EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
		})
		require.NoError(t, err)
		require.Len(t, b64.Data, 1)
		assert.InDeltaSlice(t, resp.Data[0].Embedding, b64.Data[0].Embedding, 1e-6)

		// Inputs are screened like prompts: the address is masked before the vendor embeds it.
		both, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"mail bob@example.com", "mail [EMAIL]"}},
		})
		require.NoError(t, err)
		require.Len(t, both.Data, 2)
		assert.Equal(t, both.Data[1].Embedding, both.Data[0].Embedding)
	})

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(t.Context())
		require.NoError(t, err)
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
			assert.Equal(t, "sim", m.OwnedBy)
		}
		assert.Equal(t, []string{"demo", "embed"}, ids, "only granted models")

		m, err := client.Models.Get(t.Context(), "demo")
		require.NoError(t, err)
		assert.Equal(t, "demo", m.ID)
		assert.Equal(t, "model", string(m.Object))

		_, err = client.Models.Get(t.Context(), "restricted")
		assertAPIError(t, err, http.StatusNotFound, "model")
	})
}

// assertAPIError checks that err is the SDK's typed error with status and param.
func assertAPIError(t *testing.T, err error, status int, param string) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, status, apiErr.StatusCode, apiErr.RawJSON())
	assert.Equal(t, param, apiErr.Param, apiErr.RawJSON())
	assert.NotEmpty(t, apiErr.Message)
	return apiErr
}

func TestOpenAISDKErrors(t *testing.T) {
	base := startSDKStack(t)
	hi := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	chat := func(key, model string, opts ...option.RequestOption) error {
		c := sdkClient(base, key)
		_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: model, Messages: hi}, opts...)
		return err
	}

	t.Run("401 bad key", func(t *testing.T) {
		e := assertAPIError(t, chat("fmg_not_a_key_0123456789abcdefghijklmnopqr", "demo"), http.StatusUnauthorized, "")
		assert.Equal(t, "invalid_api_key", e.Code)
	})
	t.Run("403 not granted", func(t *testing.T) {
		assertAPIError(t, chat(mainKey, "restricted"), http.StatusForbidden, "")
	})
	t.Run("404 unknown model", func(t *testing.T) {
		e := assertAPIError(t, chat(mainKey, "nope"), http.StatusNotFound, "model")
		assert.Equal(t, "model_not_found", e.Code)
	})
	t.Run("400 bad temperature", func(t *testing.T) {
		c := sdkClient(base, mainKey)
		_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "demo", Messages: hi, Temperature: openai.Float(7),
		})
		assertAPIError(t, err, http.StatusBadRequest, "temperature")
	})
	t.Run("400 api_base", func(t *testing.T) {
		e := assertAPIError(t, chat(mainKey, "demo", option.WithJSONSet("api_base", "http://169.254.169.254")), http.StatusBadRequest, "api_base")
		assert.Equal(t, "forbidden_parameter", e.Code)
	})
	t.Run("400 nested credential", func(t *testing.T) {
		assertAPIError(t, chat(mainKey, "demo", option.WithJSONSet("messages.0.extra_body", map[string]any{"x": 1})), http.StatusBadRequest, "messages[0].extra_body")
	})
	t.Run("400 routing header", func(t *testing.T) {
		assertAPIError(t, chat(mainKey, "demo", option.WithHeader("X-Base-Url", "http://169.254.169.254")), http.StatusBadRequest, "X-Base-Url")
	})
	t.Run("429 with Retry-After", func(t *testing.T) {
		require.NoError(t, chat(limitedKey, "demo"))
		e := assertAPIError(t, chat(limitedKey, "demo"), http.StatusTooManyRequests, "")
		assert.Equal(t, "rate_limit_exceeded", e.Code)
		assert.NotEmpty(t, e.Response.Header.Get("Retry-After"))
		assert.Contains(t, e.Message, "limited-rpm")
	})
	t.Run("stream refused before it starts", func(t *testing.T) {
		c := sdkClient(base, mainKey)
		stream := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "restricted", Messages: hi})
		assert.False(t, stream.Next())
		assertAPIError(t, stream.Err(), http.StatusForbidden, "")
	})
	t.Run("raw error shape", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/chat/completions",
			bytes.NewReader([]byte(`{"model":"demo","messages":[{"role":"user","content":"hi"}],"logprobs":true}`)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+mainKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.JSONEq(t, `{"error":{"message":"unknown parameter: 'logprobs' is not supported by fmgate","type":"invalid_request_error","param":"logprobs","code":"unknown_parameter"}}`, string(body))
	})
}
