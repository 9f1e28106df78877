package edge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// chatRequest is the body of POST /v1/chat/completions: the parameters fmgate supports. Any
// other parameter is refused by name (decodeStrict).
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Tools               []chatTool      `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ResponseFormat      *responseFormat `json:"response_format"`
	Stop                json.RawMessage `json:"stop"`
	MaxTokens           *int32          `json:"max_tokens"`
	MaxCompletionTokens *int32          `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	N                   *int            `json:"n"`
	Seed                *int64          `json:"seed"`
	User                string          `json:"user"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []chatToolCall  `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
	// Refusal is an earlier assistant turn's refusal, sent back as that turn's text.
	Refusal *string `json:"refusal"`
}

type chatContentPart struct {
	Type     string    `json:"type"`
	Text     *string   `json:"text"`
	ImageURL *imageURL `json:"image_url"`
	Refusal  *string   `json:"refusal"`
}

type imageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail"`
}

type chatToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chatTool struct {
	Type     string          `json:"type"`
	Function chatFunctionDef `json:"function"`
}

type chatFunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

type responseFormat struct {
	Type       string            `json:"type"`
	JSONSchema *jsonSchemaFormat `json:"json_schema"`
}

type jsonSchemaFormat struct {
	Name string `json:"name"`
	// Description is decoded only to be refused by name: the native contract has no place for
	// it (a schema's own "description" keyword does the same job).
	Description *string         `json:"description"`
	Schema      json.RawMessage `json:"schema"`
	Strict      *bool           `json:"strict"`
}

type toolChoiceObject struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// chatCompletion is OpenAI's non-streamed answer.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int       `json:"index"`
	Message      chatReply `json:"message"`
	FinishReason string    `json:"finish_reason"`
	Logprobs     *struct{} `json:"logprobs"`
}

type chatReply struct {
	Role      string         `json:"role"`
	Content   *string        `json:"content"`
	Refusal   *string        `json:"refusal"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
}

type chatUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// chatChunk is one server-sent event of a streamed answer.
type chatChunk struct {
	ID      string            `json:"id"`
	Object  string            `json:"object"`
	Created int64             `json:"created"`
	Model   string            `json:"model"`
	Choices []chatChunkChoice `json:"choices"`
	Usage   *chatUsage        `json:"usage,omitempty"`
}

type chatChunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type chatDelta struct {
	Role      string          `json:"role,omitempty"`
	Content   *string         `json:"content,omitempty"`
	ToolCalls []chatToolDelta `json:"tool_calls,omitempty"`
}

type chatToolDelta struct {
	Index    int32             `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function chatFunctionDelta `json:"function"`
}

type chatFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

var chatRoles = map[string]typev1.Role{
	"system": typev1.Role_ROLE_SYSTEM, "developer": typev1.Role_ROLE_DEVELOPER, "user": typev1.Role_ROLE_USER,
	"assistant": typev1.Role_ROLE_ASSISTANT, "tool": typev1.Role_ROLE_TOOL,
}

// chatCall is a chat request translated to the native contract.
type chatCall struct {
	model        string
	messages     []*typev1.Message
	params       *typev1.GenerationParams
	stream       bool
	includeUsage bool
	maxTokens    string // the name the caller gave the output limit, for error messages
}

// paramOf maps a native field name to the parameter this caller used.
func (c *chatCall) paramOf(field string) string { return openAIParam(field, c.maxTokens) }

