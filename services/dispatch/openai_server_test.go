package dispatch_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

func forecastTool() *typev1.Tool {
	return &typev1.Tool{
		Name: "get_forecast", Description: "Forecast for a city", Strict: true,
		ParametersJson: `{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer","minimum":1,"maximum":7}},` +
			`"required":["city","days"],"additionalProperties":false}`,
	}
}

func textOf(m *typev1.Message) string {
	var b strings.Builder
	for _, c := range m.GetContent() {
		b.WriteString(c.GetText())
	}
	return b.String()
}

// reassemble joins streamed tool-call pieces by index, as a client would.
func reassemble(t *testing.T, got []*dispatchv1.StreamGenerateResponse) []*typev1.ToolCall {
	t.Helper()
	var calls []*typev1.ToolCall
	for _, m := range got {
		for _, d := range m.GetToolCalls() {
			i := int(d.GetIndex())
			for len(calls) <= i {
				calls = append(calls, &typev1.ToolCall{})
			}
			c := calls[i]
			if d.GetId() != "" {
				assert.Empty(t, c.GetId(), "the id comes with the first piece only")
				c.Id = d.GetId()
			}
			if d.GetName() != "" {
				assert.Empty(t, c.GetName(), "the name comes with the first piece only")
				c.Name = d.GetName()
			}
			c.ArgumentsJson += d.GetArgumentsDelta()
		}
	}
	return calls
}

func TestOpenAIToolRoundTrip(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	params := &typev1.GenerationParams{Tools: []*typev1.Tool{forecastTool()}}

	req := generateRequest("Please call get_forecast for Oslo", "ep-1")
	req.Params = params
	res, err := h.client.Generate(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.GetFinishReason())
	require.Len(t, res.GetMessage().GetToolCalls(), 1)
	call := res.GetMessage().GetToolCalls()[0]
	assert.NotEmpty(t, call.GetId())
	assert.Equal(t, "get_forecast", call.GetName())
	var args struct {
		City *string  `json:"city"`
		Days *float64 `json:"days"`
	}
	require.NoError(t, json.Unmarshal([]byte(call.GetArgumentsJson()), &args))
	require.NotNil(t, args.City, "required property city")
	require.NotNil(t, args.Days, "required property days")
	assert.Equal(t, "Please call get_forecast for Oslo", *args.City)
	assert.True(t, *args.Days >= 1 && *args.Days <= 7 && *args.Days == math.Trunc(*args.Days))

	// The caller runs the tool and sends its result back with the call.
	req.Messages = append(req.Messages, res.GetMessage(), &typev1.Message{
		Role: typev1.Role_ROLE_TOOL, ToolCallId: call.GetId(),
		Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: "Rain all week"}}},
	})
	res, err = h.client.Generate(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.GetFinishReason())
	assert.Empty(t, res.GetMessage().GetToolCalls())
	assert.Equal(t, "Simulated answer from gpt-sim. Tool get_forecast returned: Rain all week", textOf(res.GetMessage()))
}

func TestOpenAIToolChoice(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	other := &typev1.Tool{Name: "get_time"}
	for _, tc := range []struct {
		name   string
		choice *typev1.ToolChoice
		prompt string
		want   string // tool called, "" for text
	}{
		{"auto without a cue", nil, "hello", ""},
		{"none", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}, "call get_forecast", ""},
		{"required", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}, "hello", "get_time"},
		{"named", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "get_forecast"}, "hello", "get_forecast"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := generateRequest(tc.prompt, "ep-1")
			req.Params = &typev1.GenerationParams{Tools: []*typev1.Tool{other, forecastTool()}, ToolChoice: tc.choice}
			res, err := h.client.Generate(t.Context(), req)
			require.NoError(t, err)
			if tc.want == "" {
				assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.GetFinishReason())
				assert.Empty(t, res.GetMessage().GetToolCalls())
				return
			}
			assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.GetFinishReason())
			require.Len(t, res.GetMessage().GetToolCalls(), 1)
			assert.Equal(t, tc.want, res.GetMessage().GetToolCalls()[0].GetName())
		})
	}
}

func TestOpenAIStreamedToolCall(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	params := &typev1.GenerationParams{Tools: []*typev1.Tool{forecastTool()}}
	prompt := "what will get_forecast say about Zürich"

	req := generateRequest(prompt, "ep-1")
	req.Params = params
	plain, err := h.client.Generate(t.Context(), req)
	require.NoError(t, err)
	want := plain.GetMessage().GetToolCalls()[0]

	got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"ep-1"}, Messages: userMessages(prompt), Params: params,
	})
	require.NoError(t, err)
	var pieces int
	for _, m := range got {
		pieces += len(m.GetToolCalls())
		assert.Empty(t, m.GetTextDelta())
	}
	assert.Greater(t, pieces, 2, "the arguments arrive in pieces")
	calls := reassemble(t, got)
	require.Len(t, calls, 1)
	assert.NotEmpty(t, calls[0].GetId())
	assert.Equal(t, want.GetName(), calls[0].GetName())
	assert.Equal(t, want.GetArgumentsJson(), calls[0].GetArgumentsJson())
	last := got[len(got)-1]
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, last.GetFinishReason())
	assert.Equal(t, plain.GetUsage().GetOutputTokens(), last.GetUsage().GetOutputTokens())
}

