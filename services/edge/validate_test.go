package edge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

func TestValidate(t *testing.T) {
	user := []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{text("hi")}}}
	tool := func(name, params string) *typev1.Tool { return &typev1.Tool{Name: name, ParametersJson: params} }
	cases := []struct {
		name   string
		msgs   []*typev1.Message
		params *typev1.GenerationParams
		fields []string // nil: valid
	}{
		{name: "minimal", msgs: user},
		{name: "full", msgs: []*typev1.Message{
			user[0],
			{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: "c1", Name: "f", ArgumentsJson: "{}"}}},
			{Role: typev1.Role_ROLE_TOOL, ToolCallId: "c1", Content: []*typev1.ContentPart{text("r")}},
		}, params: &typev1.GenerationParams{
			Tools: []*typev1.Tool{tool("f", `{"type":"object"}`), tool("g-2", "")}, ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "g-2"},
			ResponseFormat:   &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "s", SchemaJson: ` {"type":"object"} `},
			FrequencyPenalty: ptr(-2.0), PresencePenalty: ptr(2.0),
		}},
		{name: "tool names", msgs: user, params: &typev1.GenerationParams{Tools: []*typev1.Tool{tool("has space", ""), tool("", ""), tool("ok", ""), tool("ok", "")}},
			fields: []string{"params.tools[0].name", "params.tools[1].name", "params.tools[3].name"}},
		{name: "tool parameters", msgs: user, params: &typev1.GenerationParams{Tools: []*typev1.Tool{tool("a", "[]"), tool("b", "{")}},
			fields: []string{"params.tools[0].parameters_json", "params.tools[1].parameters_json"}},
		{name: "tool choice names an unknown tool", msgs: user, params: &typev1.GenerationParams{Tools: []*typev1.Tool{tool("a", "")},
			ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "b"}}, fields: []string{"params.tool_choice.name"}},
		{name: "required without tools", msgs: user, params: &typev1.GenerationParams{ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}},
			fields: []string{"params.tool_choice"}},
		{name: "json schema", msgs: user, params: &typev1.GenerationParams{ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaJson: `"x"`}},
			fields: []string{"params.response_format.schema_name", "params.response_format.schema_json"}},
		{name: "penalties", msgs: user, params: &typev1.GenerationParams{FrequencyPenalty: ptr(2.5), PresencePenalty: ptr(-3.0)},
			fields: []string{"params.frequency_penalty", "params.presence_penalty"}},
		{name: "tool calls", msgs: []*typev1.Message{
			{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{ArgumentsJson: "{}"}}},
			{Role: typev1.Role_ROLE_USER, ToolCalls: []*typev1.ToolCall{{Id: "a", Name: "b"}}},
			{Role: typev1.Role_ROLE_TOOL, Content: []*typev1.ContentPart{text("r")}},
		}, fields: []string{"messages[0].tool_calls[0].id", "messages[0].tool_calls[0].name", "messages[1].tool_calls", "messages[2].tool_call_id"}},
		{name: "image without url", msgs: []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{}}}}}},
			fields: []string{"messages[0].content[0].image.url"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := validate("m", tc.msgs, tc.params)
			if tc.fields == nil {
				require.NoError(t, err)
				return
			}
			assert.Equal(t, tc.fields, fieldsOf(err))
		})
	}
}
