package simulator_test

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/simulator"
)

var oaiWeatherTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
	Name:        "get_weather",
	Description: openai.String("Weather in a city"),
	Parameters: shared.FunctionParameters{
		"type": "object",
		"properties": map[string]any{
			"city":  map[string]any{"type": "string"},
			"days":  map[string]any{"type": "integer", "minimum": 1, "maximum": 3},
			"units": map[string]any{"type": "string", "enum": []string{"celsius", "fahrenheit"}},
		},
		"required":             []string{"city", "days", "units"},
		"additionalProperties": false,
	},
	Strict: openai.Bool(true),
})

var oaiTimeTool = openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_time"})

func oaiToolParams(prompt string, choice openai.ChatCompletionToolChoiceOptionUnionParam) openai.ChatCompletionNewParams {
	p := chatParams("demo", prompt)
	p.Tools = []openai.ChatCompletionToolUnionParam{oaiTimeTool, oaiWeatherTool}
	p.ToolChoice = choice
	return p
}

func TestToolChoiceRule(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	auto := openai.ChatCompletionToolChoiceOptionUnionParam{}
	mode := func(m string) openai.ChatCompletionToolChoiceOptionUnionParam {
		return openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String(m)}
	}
	named := openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_weather"})
	for _, tc := range []struct {
		name, prompt string
		choice       openai.ChatCompletionToolChoiceOptionUnionParam
		tool         string // "" for a text answer
	}{
		{"named", "hello", named, "get_weather"},
		{"required", "hello", mode("required"), "get_time"},
		{"required prefers the mentioned tool", "use get_weather", mode("required"), "get_weather"},
		{"auto mentions a tool", "what does get_weather say for Paris", auto, "get_weather"},
		{"auto says call", "Please CALL something", auto, "get_time"},
		{"auto without a cue", "hello there", auto, ""},
		{"call inside a word is no cue", "recall this", mode("auto"), ""},
		{"none", "call get_weather", mode("none"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := c.Chat.Completions.New(t.Context(), oaiToolParams(tc.prompt, tc.choice))
			require.NoError(t, err)
			ch := res.Choices[0]
			if tc.tool == "" {
				assert.Equal(t, "stop", ch.FinishReason)
				assert.Empty(t, ch.Message.ToolCalls)
				assert.Contains(t, ch.Message.Content, "You said: "+tc.prompt)
				return
			}
			assert.Equal(t, "tool_calls", ch.FinishReason)
			assert.Empty(t, ch.Message.Content)
			require.Len(t, ch.Message.ToolCalls, 1)
			call := ch.Message.ToolCalls[0]
			assert.Equal(t, "function", call.Type)
			assert.True(t, strings.HasPrefix(call.ID, "call_"), call.ID)
			assert.Equal(t, tc.tool, call.Function.Name)
			var args map[string]any
			require.NoError(t, json.Unmarshal([]byte(call.Function.Arguments), &args))
			if tc.tool == "get_weather" {
				assert.Equal(t, tc.prompt, args["city"], "strings carry the prompt")
				assert.Equal(t, "celsius", args["units"], "the first enum value")
				days, ok := args["days"].(float64)
				require.True(t, ok, "days is a number")
				assert.True(t, days >= 1 && days <= 3 && days == math.Trunc(days), "an integer within bounds: %v", days)
			} else {
				assert.Empty(t, args, "a tool without parameters gets {}")
			}
			assert.Equal(t, int64(1+1), res.Usage.CompletionTokens-int64(strings.Count(call.Function.Arguments, " ")),
				"the tool's name and its arguments")
		})
	}
}

func TestToolRoundTrip(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	p := oaiToolParams("call get_weather for Oslo", openai.ChatCompletionToolChoiceOptionUnionParam{})
	res, err := c.Chat.Completions.New(t.Context(), p)
	require.NoError(t, err)
	require.Equal(t, "tool_calls", res.Choices[0].FinishReason)
	call := res.Choices[0].Message.ToolCalls[0]

	p.Messages = append(p.Messages, res.Choices[0].Message.ToParam(), openai.ToolMessage("Sunny, 21 degrees", call.ID))
	res, err = c.Chat.Completions.New(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, "stop", res.Choices[0].FinishReason)
	assert.Empty(t, res.Choices[0].Message.ToolCalls, "after a tool result, auto answers in text")
	assert.Equal(t, "Simulated answer from demo. Tool get_weather returned: Sunny, 21 degrees", res.Choices[0].Message.Content)

	p.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
	res, err = c.Chat.Completions.New(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, "tool_calls", res.Choices[0].FinishReason, "required calls again")
}

