package dispatch

// The Anthropic adapter, for PROVIDER_KIND_ANTHROPIC, through the official SDK (Messages API).
//
// The endpoint's base_url is the API root without /v1 (https://api.anthropic.com), as
// ANTHROPIC_BASE_URL is. Translation of the vendor-neutral request:
//
//   - system and developer messages, wherever they stand, become the system prompt (text
//     blocks, in order): Anthropic has one system prompt beside the conversation.
//   - user images: data URLs become base64 sources, http(s) URLs url sources; the detail
//     hint has no Anthropic equivalent and is not sent.
//   - assistant tool calls become tool_use blocks; tool messages become tool_result blocks
//     of one user turn (consecutive tool messages share it, as Anthropic requires).
//   - max_output_tokens becomes max_tokens, which Anthropic requires: defaultAnthropicMaxTokens
//     when the request sets none.
//   - end_user_id becomes metadata.user_id; stop becomes stop_sequences.
//   - a JSON-schema response format becomes output_config.format (Anthropic's structured
//     outputs); models without structured outputs answer 400, which is reported as such.
//
// What Anthropic cannot honour is refused with failUnsupported rather than dropped, so that
// the route may fall back to an endpoint that can: the JSON-object response format (Anthropic
// constrains output only by a schema), seed, frequency and presence penalties, and a
// temperature above 1 (Anthropic's range is 0 to 1). Message names, which Anthropic has no
// field for, are not sent.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	"github.com/anthropics/anthropic-sdk-go/option"
	"github.com/anthropics/anthropic-sdk-go/packages/param"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// defaultAnthropicMaxTokens is max_tokens when the request sets no max_output_tokens:
// Anthropic requires one, and 4096 is the largest output every current Claude model allows.
const defaultAnthropicMaxTokens = 4096

// anthropicRequestTimeout is the SDK's per-request timeout. Dispatch bounds every call by its
// context; without an explicit timeout the SDK would impose its own 10-minute guess and
// refuse non-streamed requests whose max_tokens it thinks too large, before sending them.
const anthropicRequestTimeout = time.Hour

type anthropicVendor struct {
	endpointID string
	model      string
	cred       Credential
	svc        anthropic.MessageService
}

func newAnthropicVendor(cfg vendorConfig) (vendor, error) {
	// NewMessageService, unlike anthropic.NewClient, applies no defaults from the
	// environment (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, ANTHROPIC_BASE_URL,
	// ANTHROPIC_CUSTOM_HEADERS, profiles, federation): only the registry's URL and credential
	// reach the request. The SDK's own OpenTelemetry span is off: dispatch traces the call
	// (dispatch.vendor_call; the shared client's transport propagates the trace context), and
	// the SDK's span would put prompts in traces when
	// ANTHROPIC_OPEN_TELEMETRY_TRACES_CONTENT_MODE=content is set.
	opts := []option.RequestOption{
		option.WithBaseURL(cfg.baseURL.String()),
		option.WithHTTPClient(cfg.client),
		option.WithMaxRetries(0), // dispatch owns retries and fallback
		option.WithoutOpenTelemetry(),
		option.WithRequestTimeout(anthropicRequestTimeout),
	}
	if !cfg.cred.IsZero() {
		opts = append(opts, option.WithAPIKey(cfg.cred.Reveal()))
	}
	return &anthropicVendor{
		endpointID: cfg.endpointID,
		model:      cfg.upstreamModel,
		cred:       cfg.cred,
		svc:        anthropic.NewMessageService(opts...),
	}, nil
}

func (v *anthropicVendor) unsupported(detail string) error {
	return &attemptError{kind: failUnsupported, endpointID: v.endpointID, detail: "anthropic: " + detail}
}

func (v *anthropicVendor) badRequest(detail string) error {
	return &attemptError{kind: failBadRequest, endpointID: v.endpointID, detail: detail, vendorMessage: detail}
}