// parseChat decodes and translates a chat request. It checks the dialect (types, unknown
// parameters, shapes); the values are validated by the gateway, so both APIs agree.
func parseChat(body []byte) (*chatCall, error) {
	var req chatRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, err
	}
	c := &chatCall{model: req.Model, stream: req.Stream, maxTokens: "max_tokens", params: &typev1.GenerationParams{
		Temperature: req.Temperature, TopP: req.TopP, Seed: req.Seed, EndUserId: req.User,
		FrequencyPenalty: req.FrequencyPenalty, PresencePenalty: req.PresencePenalty,
	}}
	if req.N != nil && *req.N != 1 {
		return nil, badParam("n", "unsupported_value", "n must be 1: fmgate returns one choice per request")
	}
	switch {
	case req.MaxTokens != nil && req.MaxCompletionTokens != nil:
		return nil, badParam("max_tokens", "", "set max_tokens or max_completion_tokens, not both")
	case req.MaxCompletionTokens != nil:
		c.params.MaxOutputTokens, c.maxTokens = req.MaxCompletionTokens, "max_completion_tokens"
	default:
		c.params.MaxOutputTokens = req.MaxTokens
	}
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, badParam("stream_options", "", "stream_options is only allowed when stream is true")
		}
		c.includeUsage = req.StreamOptions.IncludeUsage
	}
	stop, err := parseStop(req.Stop)
	if err != nil {
		return nil, err
	}
	c.params.Stop = stop
	for i, m := range req.Messages {
		msg, err := parseMessage(fmt.Sprintf("messages[%d]", i), m)
		if err != nil {
			return nil, err
		}
		c.messages = append(c.messages, msg)
	}
	for i, t := range req.Tools {
		field := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return nil, badParam(field+".type", "unsupported_value", "%s.type must be \"function\"", field)
		}
		tool := &typev1.Tool{Name: t.Function.Name, Description: t.Function.Description, Strict: t.Function.Strict != nil && *t.Function.Strict}
		if len(t.Function.Parameters) > 0 && !isJSONNull(t.Function.Parameters) {
			tool.ParametersJson = string(t.Function.Parameters)
		}
		c.params.Tools = append(c.params.Tools, tool)
	}
	if c.params.ToolChoice, err = parseToolChoice(req.ToolChoice); err != nil {
		return nil, err
	}
	if c.params.ResponseFormat, err = parseResponseFormat(req.ResponseFormat); err != nil {
		return nil, err
	}
	return c, nil
}

func isJSONNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func parseStop(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || isJSONNull(raw) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badParam("stop", "invalid_type", "stop must be a string or an array of strings")
	}
	return many, nil
}

func parseMessage(field string, m chatMessage) (*typev1.Message, error) {
	role, ok := chatRoles[m.Role]
	if !ok {
		return nil, badParam(field+".role", "unsupported_value",
			"%s.role must be one of system, developer, user, assistant, tool; got %q", field, m.Role)
	}
	msg := &typev1.Message{Role: role, Name: m.Name, ToolCallId: m.ToolCallID}
	parts, err := parseContent(field+".content", role, m.Content)
	if err != nil {
		return nil, err
	}
	msg.Content = parts
	if m.Refusal != nil && *m.Refusal != "" {
		if role != typev1.Role_ROLE_ASSISTANT {
			return nil, badParam(field+".refusal", "", "%s.refusal is only allowed on assistant messages", field)
		}
		msg.Content = append(msg.Content, textContentPart(*m.Refusal))
	}
	for j, tc := range m.ToolCalls {
		if tc.Type != "function" {
			return nil, badParam(fmt.Sprintf("%s.tool_calls[%d].type", field, j), "unsupported_value", "tool call type must be \"function\"")
		}
		msg.ToolCalls = append(msg.ToolCalls, &typev1.ToolCall{Id: tc.ID, Name: tc.Function.Name, ArgumentsJson: tc.Function.Arguments})
	}
	return msg, nil
}

func textContentPart(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

// parseContent translates a message's content: a string, an array of parts, or null (for
// an assistant message that only calls tools). An empty string is no content.
func parseContent(field string, role typev1.Role, raw json.RawMessage) ([]*typev1.ContentPart, error) {
	if len(raw) == 0 || isJSONNull(raw) {
		return nil, nil
	}
	var text string
	if err := json.Unmarshal(raw, &text); err == nil {
		if text == "" {
			return nil, nil
		}
		return []*typev1.ContentPart{textContentPart(text)}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(raw, &raws); err != nil {
		return nil, badParam(field, "invalid_type", "%s must be a string or an array of content parts", field)
	}
	parts := make([]*typev1.ContentPart, 0, len(raws))
	for j, r := range raws {
		pf := fmt.Sprintf("%s[%d]", field, j)
		var p chatContentPart
		if err := decodeStrict(r, pf, &p); err != nil {
			return nil, err
		}
		switch {
		case p.Type == "text" && p.Text != nil && p.ImageURL == nil && p.Refusal == nil:
			parts = append(parts, textContentPart(*p.Text))
		case p.Type == "image_url" && p.ImageURL != nil && p.Text == nil && p.Refusal == nil:
			if role != typev1.Role_ROLE_USER {
				return nil, badParam(pf+".type", "unsupported_value", "image parts are only allowed in user messages")
			}
			parts = append(parts, &typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: p.ImageURL.URL, Detail: p.ImageURL.Detail}}})
		case p.Type == "refusal" && p.Refusal != nil && p.Text == nil && p.ImageURL == nil && role == typev1.Role_ROLE_ASSISTANT:
			parts = append(parts, textContentPart(*p.Refusal))
		case p.Type == "text" || p.Type == "image_url" || p.Type == "refusal":
			return nil, badParam(pf, "invalid_value", "%s: a %q part needs its %q field and no other", pf, p.Type, p.Type)
		default:
			return nil, badParam(pf+".type", "unsupported_value", "%s.type %q is not supported (text and image_url are)", pf, p.Type)
		}
	}
	return parts, nil
}