func TestToolCallStream(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	p := oaiToolParams("call get_weather for Zürich and its lakes", openai.ChatCompletionToolChoiceOptionUnionParam{})
	plain, err := c.Chat.Completions.New(t.Context(), p)
	require.NoError(t, err)
	want := plain.Choices[0].Message.ToolCalls[0]

	p.StreamOptions.IncludeUsage = openai.Bool(true)
	stream := c.Chat.Completions.NewStreaming(t.Context(), p)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	var argPieces int
	var first *openai.ChatCompletionChunkChoiceDeltaToolCall
	for stream.Next() {
		chunk := stream.Current()
		require.True(t, acc.AddChunk(chunk))
		if len(chunk.Choices) == 0 {
			continue
		}
		for _, d := range chunk.Choices[0].Delta.ToolCalls {
			if first == nil {
				first = &d
				continue
			}
			assert.Empty(t, d.ID, "the id comes once")
			assert.Empty(t, d.Function.Name, "the name comes once")
			assert.LessOrEqual(t, len(d.Function.Arguments), 8)
			argPieces++
		}
	}
	require.NoError(t, stream.Err())
	require.NotNil(t, first)
	assert.NotEmpty(t, first.ID)
	assert.Equal(t, "get_weather", first.Function.Name)
	assert.Equal(t, "function", first.Type)
	assert.Greater(t, argPieces, 2, "arguments come in pieces")

	require.Len(t, acc.Choices, 1)
	assert.Equal(t, "tool_calls", acc.Choices[0].FinishReason)
	require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
	got := acc.Choices[0].Message.ToolCalls[0]
	assert.Equal(t, want.Function.Name, got.Function.Name)
	assert.Equal(t, want.Function.Arguments, got.Function.Arguments)
	assert.True(t, json.Valid([]byte(got.Function.Arguments)))
	assert.Equal(t, plain.Usage.CompletionTokens, acc.Usage.CompletionTokens)
}

func TestResponseFormats(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"title":  map[string]any{"type": "string", "maxLength": 10},
			"score":  map[string]any{"type": "number"},
			"ok":     map[string]any{"type": "boolean"},
			"tags":   map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			"author": map[string]any{"$ref": "#/$defs/person"},
			"note":   map[string]any{"type": []string{"string", "null"}},
		},
		"required":             []string{"title", "score", "ok", "tags", "author", "note"},
		"additionalProperties": false,
		"$defs": map[string]any{"person": map[string]any{
			"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}, "required": []string{"name"},
		}},
	}
	jsonObject := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}}
	jsonSchema := openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
		JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "review", Schema: schema, Strict: openai.Bool(true)},
	}}
	for _, tc := range []struct {
		name  string
		rf    openai.ChatCompletionNewParamsResponseFormatUnion
		check func(t *testing.T, doc map[string]any)
	}{
		{"json_object", jsonObject, func(t *testing.T, doc map[string]any) {
			assert.Equal(t, "Simulated answer from demo. You said: reply in JSON", doc["answer"])
		}},
		{"json_schema", jsonSchema, func(t *testing.T, doc map[string]any) {
			assert.Len(t, doc, 6)
			assert.Equal(t, "Simulated ", doc["title"], "maxLength")
			assert.IsType(t, float64(0), doc["score"])
			assert.Equal(t, true, doc["ok"])
			assert.IsType(t, []any{}, doc["tags"])
			author, ok := doc["author"].(map[string]any)
			require.True(t, ok, "$ref resolved to an object")
			assert.IsType(t, "", author["name"])
			assert.IsType(t, "", doc["note"])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := chatParams("demo", "reply in JSON")
			p.ResponseFormat = tc.rf
			res, err := c.Chat.Completions.New(t.Context(), p)
			require.NoError(t, err)
			var doc map[string]any
			require.NoError(t, json.Unmarshal([]byte(res.Choices[0].Message.Content), &doc), res.Choices[0].Message.Content)
			tc.check(t, doc)

			stream := c.Chat.Completions.NewStreaming(t.Context(), p)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			require.NoError(t, stream.Err())
			assert.Equal(t, res.Choices[0].Message.Content, acc.Choices[0].Message.Content)
		})
	}
}

