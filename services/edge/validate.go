package edge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Limits on what one request may carry. They protect every service behind the edge.
const (
	maxMessages     = 1024
	maxContentParts = 256
	maxStops        = 4
	maxModelName    = 128
	maxTools        = 128
	maxToolCalls    = 128
	maxEmbedInputs  = 2048
)

// toolNamePattern is what vendors accept as a tool or schema name (OpenAI's rule, which the
// others also satisfy).
var toolNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// violations collects the invalid fields of one request.
type violations []apierr.FieldViolation

func (v *violations) add(field, format string, args ...any) {
	*v = append(*v, apierr.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (v violations) err() error {
	if len(v) > 0 {
		return apierr.InvalidArgument(v...)
	}
	return nil
}

func (v *violations) model(model string) {
	switch {
	case model == "":
		v.add("model", "is required")
	case len(model) > maxModelName:
		v.add("model", "must be at most %d characters", maxModelName)
	}
}

// validate checks a generation request at the edge and names every invalid field.
func validate(model string, msgs []*typev1.Message, params *typev1.GenerationParams) error {
	var v violations
	v.model(model)
	switch {
	case len(msgs) == 0:
		v.add("messages", "must contain at least one message")
	case len(msgs) > maxMessages:
		v.add("messages", "must contain at most %d messages", maxMessages)
	}
	for i, m := range msgs {
		v.message(fmt.Sprintf("messages[%d]", i), m)
	}
	if params != nil {
		v.params(params)
	}
	return v.err()
}

func (v *violations) message(field string, m *typev1.Message) {
	if m == nil {
		v.add(field, "must not be null")
		return
	}
	if m.GetRole() == typev1.Role_ROLE_UNSPECIFIED {
		v.add(field+".role", "is required")
	} else if _, ok := typev1.Role_name[int32(m.GetRole())]; !ok {
		v.add(field+".role", "unknown role %d", m.GetRole())
	}
	if len(m.GetContent()) == 0 && len(m.GetToolCalls()) == 0 {
		v.add(field+".content", "must not be empty")
	}
	if len(m.GetContent()) > maxContentParts {
		v.add(field+".content", "must contain at most %d parts", maxContentParts)
	}
	for j, p := range m.GetContent() {
		pf := fmt.Sprintf("%s.content[%d]", field, j)
		switch part := p.GetPart().(type) {
		case nil:
			v.add(pf, "must set text or image")
		case *typev1.ContentPart_Image:
			if part.Image.GetUrl() == "" {
				v.add(pf+".image.url", "is required")
			}
		}
	}
	if len(m.GetToolCalls()) > 0 && m.GetRole() != typev1.Role_ROLE_ASSISTANT {
		v.add(field+".tool_calls", "only assistant messages carry tool calls")
	}
	if len(m.GetToolCalls()) > maxToolCalls {
		v.add(field+".tool_calls", "must contain at most %d calls", maxToolCalls)
	}
	for j, tc := range m.GetToolCalls() {
		tf := fmt.Sprintf("%s.tool_calls[%d]", field, j)
		if tc.GetId() == "" {
			v.add(tf+".id", "is required")
		}
		if tc.GetName() == "" {
			v.add(tf+".name", "is required")
		}
	}
	if m.GetRole() == typev1.Role_ROLE_TOOL && m.GetToolCallId() == "" {
		v.add(field+".tool_call_id", "is required for tool messages")
	}
}

func (v *violations) params(params *typev1.GenerationParams) {
	if params.MaxOutputTokens != nil && params.GetMaxOutputTokens() < 1 {
		v.add("params.max_output_tokens", "must be at least 1")
	}
	if params.Temperature != nil && !between(params.GetTemperature(), 0, 2) {
		v.add("params.temperature", "must be between 0 and 2")
	}
	if params.TopP != nil && !between(params.GetTopP(), 0, 1) {
		v.add("params.top_p", "must be between 0 and 1")
	}
	if params.FrequencyPenalty != nil && !between(params.GetFrequencyPenalty(), -2, 2) {
		v.add("params.frequency_penalty", "must be between -2 and 2")
	}
	if params.PresencePenalty != nil && !between(params.GetPresencePenalty(), -2, 2) {
		v.add("params.presence_penalty", "must be between -2 and 2")
	}
	if len(params.GetStop()) > maxStops {
		v.add("params.stop", "must contain at most %d sequences", maxStops)
	}

	if len(params.GetTools()) > maxTools {
		v.add("params.tools", "must contain at most %d tools", maxTools)
	}
	names := make(map[string]int, len(params.GetTools()))
	for i, t := range params.GetTools() {
		field := fmt.Sprintf("params.tools[%d]", i)
		if !toolNamePattern.MatchString(t.GetName()) {
			v.add(field+".name", "must be 1 to 64 letters, digits, '_' or '-'")
		} else if j, dup := names[t.GetName()]; dup {
			v.add(field+".name", "repeats the name of params.tools[%d]", j)
		} else {
			names[t.GetName()] = i
		}
		if t.GetParametersJson() != "" && !isJSONObject(t.GetParametersJson()) {
			v.add(field+".parameters_json", "must be a JSON object (a JSON Schema)")
		}
	}

	switch tc := params.GetToolChoice(); tc.GetMode() {
	case typev1.ToolChoice_MODE_UNSPECIFIED, typev1.ToolChoice_MODE_NONE:
	case typev1.ToolChoice_MODE_REQUIRED:
		if len(params.GetTools()) == 0 {
			v.add("params.tool_choice", "requires at least one tool")
		}
	case typev1.ToolChoice_MODE_TOOL:
		if _, ok := names[tc.GetName()]; !ok {
			v.add("params.tool_choice.name", "must name one of params.tools")
		}
	default:
		v.add("params.tool_choice.mode", "unknown mode %d", tc.GetMode())
	}

	switch rf := params.GetResponseFormat(); rf.GetType() {
	case typev1.ResponseFormat_TYPE_UNSPECIFIED, typev1.ResponseFormat_TYPE_JSON_OBJECT:
	case typev1.ResponseFormat_TYPE_JSON_SCHEMA:
		if !toolNamePattern.MatchString(rf.GetSchemaName()) {
			v.add("params.response_format.schema_name", "must be 1 to 64 letters, digits, '_' or '-'")
		}
		if !isJSONObject(rf.GetSchemaJson()) {
			v.add("params.response_format.schema_json", "must be a JSON object (a JSON Schema)")
		}
	default:
		v.add("params.response_format.type", "unknown type %d", rf.GetType())
	}
}

// validateEmbed checks an embedding request and names every invalid field.
func validateEmbed(req *gatewayv1.EmbedRequest) error {
	var v violations
	v.model(req.GetModel())
	switch n := len(req.GetInputs()); {
	case n == 0:
		v.add("inputs", "must contain at least one input")
	case n > maxEmbedInputs:
		v.add("inputs", "must contain at most %d inputs", maxEmbedInputs)
	}
	for i, in := range req.GetInputs() {
		if in == "" {
			v.add(fmt.Sprintf("inputs[%d]", i), "must not be empty")
		}
	}
	if req.Dimensions != nil && req.GetDimensions() < 1 {
		v.add("dimensions", "must be at least 1")
	}
	return v.err()
}

func between(x, lo, hi float64) bool { return !math.IsNaN(x) && x >= lo && x <= hi }

// isJSONObject reports whether s is one valid JSON object.
func isJSONObject(s string) bool {
	b := bytes.TrimSpace([]byte(s))
	return len(b) > 0 && b[0] == '{' && json.Valid(b)
}
