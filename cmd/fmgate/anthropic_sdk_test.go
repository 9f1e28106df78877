package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The official Anthropic SDK against the all-in-one stack: the model "demo" is served by an
// OpenAI-compatible endpoint (the simulator), so these tests show that a model behind any
// vendor serves Anthropic clients through /v1/messages.

func anthropicClient(s *stack, key string) anthropic.Client {
	return anthropic.NewClient(option.WithBaseURL(s.http), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func TestAnthropicSDK(t *testing.T) {
	s := startStack(t)
	client := anthropicClient(s, mainKey)
	prompt := "Tell me about gateways"
	want := "Simulated answer from demo. You said: " + prompt
	params := anthropic.MessageNewParams{
		Model:     "demo",
		MaxTokens: 256,
		System:    []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
	}

	t.Run("message", func(t *testing.T) {
		msg, err := client.Messages.New(t.Context(), params)
		require.NoError(t, err)
		assert.Regexp(t, `^msg_[0-9a-f]+$`, msg.ID)
		assert.Equal(t, anthropic.Model("demo"), msg.Model)
		require.Len(t, msg.Content, 1)
		assert.Equal(t, "text", msg.Content[0].Type)
		assert.Equal(t, want, msg.Content[0].Text)
		assert.Equal(t, anthropic.StopReasonEndTurn, msg.StopReason)
		// The simulator counts words: the system prompt and the prompt in, the answer out.
		assert.Equal(t, int64(2+4), msg.Usage.InputTokens)
		assert.Equal(t, int64(10), msg.Usage.OutputTokens)
	})

	t.Run("max tokens", func(t *testing.T) {
		p := params
		p.MaxTokens = 3
		msg, err := client.Messages.New(t.Context(), p)
		require.NoError(t, err)
		assert.Equal(t, anthropic.StopReasonMaxTokens, msg.StopReason)
		assert.Equal(t, "Simulated answer from", msg.Content[0].Text)
		assert.Equal(t, int64(3), msg.Usage.OutputTokens)
	})

	t.Run("stream", func(t *testing.T) {
		stream := client.Messages.NewStreaming(t.Context(), params)
		var msg anthropic.Message
		var deltas int
		for stream.Next() {
			ev := stream.Current()
			require.NoError(t, msg.Accumulate(ev))
			if ev.Type == "content_block_delta" {
				deltas++
			}
		}
		require.NoError(t, stream.Err())
		require.NoError(t, stream.Close())
		assert.Greater(t, deltas, 1, "the answer arrives in pieces")
		require.Len(t, msg.Content, 1)
		assert.Equal(t, want, msg.Content[0].Text)
		assert.Equal(t, anthropic.StopReasonEndTurn, msg.StopReason)
		assert.Equal(t, int64(6), msg.Usage.InputTokens)
		assert.Equal(t, int64(10), msg.Usage.OutputTokens)
		assert.Equal(t, anthropic.Model("demo"), msg.Model)
	})

	t.Run("tool round trip", func(t *testing.T) {
		tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
			Name:        "get_weather",
			Description: anthropic.String("The weather in a city"),
			InputSchema: anthropic.ToolInputSchemaParam{
				Properties: map[string]any{"city": map[string]any{"type": "string"}},
				Required:   []string{"city"},
			},
		}}}
		first := anthropic.MessageNewParams{
			Model: "demo", MaxTokens: 256, Tools: tools,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Please call get_weather for Paris"))},
		}
		msg, err := client.Messages.New(t.Context(), first)
		require.NoError(t, err)
		require.Equal(t, anthropic.StopReasonToolUse, msg.StopReason, "%+v", msg.Content)
		var call anthropic.ToolUseBlock
		for _, b := range msg.Content {
			if b.Type == "tool_use" {
				call = b.AsToolUse()
			}
		}
		require.Equal(t, "get_weather", call.Name)
		require.NotEmpty(t, call.ID)
		var input map[string]any
		require.NoError(t, json.Unmarshal(call.Input, &input))
		assert.IsType(t, "", input["city"], "the arguments follow the schema")

		// The same call, streamed, accumulates to the same tool_use block.
		stream := client.Messages.NewStreaming(t.Context(), first)
		var streamed anthropic.Message
		for stream.Next() {
			require.NoError(t, streamed.Accumulate(stream.Current()))
		}
		require.NoError(t, stream.Err())
		assert.Equal(t, anthropic.StopReasonToolUse, streamed.StopReason)
		require.NotEmpty(t, streamed.Content)
		last := streamed.Content[len(streamed.Content)-1]
		assert.Equal(t, "get_weather", last.Name)
		assert.JSONEq(t, string(call.Input), string(last.Input))

		second := first
		second.Messages = append(second.Messages, msg.ToParam(),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock(call.ID, "sunny, 21 degrees", false)))
		answer, err := client.Messages.New(t.Context(), second)
		require.NoError(t, err)
		assert.Equal(t, anthropic.StopReasonEndTurn, answer.StopReason)
		require.NotEmpty(t, answer.Content)
		assert.Equal(t, "Simulated answer from demo. Tool get_weather returned: sunny, 21 degrees", answer.Content[0].Text)
	})
}

func TestAnthropicSDKErrors(t *testing.T) {
	s := startStack(t)
	msg := func(model string) anthropic.MessageNewParams {
		return anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 16,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}
	}
	tests := []struct {
		name   string
		key    string
		model  string
		status int
		typ    string
	}{
		{"bad key", "fmg_not_a_key_0123456789abcdefghijklmnopqr", "demo", http.StatusUnauthorized, "authentication_error"},
		{"model not granted", mainKey, "restricted", http.StatusForbidden, "permission_error"},
		{"unknown model", mainKey, "nope", http.StatusNotFound, "not_found_error"},
		{"unapproved model", mainKey, "proposed-model", http.StatusBadRequest, "invalid_request_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, stream := range []bool{false, true} {
				client := anthropicClient(s, tt.key)
				var err error
				if stream {
					st := client.Messages.NewStreaming(t.Context(), msg(tt.model))
					for st.Next() {
					}
					err = st.Err()
				} else {
					_, err = client.Messages.New(t.Context(), msg(tt.model))
				}
				var apiErr *anthropic.Error
				require.ErrorAs(t, err, &apiErr, "stream %v", stream)
				assert.Equal(t, tt.status, apiErr.StatusCode, "stream %v", stream)
				assert.Equal(t, tt.typ, string(apiErr.Type()), "stream %v", stream)
			}
		})
	}

	t.Run("over the limit", func(t *testing.T) {
		client := anthropicClient(s, limitedKey)
		// The limited key may make two requests a minute.
		for range 2 {
			_, err := client.Messages.New(t.Context(), msg("demo"))
			require.NoError(t, err)
		}
		_, err := client.Messages.New(t.Context(), msg("demo"))
		var apiErr *anthropic.Error
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, http.StatusTooManyRequests, apiErr.StatusCode)
		assert.Equal(t, "rate_limit_error", string(apiErr.Type()))
		assert.NotEmpty(t, apiErr.Response.Header.Get("Retry-After"))
		assert.Contains(t, apiErr.RawJSON(), "limited-rpm")
	})

	t.Run("top_k is refused by name", func(t *testing.T) {
		p := msg("demo")
		p.TopK = anthropic.Int(5)
		client := anthropicClient(s, mainKey)
		_, err := client.Messages.New(t.Context(), p)
		var apiErr *anthropic.Error
		require.True(t, errors.As(err, &apiErr), "%v", err)
		assert.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
		assert.Contains(t, apiErr.RawJSON(), "top_k")
	})
}