func TestStopSequences(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	for _, tc := range []struct {
		name  string
		stop  openai.ChatCompletionNewParamsStopUnion
		want  string
		limit int64
	}{
		{"string", openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("You")}, "Simulated answer from demo. ", 0},
		{"earliest of many", openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"said", "from"}}, "Simulated answer ", 0},
		{"mid-word", openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"swer"}}, "Simulated an", 0},
		{"absent", openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("zzz")}, "Simulated answer from demo. You said: stop here", 0},
		{"stop before length", openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("answer")}, "Simulated ", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := chatParams("demo", "stop here")
			p.Stop = tc.stop
			if tc.limit > 0 {
				p.MaxCompletionTokens = openai.Int(tc.limit)
			}
			res, err := c.Chat.Completions.New(t.Context(), p)
			require.NoError(t, err)
			assert.Equal(t, tc.want, res.Choices[0].Message.Content)
			assert.Equal(t, "stop", res.Choices[0].FinishReason)
			assert.Equal(t, int64(len(strings.Fields(tc.want))), res.Usage.CompletionTokens)

			stream := c.Chat.Completions.NewStreaming(t.Context(), p)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			require.NoError(t, stream.Err())
			assert.Equal(t, tc.want, acc.Choices[0].Message.Content)
		})
	}
}

func TestSamplingParamsAccepted(t *testing.T) {
	c, _ := newClient(t, simulator.Config{}, "")
	p := chatParams("demo", "hi")
	p.Seed = openai.Int(42)
	p.User = openai.String("user-7")
	p.Temperature = openai.Float(2)
	p.TopP = openai.Float(0)
	p.FrequencyPenalty = openai.Float(-2)
	p.PresencePenalty = openai.Float(2)
	p.N = openai.Int(1)
	p.Messages = append([]openai.ChatCompletionMessageParamUnion{openai.DeveloperMessage("Be kind.")}, p.Messages...)
	res, err := c.Chat.Completions.New(t.Context(), p)
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from demo. You said: hi", res.Choices[0].Message.Content)
	assert.Equal(t, int64(2+3+1), res.Usage.PromptTokens, "developer, system and user words")
}