// params translates req, or returns an *attemptError for what Anthropic cannot do.
func (v *anthropicVendor) params(req *vendorRequest) (anthropic.MessageNewParams, error) {
	p := anthropic.MessageNewParams{Model: anthropic.Model(v.model), MaxTokens: defaultAnthropicMaxTokens}
	system, msgs, err := v.messages(req.messages)
	if err != nil {
		return p, err
	}
	p.System, p.Messages = system, msgs
	gp := req.params
	if gp == nil {
		return p, nil
	}
	switch {
	case gp.Seed != nil:
		return p, v.unsupported("seed is not supported")
	case gp.FrequencyPenalty != nil:
		return p, v.unsupported("frequency_penalty is not supported")
	case gp.PresencePenalty != nil:
		return p, v.unsupported("presence_penalty is not supported")
	case gp.Temperature != nil && gp.GetTemperature() > 1:
		return p, v.unsupported("temperature must be between 0 and 1")
	}
	if gp.MaxOutputTokens != nil {
		p.MaxTokens = int64(gp.GetMaxOutputTokens())
	}
	if gp.Temperature != nil {
		p.Temperature = anthropic.Float(gp.GetTemperature())
	}
	if gp.TopP != nil {
		p.TopP = anthropic.Float(gp.GetTopP())
	}
	p.StopSequences = gp.GetStop()
	if id := gp.GetEndUserId(); id != "" {
		p.Metadata.UserID = anthropic.String(id)
	}
	switch rf := gp.GetResponseFormat(); rf.GetType() {
	case typev1.ResponseFormat_TYPE_JSON_OBJECT:
		return p, v.unsupported("the json_object response format is not supported (use a JSON schema)")
	case typev1.ResponseFormat_TYPE_JSON_SCHEMA:
		schema, err := anthropicJSONObject(rf.GetSchemaJson())
		if err != nil || schema == nil {
			return p, v.badRequest("response_format schema is not a JSON object")
		}
		p.OutputConfig.Format = anthropic.JSONOutputFormatParam{Schema: schema}
	}
	for _, t := range gp.GetTools() {
		schema, err := anthropicJSONObject(t.GetParametersJson())
		if err != nil {
			return p, v.badRequest("parameters of tool " + strconv.Quote(t.GetName()) + " are not a JSON object")
		}
		if schema == nil {
			schema = map[string]any{"properties": map[string]any{}}
		}
		if _, ok := schema["type"]; !ok {
			schema["type"] = "object"
		}
		tp := anthropic.ToolParam{
			Name: t.GetName(),
			// The schema is sent as given, keywords the SDK's struct does not name included.
			InputSchema: param.Override[anthropic.ToolInputSchemaParam](schema),
		}
		if d := t.GetDescription(); d != "" {
			tp.Description = anthropic.String(d)
		}
		if t.GetStrict() {
			tp.Strict = anthropic.Bool(true)
		}
		p.Tools = append(p.Tools, anthropic.ToolUnionParam{OfTool: &tp})
	}
	switch tc := gp.GetToolChoice(); tc.GetMode() {
	case typev1.ToolChoice_MODE_NONE:
		if len(p.Tools) > 0 {
			p.ToolChoice.OfNone = &anthropic.ToolChoiceNoneParam{}
		}
	case typev1.ToolChoice_MODE_REQUIRED:
		p.ToolChoice.OfAny = &anthropic.ToolChoiceAnyParam{}
	case typev1.ToolChoice_MODE_TOOL:
		p.ToolChoice = anthropic.ToolChoiceParamOfTool(tc.GetName())
	}
	return p, nil
}

// anthropicJSONObject decodes s, a JSON object; the empty string is nil.
func anthropicJSONObject(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("null")
	}
	return m, nil
}

