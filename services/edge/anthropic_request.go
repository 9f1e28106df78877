package edge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strings"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// anthropicRequest is the body of POST /v1/messages. Union-typed fields (system, content
// blocks, tool results) stay raw here and are decoded, strictly, by the translation, which
// knows their paths for errors.
type anthropicRequest struct {
	Model         string               `json:"model"`
	MaxTokens     *int64               `json:"max_tokens"`
	System        json.RawMessage      `json:"system"`
	Messages      []anthropicInMessage `json:"messages"`
	Tools         []anthropicTool      `json:"tools"`
	ToolChoice    *anthropicToolChoice `json:"tool_choice"`
	StopSequences []string             `json:"stop_sequences"`
	Temperature   *float64             `json:"temperature"`
	TopP          *float64             `json:"top_p"`
	// TopK is decoded only to be refused by name: the vendor-neutral model has no top_k
	// (OpenAI has none), so honouring it for some vendors and not others would make the same
	// request mean different things depending on the route.
	TopK     *int64             `json:"top_k"`
	Metadata *anthropicMetadata `json:"metadata"`
	Stream   bool               `json:"stream"`
}

type anthropicInMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anthropicTool struct {
	// Type is "custom" or absent; Anthropic's server tools (bash, web search, ...) run at
	// Anthropic and have no vendor-neutral equivalent.
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthropicToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
}

type anthropicMetadata struct {
	UserID *string `json:"user_id"`
}

