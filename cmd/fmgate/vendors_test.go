package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// Every vendor behind the gateway, through each of its ingresses: one model per vendor
// dialect, each served by an endpoint of that provider kind on the provider simulator, with
// credentials from the environment. The simulator names the upstream model in its answer
// and echoes the prompt, so each test sees which endpoint answered and what reached it.

const vendorResources = `
models:
  - {organization: acme, name: m-openai, display_name: OpenAI, vendor: openai, lifecycle: approved, endpoints: [ep-openai]}
  - {organization: acme, name: m-azure, display_name: Azure, vendor: azure, lifecycle: approved, endpoints: [ep-azure]}
  - {organization: acme, name: m-anthropic, display_name: Anthropic, vendor: anthropic, lifecycle: approved, endpoints: [ep-anthropic]}
  - {organization: acme, name: m-bedrock, display_name: Bedrock, vendor: bedrock, lifecycle: approved, endpoints: [ep-bedrock]}
  - {organization: acme, name: m-gemini, display_name: Gemini, vendor: gemini, lifecycle: approved, endpoints: [ep-gemini]}
  - {organization: acme, name: m-hidden, vendor: openai, lifecycle: approved, endpoints: [ep-openai]}
endpoints:
  - {organization: acme, id: ep-openai, provider: openai, base_url: "{SIM}/v1", upstream_model: up-openai, credential_ref: "env:FMGATE_TEST_VENDOR_KEY"}
  - {organization: acme, id: ep-azure, provider: azure_openai, base_url: "{SIM}", upstream_model: up-azure, api_version: "2024-10-21", credential_ref: "env:FMGATE_TEST_VENDOR_KEY"}
  - {organization: acme, id: ep-anthropic, provider: anthropic, base_url: "{SIM}", upstream_model: up-anthropic, credential_ref: "env:FMGATE_TEST_VENDOR_KEY"}
  - {organization: acme, id: ep-bedrock, provider: bedrock, base_url: "{BEDROCK}", upstream_model: up-bedrock, region: us-east-1, credential_ref: "env:FMGATE_TEST_AWS_CREDENTIALS"}
  - {organization: acme, id: ep-gemini, provider: gemini, base_url: "{SIM}", upstream_model: up-gemini, credential_ref: "env:FMGATE_TEST_VENDOR_KEY"}
api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
policies:
  - {organization: acme, id: allow-vendors, effect: allow, subjects: ["*"], models: [m-openai, m-azure, m-anthropic, m-bedrock, m-gemini], moderation_profile: default}
`

// vendor is one model of vendorResources.
type vendor struct {
	model    string // the gateway's name
	upstream string // the endpoint's upstream model, named in the simulator's answers
	// embeddings: the vendor has an embeddings API. Anthropic has none, and the Bedrock
	// adapter does not build Titan embeddings yet.
	embeddings bool
	// jsonSchema: the vendor honours a JSON-schema response format. Bedrock's Converse has
	// no response format, so its adapter refuses one.
	jsonSchema bool
	// embedTokens is the prompt tokens reported for the embedding inputs "first text" and
	// "second text here". The Gemini API reports none for embeddings, so the adapter estimates
	// one token per four bytes (3 + 4).
	embedTokens int64
}

var vendors = []vendor{
	{model: "m-openai", upstream: "up-openai", embeddings: true, jsonSchema: true, embedTokens: 5},
	{model: "m-azure", upstream: "up-azure", embeddings: true, jsonSchema: true, embedTokens: 5},
	{model: "m-anthropic", upstream: "up-anthropic", jsonSchema: true},
	{model: "m-bedrock", upstream: "up-bedrock"},
	{model: "m-gemini", upstream: "up-gemini", embeddings: true, jsonSchema: true, embedTokens: 7},
}

// answerOf is the simulator's answer from upstream to prompt.
// vendorPace spaces the simulator's streamed chunks as a vendor does, so that a streamed
// answer is seen arriving in pieces: the gateway merges only chunks that reach it together
// (a burst), never waiting for more.
const vendorPace = 3 * time.Millisecond

func answerOf(upstream, prompt string) string {
	return "Simulated answer from " + upstream + ". You said: " + prompt
}