// messages translates the conversation into Anthropic's system prompt and turns.
func (v *anthropicVendor) messages(msgs []*typev1.Message) ([]anthropic.TextBlockParam, []anthropic.MessageParam, error) {
	var system []anthropic.TextBlockParam
	out := make([]anthropic.MessageParam, 0, len(msgs))
	// toolTurn is the index in out of the user turn collecting consecutive tool results.
	toolTurn := -1
	for i, m := range msgs {
		var blocks []anthropic.ContentBlockParamUnion
		switch m.GetRole() {
		case typev1.Role_ROLE_SYSTEM, typev1.Role_ROLE_DEVELOPER:
			for _, c := range m.GetContent() {
				if t := c.GetText(); strings.TrimSpace(t) != "" {
					system = append(system, anthropic.TextBlockParam{Text: t})
				}
			}
			continue
		case typev1.Role_ROLE_TOOL:
			var content []anthropic.ToolResultBlockParamContentUnion
			for _, c := range m.GetContent() {
				if t := c.GetText(); t != "" {
					content = append(content, anthropic.ToolResultBlockParamContentUnion{OfText: &anthropic.TextBlockParam{Text: t}})
				}
			}
			block := anthropic.ContentBlockParamUnion{OfToolResult: &anthropic.ToolResultBlockParam{
				ToolUseID: m.GetToolCallId(), Content: content,
			}}
			if toolTurn >= 0 {
				out[toolTurn].Content = append(out[toolTurn].Content, block)
			} else {
				toolTurn = len(out)
				out = append(out, anthropic.NewUserMessage(block))
			}
			continue
		case typev1.Role_ROLE_USER:
			for _, c := range m.GetContent() {
				switch part := c.GetPart().(type) {
				case *typev1.ContentPart_Text:
					if strings.TrimSpace(part.Text) != "" {
						blocks = append(blocks, anthropic.NewTextBlock(part.Text))
					}
				case *typev1.ContentPart_Image:
					b, err := v.image(part.Image.GetUrl())
					if err != nil {
						return nil, nil, err
					}
					blocks = append(blocks, b)
				}
			}
		case typev1.Role_ROLE_ASSISTANT:
			for _, c := range m.GetContent() {
				if t := c.GetText(); strings.TrimSpace(t) != "" {
					blocks = append(blocks, anthropic.NewTextBlock(t))
				}
			}
			for _, tc := range m.GetToolCalls() {
				input, err := anthropicJSONObject(tc.GetArgumentsJson())
				if err != nil {
					return nil, nil, v.badRequest("arguments of tool call " + strconv.Quote(tc.GetId()) + " are not a JSON object")
				}
				if input == nil {
					input = map[string]any{}
				}
				blocks = append(blocks, anthropic.NewToolUseBlock(tc.GetId(), input, tc.GetName()))
			}
		default:
			return nil, nil, v.badRequest("message " + strconv.Itoa(i) + " has no role")
		}
		if len(blocks) == 0 {
			// Anthropic refuses empty turns and blank text blocks.
			return nil, nil, v.badRequest("message " + strconv.Itoa(i) + " has no content")
		}
		role := anthropic.MessageParamRoleUser
		if m.GetRole() == typev1.Role_ROLE_ASSISTANT {
			role = anthropic.MessageParamRoleAssistant
		}
		toolTurn = -1
		out = append(out, anthropic.MessageParam{Role: role, Content: blocks})
	}
	return system, out, nil
}

// anthropicImageTypes are the media types Anthropic accepts for base64 images.
var anthropicImageTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// image translates an image URL: a base64 data URL, or an http(s) URL Anthropic fetches.
func (v *anthropicVendor) image(u string) (anthropic.ContentBlockParamUnion, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		mediaType, enc, _ := strings.Cut(meta, ";")
		if !ok || enc != "base64" {
			return anthropic.ContentBlockParamUnion{}, v.badRequest("image data URL is not base64")
		}
		if !anthropicImageTypes[mediaType] {
			return anthropic.ContentBlockParamUnion{}, v.unsupported("image type " + strconv.Quote(mediaType) + " is not supported (jpeg, png, gif, webp)")
		}
		return anthropic.NewImageBlockBase64(mediaType, data), nil
	}
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return anthropic.NewImageBlock(anthropic.URLImageSourceParam{URL: u}), nil
	}
	return anthropic.ContentBlockParamUnion{}, v.badRequest("image URL is neither http(s) nor a data URL")
}