func TestOpenAIResponseFormats(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	schema := `{"type":"object","properties":{"summary":{"type":"string"},"count":{"type":"integer"},` +
		`"tags":{"type":"array","items":{"type":"string"}},"final":{"type":"boolean"}},` +
		`"required":["summary","count","tags","final"],"additionalProperties":false}`
	for _, tc := range []struct {
		name  string
		rf    *typev1.ResponseFormat
		check func(t *testing.T, doc map[string]any)
	}{
		{"json_object", &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_OBJECT}, func(t *testing.T, doc map[string]any) {
			assert.Equal(t, "Simulated answer from gpt-sim. You said: answer in json", doc["answer"])
		}},
		{"json_schema", &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "summary", SchemaJson: schema, Strict: true},
			func(t *testing.T, doc map[string]any) {
				assert.IsType(t, "", doc["summary"])
				assert.IsType(t, float64(0), doc["count"])
				assert.IsType(t, []any{}, doc["tags"])
				assert.Equal(t, true, doc["final"])
			}},
		{"json_schema without a name", &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaJson: schema},
			func(t *testing.T, doc map[string]any) { assert.Contains(t, doc, "summary") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params := &typev1.GenerationParams{ResponseFormat: tc.rf}
			req := generateRequest("answer in json", "ep-1")
			req.Params = params
			res, err := h.client.Generate(t.Context(), req)
			require.NoError(t, err)
			var doc map[string]any
			require.NoError(t, json.Unmarshal([]byte(textOf(res.GetMessage())), &doc), textOf(res.GetMessage()))
			tc.check(t, doc)

			got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
				OrganizationId: org, EndpointIds: []string{"ep-1"}, Messages: userMessages("answer in json"), Params: params,
			})
			require.NoError(t, err)
			var text strings.Builder
			for _, m := range got {
				text.WriteString(m.GetTextDelta())
			}
			assert.Equal(t, textOf(res.GetMessage()), text.String())
		})
	}
}

func TestOpenAIImagesPassThrough(t *testing.T) {
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), dispatch.Config{})
	withImage := userMessages("what is this")
	withImage[1].Content = append(withImage[1].Content,
		&typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: "data:image/png;base64,iVBORw0KGgo=", Detail: "low"}}},
		&typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: "https://example.com/cat.png"}}})
	for name, tc := range map[string]struct {
		msgs  []*typev1.Message
		input int64
	}{
		"text only":  {userMessages("what is this"), 2 + 3},
		"two images": {withImage, 2 + 3 + 2*85},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := h.client.Generate(t.Context(), &dispatchv1.GenerateRequest{
				OrganizationId: org, EndpointIds: []string{"ep-1"}, Messages: tc.msgs,
			})
			require.NoError(t, err)
			assert.Equal(t, tc.input, res.GetUsage().GetInputTokens(), "the simulator prices each image it receives")
			assert.Equal(t, "Simulated answer from gpt-sim. You said: what is this", textOf(res.GetMessage()))
		})
	}

	// An image the vendor refuses is the request's fault: no fallback, InvalidArgument.
	bad := userMessages("look")
	bad[1].Content = append(bad[1].Content, &typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: "ftp://x/y.png"}}})
	_, err := h.client.Generate(t.Context(), &dispatchv1.GenerateRequest{OrganizationId: org, EndpointIds: []string{"ep-1"}, Messages: bad})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "image_url")
}

func TestOpenAIEmbedThroughServer(t *testing.T) {
	url, sim := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-1", url, "embed-sim")), dispatch.Config{})
	dims := int32(12)
	for name, tc := range map[string]struct {
		dims *int32
		want int
	}{"default": {nil, simulator.DefaultEmbeddingDimensions}, "dimensions": {&dims, 12}} {
		t.Run(name, func(t *testing.T) {
			res, err := h.client.Embed(t.Context(), &dispatchv1.EmbedRequest{
				OrganizationId: org, EndpointIds: []string{"ep-1"}, Inputs: []string{"one", "two words", "three more words"},
				Dimensions: tc.dims, EndUserId: "user-1",
			})
			require.NoError(t, err)
			assert.Equal(t, "ep-1", res.GetEndpointId())
			assert.Equal(t, "embed-sim", res.GetResponseModel())
			require.Len(t, res.GetEmbeddings(), 3)
			for i, e := range res.GetEmbeddings() {
				assert.Equal(t, int32(i), e.GetIndex())
				assert.Len(t, e.GetValues(), tc.want)
			}
			assert.Equal(t, int64(6), res.GetUsage().GetInputTokens())
			assert.Equal(t, int64(6), res.GetUsage().GetTotalTokens())
		})
	}
	assert.Equal(t, int64(2), sim.Stats().Requests)
}