func words(s ...string) int64 { return int64(len(strings.Fields(strings.Join(s, " ")))) }

func openAIClient(s *vendorStack) openai.Client {
	return openai.NewClient(option.WithBaseURL(s.http+"/v1"), option.WithAPIKey(mainKey), option.WithMaxRetries(0))
}

var weatherSchema = map[string]any{
	"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"},
}

// requireOpenAIError checks that err is the SDK's typed error with status and code, and that
// the message names want.
func requireOpenAIError(t *testing.T, err error, status int, code, want string) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	require.True(t, errors.As(err, &apiErr), "want an *openai.Error, got %v", err)
	require.Equal(t, status, apiErr.StatusCode, apiErr.RawJSON())
	assert.Equal(t, code, apiErr.Code, apiErr.RawJSON())
	assert.Contains(t, apiErr.Message, want, apiErr.RawJSON())
	return apiErr
}

func TestVendorsOpenAISDK(t *testing.T) {
	s := startVendorStack(t, vendorResources, simulator.Config{ChunkDelay: vendorPace})
	client := openAIClient(s)
	const system, prompt = "be brief", "hello there"

	for _, v := range vendors {
		t.Run(v.model, func(t *testing.T) {
			msgs := []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(system), openai.UserMessage(prompt)}

			t.Run("chat", func(t *testing.T) {
				comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: v.model, Messages: msgs})
				require.NoError(t, err)
				assert.Equal(t, v.model, comp.Model, "the caller sees its own model name")
				require.Len(t, comp.Choices, 1)
				assert.Equal(t, answerOf(v.upstream, prompt), comp.Choices[0].Message.Content)
				assert.Equal(t, "stop", comp.Choices[0].FinishReason)
				assert.Equal(t, words(system, prompt), comp.Usage.PromptTokens)
				assert.Equal(t, words(answerOf(v.upstream, prompt)), comp.Usage.CompletionTokens)
				assert.Equal(t, comp.Usage.PromptTokens+comp.Usage.CompletionTokens, comp.Usage.TotalTokens)
			})

			t.Run("chat stream", func(t *testing.T) {
				params := openai.ChatCompletionNewParams{Model: v.model, Messages: msgs}
				params.StreamOptions.IncludeUsage = openai.Bool(true)
				stream := client.Chat.Completions.NewStreaming(t.Context(), params)
				var acc openai.ChatCompletionAccumulator
				chunks, usageChunks := 0, 0
				for stream.Next() {
					chunk := stream.Current()
					chunks++
					if chunk.JSON.Usage.Valid() && chunk.Usage.TotalTokens > 0 {
						usageChunks++
						assert.Empty(t, chunk.Choices, "the usage chunk has no choices")
					}
					acc.AddChunk(chunk)
				}
				require.NoError(t, stream.Err())
				require.NoError(t, stream.Close())
				assert.Greater(t, chunks, 3, "the answer arrives in pieces")
				assert.Equal(t, 1, usageChunks, "one usage chunk, as include_usage asks")
				require.Len(t, acc.Choices, 1)
				assert.Equal(t, answerOf(v.upstream, prompt), acc.Choices[0].Message.Content)
				assert.Equal(t, "stop", acc.Choices[0].FinishReason)
				assert.Equal(t, words(system, prompt), acc.Usage.PromptTokens)
				assert.Equal(t, words(answerOf(v.upstream, prompt)), acc.Usage.CompletionTokens)
				assert.Equal(t, acc.Usage.PromptTokens+acc.Usage.CompletionTokens, acc.Usage.TotalTokens)
			})

			t.Run("tools", func(t *testing.T) {
				tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
					Name: "get_weather", Description: openai.String("The weather in a city"), Parameters: weatherSchema,
				})}
				ask := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("call get_weather for Paris")}
				comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: v.model, Messages: ask, Tools: tools})
				require.NoError(t, err)
				require.Len(t, comp.Choices, 1)
				require.Equal(t, "tool_calls", comp.Choices[0].FinishReason)
				require.Len(t, comp.Choices[0].Message.ToolCalls, 1)
				call := comp.Choices[0].Message.ToolCalls[0]
				assert.NotEmpty(t, call.ID)
				assert.Equal(t, "function", string(call.Type))
				assert.Equal(t, "get_weather", call.Function.Name)
				assert.JSONEq(t, `{"city":"call get_weather for Paris"}`, call.Function.Arguments)
				assert.Positive(t, comp.Usage.CompletionTokens)

				// The tool's result goes back with the call; the answer quotes it.
				ask = append(ask, comp.Choices[0].Message.ToParam(), openai.ToolMessage("18 degrees and sunny", call.ID))
				final, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: v.model, Messages: ask, Tools: tools})
				require.NoError(t, err)
				assert.Equal(t, "stop", final.Choices[0].FinishReason)
				assert.Empty(t, final.Choices[0].Message.ToolCalls)
				assert.Contains(t, final.Choices[0].Message.Content, "Simulated answer from "+v.upstream+".")
				// Gemini takes a function's result as an object: text goes as {"output": text}.
				assert.Contains(t, final.Choices[0].Message.Content, "Tool get_weather returned:")
				assert.Contains(t, final.Choices[0].Message.Content, "18 degrees and sunny")
				assert.Equal(t, words(final.Choices[0].Message.Content), final.Usage.CompletionTokens)

				// Streamed, the call arrives in pieces that accumulate to the same call.
				params := openai.ChatCompletionNewParams{Model: v.model, Messages: ask[:1], Tools: tools}
				params.StreamOptions.IncludeUsage = openai.Bool(true)
				stream := client.Chat.Completions.NewStreaming(t.Context(), params)
				var acc openai.ChatCompletionAccumulator
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				require.NoError(t, stream.Err())
				require.NoError(t, stream.Close())
				require.Len(t, acc.Choices, 1)
				assert.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
				require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
				assert.NotEmpty(t, acc.Choices[0].Message.ToolCalls[0].ID)
				assert.Equal(t, "get_weather", acc.Choices[0].Message.ToolCalls[0].Function.Name)
				assert.JSONEq(t, call.Function.Arguments, acc.Choices[0].Message.ToolCalls[0].Function.Arguments)
				assert.Equal(t, comp.Usage.CompletionTokens, acc.Usage.CompletionTokens)
			})

			t.Run("json schema", func(t *testing.T) {
				comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
					Model:    v.model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("describe Paris")},
					ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
						JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{
							Name:   "city",
							Strict: openai.Bool(true),
							Schema: map[string]any{
								"type": "object", "additionalProperties": false, "required": []string{"name", "population"},
								"properties": map[string]any{"name": map[string]any{"type": "string"}, "population": map[string]any{"type": "integer"}},
							},
						},
					}},
				})
				if !v.jsonSchema {
					// A documented refusal: the vendor cannot constrain its output, and the
					// gateway says so rather than answering free text.
					requireOpenAIError(t, err, http.StatusBadRequest, "unsupported_by_vendor", "response_format")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, "stop", comp.Choices[0].FinishReason)
				// Every property, strings carrying the answer, integers its token count.
				text := answerOf(v.upstream, "describe Paris")
				want, err := json.Marshal(map[string]any{"name": text, "population": words(text)})
				require.NoError(t, err)
				assert.JSONEq(t, string(want), comp.Choices[0].Message.Content)
				assert.Equal(t, int64(2), comp.Usage.PromptTokens)
				assert.Positive(t, comp.Usage.CompletionTokens)
			})

			t.Run("embeddings", func(t *testing.T) {
				resp, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
					Model: v.model,
					Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second text here"}},
				})
				if !v.embeddings {
					requireOpenAIError(t, err, http.StatusBadRequest, "unsupported_by_vendor", "embeddings")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, v.model, resp.Model)
				require.Len(t, resp.Data, 2)
				for i, d := range resp.Data {
					assert.Equal(t, int64(i), d.Index)
					assert.Len(t, d.Embedding, simulator.DefaultEmbeddingDimensions)
				}
				assert.NotEqual(t, resp.Data[0].Embedding, resp.Data[1].Embedding)
				// The simulator's vector depends on the text alone, so every vendor returns
				// the same one; OpenAI's is the reference.
				ref, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
					Model: "m-openai", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("second text here")},
				})
				require.NoError(t, err)
				assert.InDeltaSlice(t, ref.Data[0].Embedding, resp.Data[1].Embedding, 1e-6)
				assert.Equal(t, v.embedTokens, resp.Usage.PromptTokens)

				dims, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
					Model: v.model, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("first text")}, Dimensions: openai.Int(4),
				})
				require.NoError(t, err)
				require.Len(t, dims.Data, 1)
				assert.Len(t, dims.Data[0].Embedding, 4)
			})
		})
	}

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(t.Context())
		require.NoError(t, err)
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		assert.ElementsMatch(t, []string{"m-openai", "m-azure", "m-anthropic", "m-bedrock", "m-gemini"}, ids, "only granted models")

		for _, v := range vendors {
			m, err := client.Models.Get(t.Context(), v.model)
			require.NoError(t, err)
			assert.Equal(t, v.model, m.ID)
		}
		_, err = client.Models.Get(t.Context(), "m-hidden")
		requireOpenAIError(t, err, http.StatusNotFound, "model_not_found", "m-hidden")
	})
}