func parseToolChoice(raw json.RawMessage) (*typev1.ToolChoice, error) {
	if len(raw) == 0 || isJSONNull(raw) {
		return nil, nil
	}
	var mode string
	if err := json.Unmarshal(raw, &mode); err == nil {
		switch mode {
		case "auto":
			return nil, nil
		case "none":
			return &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}, nil
		case "required":
			return &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}, nil
		}
		return nil, badParam("tool_choice", "unsupported_value", "tool_choice must be \"none\", \"auto\", \"required\" or a function")
	}
	var obj toolChoiceObject
	if err := decodeStrict(raw, "tool_choice", &obj); err != nil {
		return nil, err
	}
	if obj.Type != "function" {
		return nil, badParam("tool_choice.type", "unsupported_value", "tool_choice.type must be \"function\"")
	}
	return &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: obj.Function.Name}, nil
}

func parseResponseFormat(rf *responseFormat) (*typev1.ResponseFormat, error) {
	if rf == nil {
		return nil, nil
	}
	if rf.JSONSchema != nil && rf.Type != "json_schema" {
		return nil, badParam("response_format.json_schema", "", "response_format.json_schema is only allowed with type json_schema")
	}
	switch rf.Type {
	case "text":
		return nil, nil
	case "json_object":
		return &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_OBJECT}, nil
	case "json_schema":
		s := rf.JSONSchema
		if s == nil {
			return nil, badParam("response_format.json_schema", "missing_required_parameter", "response_format.json_schema is required with type json_schema")
		}
		if s.Description != nil {
			return nil, badParam("response_format.json_schema.description", "unknown_parameter",
				"response_format.json_schema.description is not supported: put it in the schema's own description")
		}
		out := &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: s.Name, Strict: s.Strict != nil && *s.Strict}
		if len(s.Schema) > 0 && !isJSONNull(s.Schema) {
			out.SchemaJson = string(s.Schema)
		}
		return out, nil
	}
	return nil, badParam("response_format.type", "unsupported_value", "response_format.type must be text, json_object or json_schema")
}

// chat serves POST /v1/chat/completions.
func (h *openAI) chat(w http.ResponseWriter, r *http.Request) {
	body, err := readOpenAIBody(r)
	if err != nil {
		writeOpenAIError(w, err, noParamMap)
		return
	}
	c, err := parseChat(body)
	if err != nil {
		writeOpenAIError(w, err, noParamMap)
		return
	}
	if c.stream {
		h.chatStream(w, r, c)
		return
	}
	resp, err := h.gw.Generate(r.Context(), &gatewayv1.GenerateRequest{Model: c.model, Messages: c.messages, Params: c.params})
	if err != nil {
		writeOpenAIError(w, err, c.paramOf)
		return
	}
	reply := chatReply{Role: "assistant"}
	if text := messageText(resp.GetMessage()); text != "" || len(resp.GetMessage().GetToolCalls()) == 0 {
		reply.Content = &text
	}
	for _, tc := range resp.GetMessage().GetToolCalls() {
		reply.ToolCalls = append(reply.ToolCalls, chatToolCall{ID: tc.GetId(), Type: "function",
			Function: chatFunction{Name: tc.GetName(), Arguments: tc.GetArgumentsJson()}})
	}
	writeOpenAIJSON(w, http.StatusOK, chatCompletion{
		ID: completionID(resp.GetId()), Object: "chat.completion", Created: h.created(), Model: c.model,
		Choices: []chatChoice{{Message: reply, FinishReason: openAIFinishReason(resp.GetFinishReason())}},
		Usage:   openAIUsageOf(resp.GetUsage()),
	})
}