func (v *anthropicVendor) generate(ctx context.Context, req *vendorRequest) (*vendorResult, error) {
	p, err := v.params(req)
	if err != nil {
		return nil, err
	}
	res, err := v.svc.New(ctx, p)
	if err != nil {
		return nil, v.classify(ctx, err, false)
	}
	msg := &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT}
	var text strings.Builder
	for _, b := range res.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_use":
			msg.ToolCalls = append(msg.ToolCalls, &typev1.ToolCall{Id: b.ID, Name: b.Name, ArgumentsJson: string(b.Input)})
		}
	}
	if text.Len() > 0 {
		msg.Content = []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: text.String()}}}
	}
	return &vendorResult{
		message: msg,
		finish:  fromAnthropicStop(res.StopReason),
		usage:   anthropicUsage(res.Usage.InputTokens, res.Usage.CacheCreationInputTokens, res.Usage.CacheReadInputTokens, res.Usage.OutputTokens),
		model:   string(res.Model),
	}, nil
}

func (v *anthropicVendor) stream(ctx context.Context, req *vendorRequest, onDelta func(delta) error) (*vendorResult, error) {
	p, err := v.params(req)
	if err != nil {
		return nil, err
	}
	s := v.svc.NewStreaming(ctx, p)
	defer s.Close()
	res := &vendorResult{}
	var in, cacheWrite, cacheRead, out int64
	// tools maps the index of each tool_use content block to the index of its call among
	// the answer's tool calls, which is the index of its ToolCallDelta pieces.
	tools := map[int64]int32{}
	withArgs := map[int64]bool{}
	started, finished := false, false
	send := func(d delta) error {
		d.model = res.model
		return onDelta(d)
	}
	for s.Next() {
		ev := s.Current()
		switch ev.Type {
		case "message_start":
			started = true
			res.model = string(ev.Message.Model)
			u := ev.Message.Usage
			in, cacheWrite, cacheRead, out = u.InputTokens, u.CacheCreationInputTokens, u.CacheReadInputTokens, u.OutputTokens
		case "content_block_start":
			switch cb := ev.ContentBlock; cb.Type {
			case "text":
				if cb.Text != "" {
					if err := send(delta{text: cb.Text}); err != nil {
						return nil, err
					}
				}
			case "tool_use":
				idx := int32(len(tools))
				tools[ev.Index] = idx
				if err := send(delta{toolCalls: []*typev1.ToolCallDelta{{Index: idx, Id: cb.ID, Name: cb.Name}}}); err != nil {
					return nil, err
				}
			}
		case "content_block_delta":
			switch ev.Delta.Type {
			case "text_delta":
				if ev.Delta.Text != "" {
					if err := send(delta{text: ev.Delta.Text}); err != nil {
						return nil, err
					}
				}
			case "input_json_delta":
				idx, ok := tools[ev.Index]
				if !ok || ev.Delta.PartialJSON == "" {
					continue
				}
				withArgs[ev.Index] = true
				if err := send(delta{toolCalls: []*typev1.ToolCallDelta{{Index: idx, ArgumentsDelta: ev.Delta.PartialJSON}}}); err != nil {
					return nil, err
				}
			}
		case "content_block_stop":
			// A call without arguments streams none; its arguments are still a JSON object.
			if idx, ok := tools[ev.Index]; ok && !withArgs[ev.Index] {
				if err := send(delta{toolCalls: []*typev1.ToolCallDelta{{Index: idx, ArgumentsDelta: "{}"}}}); err != nil {
					return nil, err
				}
			}
		case "message_delta":
			res.finish = fromAnthropicStop(ev.Delta.StopReason)
			// message_delta's counts are cumulative totals; the ones it omits keep their value.
			u := ev.Usage
			out = u.OutputTokens
			if u.JSON.InputTokens.Valid() {
				in = u.InputTokens
			}
			if u.JSON.CacheCreationInputTokens.Valid() {
				cacheWrite = u.CacheCreationInputTokens
			}
			if u.JSON.CacheReadInputTokens.Valid() {
				cacheRead = u.CacheReadInputTokens
			}
		case "message_stop":
			finished = true
		}
	}
	if err := s.Err(); err != nil {
		return nil, v.classify(ctx, err, started)
	}
	if !finished {
		// The SDK ends quietly when the connection closes at an event boundary; without
		// message_stop the answer is incomplete.
		return nil, &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "stream ended without message_stop"}
	}
	res.usage = anthropicUsage(in, cacheWrite, cacheRead, out)
	return res, nil
}