func TestChatValidation(t *testing.T) {
	sim := simulator.New(simulator.Config{})
	user := `"messages":[{"role":"user","content":"hi"}]`
	tools := `"tools":[{"type":"function","function":{"name":"f"}}]`
	for _, tc := range []struct{ name, body, param string }{
		{"n above 1", `{"model":"m","n":2,` + user + `}`, "n"},
		{"n below 1", `{"model":"m","n":0,` + user + `}`, "n"},
		{"temperature high", `{"model":"m","temperature":2.5,` + user + `}`, "temperature"},
		{"temperature negative", `{"model":"m","temperature":-0.1,` + user + `}`, "temperature"},
		{"top_p high", `{"model":"m","top_p":1.5,` + user + `}`, "top_p"},
		{"frequency_penalty", `{"model":"m","frequency_penalty":3,` + user + `}`, "frequency_penalty"},
		{"presence_penalty", `{"model":"m","presence_penalty":-3,` + user + `}`, "presence_penalty"},
		{"temperature type", `{"model":"m","temperature":"hot",` + user + `}`, "temperature"},
		{"five stops", `{"model":"m","stop":["a","b","c","d","e"],` + user + `}`, "stop"},
		{"stop type", `{"model":"m","stop":3,` + user + `}`, "stop"},
		{"tool_choice without tools", `{"model":"m","tool_choice":"auto",` + user + `}`, "tool_choice"},
		{"unknown tool_choice", `{"model":"m","tool_choice":"sometimes",` + tools + `,` + user + `}`, "tool_choice"},
		{"named tool not offered", `{"model":"m","tool_choice":{"type":"function","function":{"name":"g"}},` + tools + `,` + user + `}`, "tool_choice"},
		{"bad tool name", `{"model":"m","tools":[{"type":"function","function":{"name":"has space"}}],` + user + `}`, "tools[0].function.name"},
		{"bad tool type", `{"model":"m","tools":[{"type":"retrieval","function":{"name":"f"}}],` + user + `}`, "tools[0].type"},
		{"parameters not an object", `{"model":"m","tools":[{"type":"function","function":{"name":"f","parameters":[1]}}],` + user + `}`, "tools[0].function.parameters"},
		{"tool result without a call", `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"x","content":"r"}]}`, "messages[1].role"},
		{"call without a result", `{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"user","content":"and?"}]}`, "messages.[1].role"},
		{"image in system", `{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"hi"}]}`, "messages[0].content[0].type"},
		{"bad image url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"data url not an image", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:text/plain;base64,aGk="}}]}]}`, "messages[0].content[0].image_url.url"},
		{"unknown part", `{"model":"m","messages":[{"role":"user","content":[{"type":"video"}]}]}`, "messages[0].content[0].type"},
		{"json_object without json", `{"model":"m","response_format":{"type":"json_object"},` + user + `}`, "messages"},
		{"json_schema without name", `{"model":"m","response_format":{"type":"json_schema","json_schema":{"schema":{}}},` + user + `}`, "response_format.json_schema.name"},
		{"unknown format", `{"model":"m","response_format":{"type":"yaml"},` + user + `}`, "response_format.type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(tc.body)))
			assertOpenAIParamError(t, rec, tc.param)
		})
	}
	assert.Zero(t, sim.Stats().Requests, "refused requests never reach the model")
}

func assertOpenAIParamError(t *testing.T, rec *httptest.ResponseRecorder, param string) {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
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
	require.NotNil(t, body.Error.Param, rec.Body.String())
	assert.Equal(t, param, *body.Error.Param)
}

func oaiNorm(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func TestEmbeddings(t *testing.T) {
	c, sim := newClient(t, simulator.Config{APIKey: key}, key)
	embed := func(t *testing.T, p openai.EmbeddingNewParams) *openai.CreateEmbeddingResponse {
		t.Helper()
		res, err := c.Embeddings.New(t.Context(), p)
		require.NoError(t, err)
		return res
	}
	one := embed(t, openai.EmbeddingNewParams{Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello world")}})
	assert.Equal(t, "list", string(one.Object))
	assert.Equal(t, "embed", one.Model)
	require.Len(t, one.Data, 1)
	assert.Len(t, one.Data[0].Embedding, simulator.DefaultEmbeddingDimensions)
	assert.InDelta(t, 1, oaiNorm(one.Data[0].Embedding), 1e-6, "unit length")
	assert.Equal(t, int64(2), one.Usage.PromptTokens)
	assert.Equal(t, int64(2), one.Usage.TotalTokens)

	many := embed(t, openai.EmbeddingNewParams{
		Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a b c", "hello world"}},
		User: openai.String("u-1"),
	})
	require.Len(t, many.Data, 2)
	for i, d := range many.Data {
		assert.Equal(t, int64(i), d.Index)
		assert.Equal(t, "embedding", string(d.Object))
	}
	assert.Equal(t, one.Data[0].Embedding, many.Data[1].Embedding, "deterministic: the same text gives the same vector")
	assert.NotEqual(t, many.Data[0].Embedding, many.Data[1].Embedding)
	assert.Equal(t, int64(5), many.Usage.PromptTokens)

	short := embed(t, openai.EmbeddingNewParams{
		Model: "embed", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hello world")},
		Dimensions: openai.Int(3), EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
	})
	require.Len(t, short.Data[0].Embedding, 3, "base64 decoded by the SDK")
	assert.InDelta(t, 1, oaiNorm(short.Data[0].Embedding), 1e-6)
	scale := oaiNorm(one.Data[0].Embedding[:3])
	for i, x := range short.Data[0].Embedding {
		assert.InDelta(t, one.Data[0].Embedding[i]/scale, x, 1e-6, "a shorter vector is a rescaled prefix")
	}
	assert.Equal(t, int64(3), sim.Stats().Requests)

	wide, err := simulator.New(simulator.Config{EmbeddingDimensions: 16}), error(nil)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	wide.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(`{"model":"e","input":"x"}`)))
	require.Equal(t, http.StatusOK, rec.Code)
	var body struct {
		Data []struct {
			Embedding []float64 `json:"embedding"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.Len(t, body.Data[0].Embedding, 16, "Config.EmbeddingDimensions")
}

