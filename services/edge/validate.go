package edge

import (
	"fmt"
	"math"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// Limits on what one request may carry. They protect every service behind the edge.
const (
	maxMessages     = 1024
	maxContentParts = 256
	maxStops        = 4
	maxModelName    = 128
)

// validate checks a generation request at the edge and names every invalid field.
func validate(model string, msgs []*typev1.Message, params *typev1.GenerationParams) error {
	var v []apierr.FieldViolation
	add := func(field, format string, args ...any) {
		v = append(v, apierr.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
	}
	switch {
	case model == "":
		add("model", "is required")
	case len(model) > maxModelName:
		add("model", "must be at most %d characters", maxModelName)
	}
	switch {
	case len(msgs) == 0:
		add("messages", "must contain at least one message")
	case len(msgs) > maxMessages:
		add("messages", "must contain at most %d messages", maxMessages)
	}
	for i, m := range msgs {
		field := fmt.Sprintf("messages[%d]", i)
		if m == nil {
			add(field, "must not be null")
			continue
		}
		if m.GetRole() == typev1.Role_ROLE_UNSPECIFIED {
			add(field+".role", "is required")
		} else if _, ok := typev1.Role_name[int32(m.GetRole())]; !ok {
			add(field+".role", "unknown role %d", m.GetRole())
		}
		if len(m.GetContent()) == 0 && len(m.GetToolCalls()) == 0 {
			add(field+".content", "must not be empty")
		}
		if len(m.GetContent()) > maxContentParts {
			add(field+".content", "must contain at most %d parts", maxContentParts)
		}
		for j, p := range m.GetContent() {
			if p.GetPart() == nil {
				add(fmt.Sprintf("%s.content[%d]", field, j), "must set text or image")
			}
		}
		if m.GetRole() == typev1.Role_ROLE_TOOL && m.GetToolCallId() == "" {
			add(field+".tool_call_id", "is required for tool messages")
		}
	}
	if params != nil {
		if params.MaxOutputTokens != nil && params.GetMaxOutputTokens() < 1 {
			add("params.max_output_tokens", "must be at least 1")
		}
		if params.Temperature != nil && !between(params.GetTemperature(), 0, 2) {
			add("params.temperature", "must be between 0 and 2")
		}
		if params.TopP != nil && !between(params.GetTopP(), 0, 1) {
			add("params.top_p", "must be between 0 and 1")
		}
		if len(params.GetStop()) > maxStops {
			add("params.stop", "must contain at most %d sequences", maxStops)
		}
	}
	if len(v) > 0 {
		return apierr.InvalidArgument(v...)
	}
	return nil
}

func between(x, lo, hi float64) bool { return !math.IsNaN(x) && x >= lo && x <= hi }