// embed refuses: Anthropic has no embeddings API.
func (v *anthropicVendor) embed(context.Context, *embedRequest) (*embedResult, error) {
	return nil, v.unsupported("anthropic has no embeddings API")
}

// classify turns an SDK error into an *attemptError, passing context errors through. A
// connection that breaks midStream (after message_start) interrupts the answer.
func (v *anthropicVendor) classify(ctx context.Context, err error, midStream bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var apiErr *anthropic.Error
	if errors.As(err, &apiErr) {
		typ, msg := anthropicErrorBody(apiErr)
		if apiErr.StatusCode < http.StatusBadRequest {
			// An error event inside a stream that began with 200 (overloaded_error, most
			// often): the answer broke off.
			return &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "vendor sent an error event: " + typ}
		}
		ae := &attemptError{
			kind:          classifyHTTP(apiErr.StatusCode),
			endpointID:    v.endpointID,
			httpStatus:    apiErr.StatusCode,
			vendorMessage: v.cred.redact(msg),
		}
		if apiErr.Response != nil {
			ae.retryAfter = parseRetryAfter(apiErr.Response.Header, time.Now())
		}
		if ae.kind == failCredential {
			// Keep nothing a vendor says about our key.
			ae.vendorMessage = ""
		}
		ae.detail = typ
		if ae.vendorMessage != "" {
			ae.detail += ": " + ae.vendorMessage
		}
		return ae
	}
	kind := failUnavailable
	switch {
	case isNetTimeout(err):
		kind = failTimeout
	case midStream:
		kind = failInterrupted
	}
	return &attemptError{kind: kind, endpointID: v.endpointID, detail: v.cred.redact(err.Error())}
}

// anthropicErrorBody reads the type and message of Anthropic's error shape
// {"type":"error","error":{"type":...,"message":...}}; both are empty when the body is not
// in that shape.
func anthropicErrorBody(e *anthropic.Error) (typ, msg string) {
	var body struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(e.RawJSON()), &body) != nil {
		return "", ""
	}
	return body.Error.Type, body.Error.Message
}

func fromAnthropicStop(r anthropic.StopReason) typev1.FinishReason {
	switch r {
	case anthropic.StopReasonEndTurn, anthropic.StopReasonStopSequence:
		return typev1.FinishReason_FINISH_REASON_STOP
	case anthropic.StopReasonMaxTokens, anthropic.StopReasonModelContextWindowExceeded:
		return typev1.FinishReason_FINISH_REASON_LENGTH
	case anthropic.StopReasonToolUse:
		return typev1.FinishReason_FINISH_REASON_TOOL_CALLS
	case anthropic.StopReasonRefusal:
		return typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
	default: // pause_turn (server tools, which fmgate does not offer) and future reasons
		return typev1.FinishReason_FINISH_REASON_UNSPECIFIED
	}
}

// anthropicUsage counts every prompt token: Anthropic's input_tokens leaves out the tokens
// written to and read from its prompt cache.
func anthropicUsage(in, cacheWrite, cacheRead, out int64) *typev1.Usage {
	total := in + cacheWrite + cacheRead
	return &typev1.Usage{InputTokens: total, OutputTokens: out, TotalTokens: total + out}
}