func TestEmbeddingsValidation(t *testing.T) {
	sim := simulator.New(simulator.Config{Faults: map[string]simulator.Fault{"busy": simulator.FailWith(http.StatusServiceUnavailable, 0)}})
	for _, tc := range []struct{ name, body, param string }{
		{"no model", `{"input":"x"}`, "model"},
		{"no input", `{"model":"e"}`, "input"},
		{"token array", `{"model":"e","input":[1,2,3]}`, "input"},
		{"token arrays", `{"model":"e","input":[[1,2],[3]]}`, "input"},
		{"empty array", `{"model":"e","input":[]}`, "input"},
		{"empty string", `{"model":"e","input":["a",""]}`, "input"},
		{"zero dimensions", `{"model":"e","input":"x","dimensions":0}`, "dimensions"},
		{"too many dimensions", `{"model":"e","input":"x","dimensions":99999}`, "dimensions"},
		{"bad encoding", `{"model":"e","input":"x","encoding_format":"hex"}`, "encoding_format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			sim.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(tc.body)))
			assertOpenAIParamError(t, rec, tc.param)
		})
	}
	rec := httptest.NewRecorder()
	sim.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/embeddings", strings.NewReader(`{"model":"busy","input":"x"}`)))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "faults apply to embeddings")
}

// newAzureSDKClient returns an official SDK client configured for Azure OpenAI against sim on
// loopback HTTP.
func newAzureSDKClient(t *testing.T, sim *simulator.Simulator, apiKey string) openai.Client {
	t.Helper()
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return openai.NewClient(
		azure.WithEndpoint(srv.URL, "2024-10-21"),
		azure.WithAPIKey(apiKey),
		azure.WithUnsafeAllowHTTP(), // loopback only, as the SDK enforces
		option.WithMaxRetries(0),
	)
}

func TestAzure(t *testing.T) {
	sim := simulator.New(simulator.Config{APIKey: key})
	c := newAzureSDKClient(t, sim, key)

	res, err := c.Chat.Completions.New(t.Context(), chatParams("my-deployment", "hi Azure"))
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from my-deployment. You said: hi Azure", res.Choices[0].Message.Content)

	p := oaiToolParams("call get_weather", openai.ChatCompletionToolChoiceOptionUnionParam{})
	p.Model = "my-deployment"
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	stream := c.Chat.Completions.NewStreaming(t.Context(), p)
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	var filterChunk bool
	for stream.Next() {
		chunk := stream.Current()
		if chunk.ID == "" && len(chunk.Choices) == 0 {
			filterChunk = true // Azure's prompt filter report
			assert.Contains(t, chunk.RawJSON(), "prompt_filter_results")
			continue
		}
		require.True(t, acc.AddChunk(chunk))
	}
	require.NoError(t, stream.Err())
	assert.True(t, filterChunk)
	require.Len(t, acc.Choices[0].Message.ToolCalls, 1)
	assert.Equal(t, "get_weather", acc.Choices[0].Message.ToolCalls[0].Function.Name)

	emb, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
		Model: "embed-deployment", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}},
	})
	require.NoError(t, err)
	assert.Len(t, emb.Data, 2)
	assert.Equal(t, "embed-deployment", emb.Model)

	wrong := newAzureSDKClient(t, sim, "wrong")
	_, err = wrong.Chat.Completions.New(t.Context(), chatParams("my-deployment", "hi"))
	var apiErr *openai.Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusUnauthorized, apiErr.StatusCode)
	assert.NotContains(t, apiErr.Error(), "wrong")

	for name, tc := range map[string]struct {
		path, apiKey string
		status       int
	}{
		"no api-version":        {"/openai/deployments/d/chat/completions", key, http.StatusBadRequest},
		"bearer is not api-key": {"/openai/deployments/d/embeddings?api-version=2024-10-21", "", http.StatusUnauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, tc.path, strings.NewReader(`{"input":"x","messages":[{"role":"user","content":"hi"}]}`))
			if tc.apiKey != "" {
				req.Header.Set("api-key", tc.apiKey)
			} else {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			sim.ServeHTTP(rec, req)
			assert.Equal(t, tc.status, rec.Code)
			assert.Contains(t, rec.Body.String(), `"code"`)
		})
	}
}