// The content blocks a request may carry, each decoded strictly by its type.
type (
	anthropicTextBlock struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	anthropicImageBlock struct {
		Type   string               `json:"type"`
		Source anthropicImageSource `json:"source"`
	}
	anthropicImageSource struct {
		Type      string `json:"type"` // "base64" or "url"
		MediaType string `json:"media_type"`
		Data      string `json:"data"`
		URL       string `json:"url"`
	}
	anthropicToolUseBlock struct {
		Type  string          `json:"type"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	}
	anthropicToolResultBlock struct {
		Type      string          `json:"type"`
		ToolUseID string          `json:"tool_use_id"`
		Content   json.RawMessage `json:"content"`
		IsError   bool            `json:"is_error"`
	}
)

// The image types Anthropic accepts.
var anthropicImageTypes = []string{"image/jpeg", "image/png", "image/gif", "image/webp"}

// anthropicToolErrorPrefix marks the text of a tool result the caller flagged is_error. The
// vendor-neutral tool message has no error flag (OpenAI's has none either), so the flag
// travels in the text, where every model reads it.
const anthropicToolErrorPrefix = "Error: "

// parsedAnthropic is a request translated to the vendor-neutral model.
type parsedAnthropic struct {
	model    string
	messages []*typev1.Message
	params   *typev1.GenerationParams
	stream   bool
}

// parseAnthropicRequest checks and translates a request body. Errors are *requestError or
// *anthropicError, all 400.
func parseAnthropicRequest(body []byte) (*parsedAnthropic, error) {
	if err := scanAnthropic(body); err != nil {
		return nil, err
	}
	var req anthropicRequest
	if err := decodeStrict(body, "", &req); err != nil {
		return nil, err
	}
	out := &parsedAnthropic{model: req.Model, stream: req.Stream, params: &typev1.GenerationParams{}}
	if req.Model == "" {
		return nil, anthropicInvalid("model: field required")
	}
	if err := out.setParams(&req); err != nil {
		return nil, err
	}
	if req.System != nil {
		parts, err := anthropicSystem(req.System)
		if err != nil {
			return nil, err
		}
		if len(parts) > 0 {
			out.messages = append(out.messages, &typev1.Message{Role: typev1.Role_ROLE_SYSTEM, Content: parts})
		}
	}
	if len(req.Messages) == 0 {
		return nil, anthropicInvalid("messages: at least one message is required")
	}
	for i, m := range req.Messages {
		msgs, err := anthropicMessages(fmt.Sprintf("messages[%d]", i), m)
		if err != nil {
			return nil, err
		}
		out.messages = append(out.messages, msgs...)
	}
	return out, nil
}

// scanAnthropic refuses forbidden keys and excessive nesting with the OpenAI dialect's
// scanner. That scanner leaves message content alone (the caller's data in both dialects) but
// knows OpenAI's tool layout, not Anthropic's, so tool input schemas, which are the caller's
// data too (an HTTP tool may well have a "headers" property), are emptied before the scan.
func scanAnthropic(body []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return scanRequest(body) // it reports the document's own problem
	}
	raw, ok := top["tools"]
	if !ok {
		return scanRequest(body)
	}
	var tools []map[string]json.RawMessage
	if json.Unmarshal(raw, &tools) != nil {
		return scanRequest(body) // the strict decoder names the problem
	}
	for _, t := range tools {
		if _, ok := t["input_schema"]; ok {
			t["input_schema"] = json.RawMessage(`{}`)
		}
	}
	scrubbed, err := json.Marshal(tools)
	if err != nil {
		return err
	}
	top["tools"] = scrubbed
	rebuilt, err := json.Marshal(top)
	if err != nil {
		return err
	}
	return scanRequest(rebuilt)
}

func (out *parsedAnthropic) setParams(req *anthropicRequest) error {
	p := out.params
	switch {
	case req.MaxTokens == nil:
		return anthropicInvalid("max_tokens: field required")
	case *req.MaxTokens < 1 || *req.MaxTokens > math.MaxInt32:
		return anthropicInvalid("max_tokens: must be between 1 and %d", math.MaxInt32)
	}
	p.MaxOutputTokens = new(int32(*req.MaxTokens))
	if req.TopK != nil {
		return anthropicInvalid("top_k: is not supported: fmgate's vendor-neutral API has no top_k; use temperature or top_p")
	}
	if req.Temperature != nil {
		// Anthropic's range, narrower than the vendor-neutral 0..2.
		if !between(*req.Temperature, 0, 1) {
			return anthropicInvalid("temperature: must be between 0 and 1")
		}
		p.Temperature = req.Temperature
	}
	p.TopP = req.TopP
	p.Stop = req.StopSequences
	if req.Metadata != nil && req.Metadata.UserID != nil {
		p.EndUserId = *req.Metadata.UserID
	}
	for i, t := range req.Tools {
		field := fmt.Sprintf("tools[%d]", i)
		if t.Type != "" && t.Type != "custom" {
			return anthropicInvalid("%s.type: %q is not supported: only custom tools (name, description, input_schema) are", field, t.Type)
		}
		if t.Name == "" {
			return anthropicInvalid("%s.name: field required", field)
		}
		schema := bytes.TrimSpace(t.InputSchema)
		if len(schema) == 0 || schema[0] != '{' {
			return anthropicInvalid("%s.input_schema: must be a JSON Schema object", field)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, schema); err != nil {
			return anthropicInvalid("%s.input_schema: must be a JSON Schema object", field)
		}
		p.Tools = append(p.Tools, &typev1.Tool{Name: t.Name, Description: t.Description, ParametersJson: compact.String()})
	}
	if tc := req.ToolChoice; tc != nil {
		if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
			return anthropicInvalid("tool_choice.disable_parallel_tool_use: is not supported")
		}
		if tc.Name != "" && tc.Type != "tool" {
			return anthropicInvalid("tool_choice.name: is only allowed with type \"tool\"")
		}
		switch tc.Type {
		case "auto":
			// The model decides: the vendor-neutral default.
		case "any":
			p.ToolChoice = &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}
		case "tool":
			if tc.Name == "" {
				return anthropicInvalid("tool_choice.name: field required for type \"tool\"")
			}
			p.ToolChoice = &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: tc.Name}
		case "none":
			p.ToolChoice = &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}
		default:
			return anthropicInvalid("tool_choice.type: must be one of auto, any, tool, none")
		}
	}
	return nil
}

// anthropicSystem translates the system prompt: a string or an array of text blocks.
func anthropicSystem(raw json.RawMessage) ([]*typev1.ContentPart, error) {
	if s, ok, err := anthropicRawString(raw, "system"); ok || err != nil {
		if err != nil || s == "" {
			return nil, err
		}
		return []*typev1.ContentPart{anthropicTextPart(s)}, nil
	}
	blocks, err := anthropicRawBlocks(raw, "system")
	if err != nil {
		return nil, err
	}
	var parts []*typev1.ContentPart
	for j, b := range blocks {
		field := fmt.Sprintf("system[%d]", j)
		var t anthropicTextBlock
		if err := decodeStrict(b, field, &t); err != nil {
			return nil, err
		}
		if t.Type != "text" {
			return nil, anthropicInvalid("%s.type: must be \"text\"", field)
		}
		parts = append(parts, anthropicTextPart(t.Text))
	}
	return parts, nil
}

// anthropicMessages translates one message. A user message's tool_result blocks become tool
// messages of their own, in place, because the vendor-neutral model (like OpenAI's) answers
// each tool call with a tool message; the blocks around them stay user messages.
func anthropicMessages(field string, m anthropicInMessage) ([]*typev1.Message, error) {
	var role typev1.Role
	switch m.Role {
	case "user":
		role = typev1.Role_ROLE_USER
	case "assistant":
		role = typev1.Role_ROLE_ASSISTANT
	default:
		return nil, anthropicInvalid("%s.role: must be \"user\" or \"assistant\"", field)
	}
	if m.Content == nil {
		return nil, anthropicInvalid("%s.content: field required", field)
	}
	if s, ok, err := anthropicRawString(m.Content, field+".content"); ok || err != nil {
		if err != nil {
			return nil, err
		}
		return []*typev1.Message{{Role: role, Content: []*typev1.ContentPart{anthropicTextPart(s)}}}, nil
	}
	blocks, err := anthropicRawBlocks(m.Content, field+".content")
	if err != nil {
		return nil, err
	}
	var out []*typev1.Message
	cur := &typev1.Message{Role: role}
	flush := func() {
		if len(cur.Content) > 0 || len(cur.ToolCalls) > 0 {
			out = append(out, cur)
		}
		cur = &typev1.Message{Role: role}
	}
	for j, b := range blocks {
		bf := fmt.Sprintf("%s.content[%d]", field, j)
		typ, err := anthropicBlockType(b, bf)
		if err != nil {
			return nil, err
		}
		switch {
		case typ == "text":
			var t anthropicTextBlock
			if err := decodeStrict(b, bf, &t); err != nil {
				return nil, err
			}
			cur.Content = append(cur.Content, anthropicTextPart(t.Text))
		case typ == "image" && role == typev1.Role_ROLE_USER:
			part, err := anthropicImage(b, bf)
			if err != nil {
				return nil, err
			}
			cur.Content = append(cur.Content, part)
		case typ == "tool_use" && role == typev1.Role_ROLE_ASSISTANT:
			call, err := anthropicToolUse(b, bf)
			if err != nil {
				return nil, err
			}
			cur.ToolCalls = append(cur.ToolCalls, call)
		case typ == "tool_result" && role == typev1.Role_ROLE_USER:
			msg, err := anthropicToolResult(b, bf)
			if err != nil {
				return nil, err
			}
			flush()
			out = append(out, msg)
		case slices.Contains([]string{"text", "image", "tool_use", "tool_result"}, typ):
			return nil, anthropicInvalid("%s.type: %q blocks are not allowed in %s messages", bf, typ, m.Role)
		default:
			return nil, anthropicInvalid("%s.type: %q is not supported: use text, image, tool_use or tool_result", bf, typ)
		}
	}
	flush()
	if len(out) == 0 {
		return nil, anthropicInvalid("%s.content: must not be empty", field)
	}
	return out, nil
}

func anthropicImage(b json.RawMessage, field string) (*typev1.ContentPart, error) {
	var img anthropicImageBlock
	if err := decodeStrict(b, field, &img); err != nil {
		return nil, err
	}
	src := img.Source
	switch src.Type {
	case "base64":
		if src.URL != "" {
			return nil, anthropicInvalid("%s.source.url: is not allowed with type \"base64\"", field)
		}
		if !slices.Contains(anthropicImageTypes, src.MediaType) {
			return nil, anthropicInvalid("%s.source.media_type: must be one of %s", field, strings.Join(anthropicImageTypes, ", "))
		}
		if src.Data == "" {
			return nil, anthropicInvalid("%s.source.data: field required", field)
		}
		// Checked here because it is pasted into a data URL.
		if _, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, strings.NewReader(src.Data))); err != nil {
			return nil, anthropicInvalid("%s.source.data: is not valid base64", field)
		}
		return anthropicImagePart("data:" + src.MediaType + ";base64," + src.Data), nil
	case "url":
		if src.MediaType != "" || src.Data != "" {
			return nil, anthropicInvalid("%s.source: only url is allowed with type \"url\"", field)
		}
		u, err := url.Parse(src.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, anthropicInvalid("%s.source.url: must be an https URL", field)
		}
		return anthropicImagePart(src.URL), nil
	}
	return nil, anthropicInvalid("%s.source.type: must be \"base64\" or \"url\"", field)
}

func anthropicToolUse(b json.RawMessage, field string) (*typev1.ToolCall, error) {
	var t anthropicToolUseBlock
	if err := decodeStrict(b, field, &t); err != nil {
		return nil, err
	}
	switch {
	case t.ID == "":
		return nil, anthropicInvalid("%s.id: field required", field)
	case t.Name == "":
		return nil, anthropicInvalid("%s.name: field required", field)
	}
	input := bytes.TrimSpace(t.Input)
	if len(input) == 0 || input[0] != '{' {
		return nil, anthropicInvalid("%s.input: must be an object", field)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, input); err != nil {
		return nil, anthropicInvalid("%s.input: must be an object", field)
	}
	return &typev1.ToolCall{Id: t.ID, Name: t.Name, ArgumentsJson: compact.String()}, nil
}

func anthropicToolResult(b json.RawMessage, field string) (*typev1.Message, error) {
	var t anthropicToolResultBlock
	if err := decodeStrict(b, field, &t); err != nil {
		return nil, err
	}
	if t.ToolUseID == "" {
		return nil, anthropicInvalid("%s.tool_use_id: field required", field)
	}
	var text strings.Builder
	if t.IsError {
		text.WriteString(anthropicToolErrorPrefix)
	}
	if t.Content != nil {
		if s, ok, err := anthropicRawString(t.Content, field+".content"); ok || err != nil {
			if err != nil {
				return nil, err
			}
			text.WriteString(s)
		} else {
			blocks, err := anthropicRawBlocks(t.Content, field+".content")
			if err != nil {
				return nil, err
			}
			for k, cb := range blocks {
				cf := fmt.Sprintf("%s.content[%d]", field, k)
				var tb anthropicTextBlock
				if err := decodeStrict(cb, cf, &tb); err != nil {
					return nil, err
				}
				if tb.Type != "text" {
					return nil, anthropicInvalid("%s.type: tool results may carry text blocks only", cf)
				}
				if k > 0 {
					text.WriteString("\n")
				}
				text.WriteString(tb.Text)
			}
		}
	}
	return &typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: t.ToolUseID, Content: []*typev1.ContentPart{anthropicTextPart(text.String())}}, nil
}

// anthropicRawString decodes raw as a string when it is one (ok), and reports a malformed string.
func anthropicRawString(raw json.RawMessage, field string) (string, bool, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '"' {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(trimmed, &s); err != nil {
		return "", true, anthropicInvalid("%s: is not a valid string", field)
	}
	return s, true, nil
}

// anthropicRawBlocks decodes raw as an array of blocks.
func anthropicRawBlocks(raw json.RawMessage, field string) ([]json.RawMessage, error) {
	var blocks []json.RawMessage
	if err := json.Unmarshal(raw, &blocks); err != nil || blocks == nil {
		return nil, anthropicInvalid("%s: must be a string or an array of content blocks", field)
	}
	return blocks, nil
}

// anthropicBlockType reads the type of a content block.
func anthropicBlockType(b json.RawMessage, field string) (string, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return "", anthropicInvalid("%s: must be a content block object", field)
	}
	if head.Type == "" {
		return "", anthropicInvalid("%s.type: field required", field)
	}
	return head.Type, nil
}

func anthropicTextPart(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

func anthropicImagePart(u string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: u}}}
}