func TestVendorsAnthropicSDK(t *testing.T) {
	s := startVendorStack(t, vendorResources, simulator.Config{ChunkDelay: vendorPace})
	client := anthropic.NewClient(anthropicoption.WithBaseURL(s.http), anthropicoption.WithAPIKey(mainKey), anthropicoption.WithMaxRetries(0))
	const system, prompt = "Be brief.", "Tell me about gateways"
	params := func(model string) anthropic.MessageNewParams {
		return anthropic.MessageNewParams{
			Model:     anthropic.Model(model),
			MaxTokens: 256,
			System:    []anthropic.TextBlockParam{{Text: system}},
			Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
		}
	}

	for _, v := range vendors {
		t.Run(v.model, func(t *testing.T) {
			t.Run("message", func(t *testing.T) {
				msg, err := client.Messages.New(t.Context(), params(v.model))
				require.NoError(t, err)
				assert.Equal(t, anthropic.Model(v.model), msg.Model)
				assert.Equal(t, "assistant", string(msg.Role))
				require.Len(t, msg.Content, 1)
				assert.Equal(t, "text", msg.Content[0].Type)
				assert.Equal(t, answerOf(v.upstream, prompt), msg.Content[0].Text)
				assert.Equal(t, anthropic.StopReasonEndTurn, msg.StopReason)
				assert.Equal(t, words(system, prompt), msg.Usage.InputTokens)
				assert.Equal(t, words(answerOf(v.upstream, prompt)), msg.Usage.OutputTokens)
			})

			t.Run("max tokens", func(t *testing.T) {
				p := params(v.model)
				p.MaxTokens = 3
				msg, err := client.Messages.New(t.Context(), p)
				require.NoError(t, err)
				assert.Equal(t, anthropic.StopReasonMaxTokens, msg.StopReason)
				require.Len(t, msg.Content, 1)
				assert.Equal(t, "Simulated answer from", msg.Content[0].Text)
				assert.Equal(t, int64(3), msg.Usage.OutputTokens)
			})

			t.Run("stream", func(t *testing.T) {
				stream := client.Messages.NewStreaming(t.Context(), params(v.model))
				var msg anthropic.Message
				var deltas int
				var types []string
				for stream.Next() {
					ev := stream.Current()
					require.NoError(t, msg.Accumulate(ev))
					types = append(types, ev.Type)
					if ev.Type == "content_block_delta" {
						deltas++
					}
				}
				require.NoError(t, stream.Err())
				require.NoError(t, stream.Close())
				require.NotEmpty(t, types)
				assert.Equal(t, "message_start", types[0])
				assert.Equal(t, "message_stop", types[len(types)-1])
				assert.Greater(t, deltas, 1, "the answer arrives in pieces")
				require.Len(t, msg.Content, 1)
				assert.Equal(t, answerOf(v.upstream, prompt), msg.Content[0].Text)
				assert.Equal(t, anthropic.StopReasonEndTurn, msg.StopReason)
				assert.Equal(t, words(system, prompt), msg.Usage.InputTokens)
				assert.Equal(t, words(answerOf(v.upstream, prompt)), msg.Usage.OutputTokens)
				assert.Equal(t, anthropic.Model(v.model), msg.Model)
			})

			t.Run("stream tool use", func(t *testing.T) {
				p := params(v.model)
				p.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("call get_weather for Paris"))}
				p.Tools = []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
					Name: "get_weather", InputSchema: anthropic.ToolInputSchemaParam{
						Properties: weatherSchema["properties"], Required: []string{"city"},
					},
				}}}
				stream := client.Messages.NewStreaming(t.Context(), p)
				var msg anthropic.Message
				for stream.Next() {
					require.NoError(t, msg.Accumulate(stream.Current()))
				}
				require.NoError(t, stream.Err())
				require.NoError(t, stream.Close())
				assert.Equal(t, anthropic.StopReasonToolUse, msg.StopReason)
				require.Len(t, msg.Content, 1)
				assert.Equal(t, "tool_use", msg.Content[0].Type)
				assert.Equal(t, "get_weather", msg.Content[0].Name)
				assert.NotEmpty(t, msg.Content[0].ID)
				assert.JSONEq(t, `{"city":"call get_weather for Paris"}`, string(msg.Content[0].Input))
			})
		})
	}
}