// chatStream answers with server-sent events. The gateway's first event decides the status:
// a refusal before any output is an ordinary error response; after the headers, a failure
// is an error event and the stream ends without [DONE], so no client mistakes it for a
// complete answer.
func (h *openAI) chatStream(w http.ResponseWriter, r *http.Request, c *chatCall) {
	stream, err := h.gw.StreamGenerate(r.Context(), &gatewayv1.StreamGenerateRequest{Model: c.model, Messages: c.messages, Params: c.params})
	if err != nil {
		writeOpenAIError(w, err, c.paramOf)
		return
	}
	ev, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "the answer ended before it began")
		}
		writeOpenAIError(w, err, c.paramOf)
		return
	}
	sse := newSSEWriter(w)
	chunk := chatChunk{ID: completionID(ev.GetId()), Object: "chat.completion.chunk", Created: h.created(), Model: c.model}
	var choice [1]chatChunkChoice // every event has one choice, or none
	emit := func(d chatDelta, finish *string) bool {
		choice[0] = chatChunkChoice{Delta: d, FinishReason: finish}
		chunk.Choices = choice[:]
		return sse.event(&chunk)
	}
	empty := ""
	if !emit(chatDelta{Role: "assistant", Content: &empty}, nil) {
		return
	}
	for {
		var d chatDelta
		if text := ev.GetTextDelta(); text != "" {
			d.Content = &text
		}
		for _, tc := range ev.GetToolCalls() {
			td := chatToolDelta{Index: tc.GetIndex(), ID: tc.GetId(), Function: chatFunctionDelta{Name: tc.GetName(), Arguments: tc.GetArgumentsDelta()}}
			if tc.GetId() != "" || tc.GetName() != "" {
				td.Type = "function"
			}
			d.ToolCalls = append(d.ToolCalls, td)
		}
		if (d.Content != nil || len(d.ToolCalls) > 0) && !emit(d, nil) {
			return
		}
		if fr := ev.GetFinishReason(); fr != typev1.FinishReason_FINISH_REASON_UNSPECIFIED {
			reason := openAIFinishReason(fr)
			if !emit(chatDelta{}, &reason) {
				return
			}
			if c.includeUsage {
				u := openAIUsageOf(ev.GetUsage())
				chunk.Choices, chunk.Usage = choice[:0], &u
				if !sse.event(&chunk) {
					return
				}
			}
			sse.done()
			return
		}
		if ev, err = stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the answer ended without a finish reason")
			}
			_, detail := openAIErrorOf(err, c.paramOf)
			sse.event(openAIError{Error: detail})
			return
		}
	}
}

// sseWriter writes server-sent events, flushing each, and stops at the first write error
// (the client has gone; the request context then cancels the gateway stream). One buffer
// holds each event in turn: a stream writes dozens of events a second.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
	enc *json.Encoder // into buf, escaping as json.Marshal does
	err error
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w)}
	s.enc = json.NewEncoder(&s.buf)
	return s
}

// event writes "data: <v as JSON>" and the blank line that ends an event.
func (s *sseWriter) event(v any) bool {
	if s.err != nil {
		return false
	}
	s.buf.Reset()
	s.buf.WriteString("data: ")
	if s.err = s.enc.Encode(v); s.err != nil { // Encode ends the JSON with a newline
		return false
	}
	s.buf.WriteByte('\n')
	return s.flush()
}

func (s *sseWriter) done() {
	if s.err != nil {
		return
	}
	s.buf.Reset()
	s.buf.WriteString("data: [DONE]\n\n")
	s.flush()
}

func (s *sseWriter) flush() bool {
	if _, s.err = s.w.Write(s.buf.Bytes()); s.err == nil {
		s.err = s.rc.Flush()
	}
	return s.err == nil
}

// completionID is the gateway's generation id in OpenAI's form, so both name the same thing.
func completionID(id string) string { return "chatcmpl-" + strings.TrimPrefix(id, "gen-") }

func openAIFinishReason(r typev1.FinishReason) string {
	switch r {
	case typev1.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case typev1.FinishReason_FINISH_REASON_TOOL_CALLS:
		return "tool_calls"
	case typev1.FinishReason_FINISH_REASON_CONTENT_FILTER:
		return "content_filter"
	}
	return "stop"
}

func openAIUsageOf(u *typev1.Usage) chatUsage {
	return chatUsage{PromptTokens: u.GetInputTokens(), CompletionTokens: u.GetOutputTokens(), TotalTokens: u.GetTotalTokens()}
}