func TestVendorsGRPC(t *testing.T) {
	s := startVendorStack(t, vendorResources, simulator.Config{ChunkDelay: vendorPace})
	ctx := withKey(t.Context(), mainKey)
	const prompt = "hello there"
	weather, err := json.Marshal(weatherSchema)
	require.NoError(t, err)
	tools := &typev1.GenerationParams{Tools: []*typev1.Tool{{Name: "get_weather", Description: "The weather in a city", ParametersJson: string(weather)}}}

	for _, v := range vendors {
		t.Run(v.model, func(t *testing.T) {
			t.Run("generate", func(t *testing.T) {
				resp, err := s.client.Generate(ctx, &gatewayv1.GenerateRequest{Model: v.model, Messages: userMessage(prompt)})
				require.NoError(t, err)
				assert.Equal(t, v.model, resp.GetModel())
				assert.Equal(t, typev1.Role_ROLE_ASSISTANT, resp.GetMessage().GetRole())
				require.Len(t, resp.GetMessage().GetContent(), 1)
				assert.Equal(t, answerOf(v.upstream, prompt), resp.GetMessage().GetContent()[0].GetText())
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, resp.GetFinishReason())
				assert.Equal(t, words(prompt), resp.GetUsage().GetInputTokens())
				assert.Equal(t, words(answerOf(v.upstream, prompt)), resp.GetUsage().GetOutputTokens())
				assert.Equal(t, resp.GetUsage().GetInputTokens()+resp.GetUsage().GetOutputTokens(), resp.GetUsage().GetTotalTokens())
			})

			t.Run("stream", func(t *testing.T) {
				stream, err := s.client.StreamGenerate(ctx, &gatewayv1.StreamGenerateRequest{Model: v.model, Messages: userMessage(prompt)})
				require.NoError(t, err)
				var text strings.Builder
				var last *gatewayv1.StreamGenerateResponse
				events := 0
				for {
					ev, err := stream.Recv()
					if err == io.EOF {
						break
					}
					require.NoError(t, err)
					events++
					text.WriteString(ev.GetTextDelta())
					last = ev
				}
				assert.Greater(t, events, 2, "the answer arrives in several events")
				assert.Equal(t, answerOf(v.upstream, prompt), text.String())
				require.NotNil(t, last)
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, last.GetFinishReason())
				assert.Equal(t, words(prompt), last.GetUsage().GetInputTokens())
				assert.Equal(t, words(answerOf(v.upstream, prompt)), last.GetUsage().GetOutputTokens())
			})

			t.Run("stream tool call", func(t *testing.T) {
				stream, err := s.client.StreamGenerate(ctx, &gatewayv1.StreamGenerateRequest{
					Model: v.model, Messages: userMessage("call get_weather for Paris"), Params: tools,
				})
				require.NoError(t, err)
				var id, name string
				var args strings.Builder
				var last *gatewayv1.StreamGenerateResponse
				for {
					ev, err := stream.Recv()
					if err == io.EOF {
						break
					}
					require.NoError(t, err)
					assert.Empty(t, ev.GetTextDelta())
					for _, d := range ev.GetToolCalls() {
						assert.Zero(t, d.GetIndex(), "one call")
						id += d.GetId()
						name += d.GetName()
						args.WriteString(d.GetArgumentsDelta())
					}
					last = ev
				}
				require.NotNil(t, last)
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, last.GetFinishReason())
				assert.NotEmpty(t, id)
				assert.Equal(t, "get_weather", name)
				assert.JSONEq(t, `{"city":"call get_weather for Paris"}`, args.String())
				assert.Positive(t, last.GetUsage().GetOutputTokens())

				// The result goes back as a tool message; the answer quotes it.
				msgs := append(userMessage("call get_weather for Paris"),
					&typev1.Message{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: id, Name: name, ArgumentsJson: args.String()}}},
					&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: id, Name: name, Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: "18 degrees and sunny"}}}})
				resp, err := s.client.Generate(ctx, &gatewayv1.GenerateRequest{Model: v.model, Messages: msgs, Params: tools})
				require.NoError(t, err)
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, resp.GetFinishReason())
				require.NotEmpty(t, resp.GetMessage().GetContent())
				assert.Contains(t, resp.GetMessage().GetContent()[0].GetText(), "Tool get_weather returned:")
				assert.Contains(t, resp.GetMessage().GetContent()[0].GetText(), "18 degrees and sunny")
			})

			t.Run("json schema", func(t *testing.T) {
				resp, err := s.client.Generate(ctx, &gatewayv1.GenerateRequest{Model: v.model, Messages: userMessage("describe Paris"), Params: &typev1.GenerationParams{
					ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "city",
						SchemaJson: `{"type":"object","properties":{"name":{"type":"string"}},"required":["name"],"additionalProperties":false}`},
				}})
				if !v.jsonSchema {
					st := status.Convert(err)
					require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
					assert.Equal(t, "UNSUPPORTED_BY_VENDOR", reason(st))
					assert.Contains(t, st.Message(), "response_format")
					return
				}
				require.NoError(t, err)
				assert.JSONEq(t, `{"name":"`+answerOf(v.upstream, "describe Paris")+`"}`, resp.GetMessage().GetContent()[0].GetText())
			})

			t.Run("embed", func(t *testing.T) {
				resp, err := s.client.Embed(ctx, &gatewayv1.EmbedRequest{Model: v.model, Inputs: []string{"first text", "second text here"}})
				if !v.embeddings {
					st := status.Convert(err)
					require.Equal(t, codes.InvalidArgument, st.Code(), st.Message())
					assert.Equal(t, "UNSUPPORTED_BY_VENDOR", reason(st))
					assert.Contains(t, st.Message(), "embeddings")
					return
				}
				require.NoError(t, err)
				assert.Equal(t, v.model, resp.GetModel())
				require.Len(t, resp.GetEmbeddings(), 2)
				for i, e := range resp.GetEmbeddings() {
					assert.Equal(t, int32(i), e.GetIndex())
					assert.Len(t, e.GetValues(), simulator.DefaultEmbeddingDimensions)
				}
				assert.NotEqual(t, resp.GetEmbeddings()[0].GetValues(), resp.GetEmbeddings()[1].GetValues())
				assert.Equal(t, v.embedTokens, resp.GetUsage().GetInputTokens())
			})
		})
	}

	t.Run("list models", func(t *testing.T) {
		resp, err := s.client.ListModels(ctx, &gatewayv1.ListModelsRequest{})
		require.NoError(t, err)
		var names []string
		for _, m := range resp.GetModels() {
			names = append(names, m.GetName())
		}
		assert.ElementsMatch(t, []string{"m-openai", "m-azure", "m-anthropic", "m-bedrock", "m-gemini"}, names)
		_, err = s.client.GetModel(ctx, &gatewayv1.GetModelRequest{Name: "m-hidden"})
		assert.Equal(t, codes.NotFound, status.Code(err))
	})
}
