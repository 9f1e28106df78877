package simulator

// The Anthropic dialect: the Messages API (plain and SSE streaming) with Anthropic's field
// names, content blocks, event sequence and error shape. Answers, tools, stop sequences,
// structured output (output_config.format) and faults follow the shared rules of the package
// doc, so a model behaves the same whichever dialect reaches it.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// anthropicOverloaded is the status Anthropic answers when it is overloaded, where other
// vendors answer 503.
const anthropicOverloaded = 529

func (s *Simulator) registerAnthropic(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/messages", s.anthropicMessages)
}

// The request fields the simulator reads; the rest are accepted and ignored, as a model that
// does not use them would.
type anthropicRequest struct {
	Model         string               `json:"model"`
	MaxTokens     *int64               `json:"max_tokens"`
	System        json.RawMessage      `json:"system"`
	Messages      []anthropicMessage   `json:"messages"`
	Tools         []anthropicTool      `json:"tools"`
	ToolChoice    *anthropicToolChoice `json:"tool_choice"`
	StopSequences []string             `json:"stop_sequences"`
	Temperature   *float64             `json:"temperature"`
	TopP          *float64             `json:"top_p"`
	TopK          *int64               `json:"top_k"`
	Metadata      *anthropicMetadata   `json:"metadata"`
	OutputConfig  *anthropicOutputCfg  `json:"output_config"`
	Stream        bool                 `json:"stream"`
}

type anthropicMetadata struct {
	UserID *string `json:"user_id"`
}

type anthropicOutputCfg struct {
	Format *struct {
		Type   string         `json:"type"`
		Schema map[string]any `json:"schema"`
	} `json:"format"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// anthropicBlock is a content block of a request, of any type.
type anthropicBlock struct {
	Type      string                `json:"type"`
	Text      string                `json:"text"`
	Source    *anthropicImageSource `json:"source"`
	ID        string                `json:"id"`
	Name      string                `json:"name"`
	Input     json.RawMessage       `json:"input"`
	ToolUseID string                `json:"tool_use_id"`
	Content   json.RawMessage       `json:"content"`
}

type anthropicImageSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
}

type anthropicTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthropicToolChoice struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

type anthropicResponse struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Role         string         `json:"role"`
	Model        string         `json:"model"`
	Content      []anthropicOut `json:"content"`
	StopReason   *string        `json:"stop_reason"`
	StopSequence *string        `json:"stop_sequence"`
	Usage        anthropicUsage `json:"usage"`
}

// anthropicOut is a content block of a response: text or tool_use.
type anthropicOut struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type anthropicUsage struct {
	InputTokens              int64  `json:"input_tokens"`
	CacheCreationInputTokens int64  `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64  `json:"cache_read_input_tokens"`
	OutputTokens             int64  `json:"output_tokens"`
	ServiceTier              string `json:"service_tier"`
}

// anthropicEvent is one server-sent event of a stream; which fields are set depends on Type.
type anthropicEvent struct {
	Type         string               `json:"type"`
	Message      *anthropicResponse   `json:"message,omitempty"`
	Index        *int                 `json:"index,omitempty"`
	ContentBlock *anthropicOut        `json:"content_block,omitempty"`
	Delta        any                  `json:"delta,omitempty"`
	Usage        *anthropicDeltaUsage `json:"usage,omitempty"`
}

type anthropicBlockDelta struct {
	Type        string  `json:"type"`
	Text        *string `json:"text,omitempty"`
	PartialJSON *string `json:"partial_json,omitempty"`
}

type anthropicMessageDelta struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

type anthropicDeltaUsage struct {
	OutputTokens int64 `json:"output_tokens"`
}

type anthropicErrorBody struct {
	Type  string               `json:"type"`
	Error anthropicErrorDetail `json:"error"`
}

type anthropicErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// anthropicVersions are the values of the anthropic-version header the API accepts.
var anthropicVersions = map[string]bool{"2023-06-01": true, "2023-01-01": true}

// anthropicMediaTypes are the media types of base64 images the API accepts.
var anthropicMediaTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// anthropicPrompt is what the simulator reads from a valid request.
type anthropicPrompt struct {
	tokens          int
	lastUser        string // text blocks of the last user message that has any
	afterToolResult bool   // the last message carries tool results
	resultTool      string // the tool whose result is the last one
	resultText      string
	tools           []offeredTool
	mode            toolMode
	named           string
}

func (s *Simulator) anthropicAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	key := r.Header.Get("X-Api-Key")
	if key == s.cfg.APIKey {
		return true
	}
	msg := "invalid x-api-key"
	if key == "" {
		msg = "x-api-key header is required"
	}
	// The presented key is never echoed: it may be a real secret sent to the wrong place.
	writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", msg)
	return false
}

func (s *Simulator) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	if !s.anthropicAuthorized(w, r) {
		return
	}
	switch v := r.Header.Get("Anthropic-Version"); {
	case v == "":
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "anthropic-version: header is required")
		return
	case !anthropicVersions[v]:
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "anthropic-version: invalid version "+strconv.Quote(v))
		return
	}
	var req anthropicRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err := dec.Decode(&req); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeAnthropicError(w, http.StatusRequestEntityTooLarge, "request_too_large",
				"Request exceeds the maximum allowed number of bytes. The limit is "+strconv.Itoa(MaxBodyBytes)+" bytes.")
			return
		}
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error",
			"There was an error parsing the body of your request. Please make sure it is valid JSON.")
		return
	}
	prompt, msg := parseAnthropicRequest(&req)
	if msg != "" {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", msg)
		return
	}
	s.requests.Add(1)

	ctx := r.Context()
	if !s.wait(ctx, s.cfg.Latency) {
		s.clientGone()
		return
	}
	f := s.fault(req.Model)
	switch f.Kind {
	case FaultStatus:
		writeAnthropicFault(w, req.Model, f)
		return
	case FaultHang:
		<-ctx.Done()
		s.clientGone()
		return
	case FaultCut:
		if !req.Stream {
			// Drop the connection without a response; net/http does not log this panic.
			panic(http.ErrAbortHandler)
		}
	}

	res := anthropicResponse{
		ID:    "msg_sim_" + strconv.FormatUint(s.ids.Add(1), 10),
		Type:  "message",
		Role:  "assistant",
		Model: req.Model,
		Usage: anthropicUsage{InputTokens: int64(prompt.tokens), ServiceTier: "standard"},
	}
	var stopReason string
	if i := pickTool(prompt.tools, prompt.mode, prompt.named, prompt.lastUser, prompt.afterToolResult); i >= 0 {
		t := prompt.tools[i]
		args := toolArguments(t.schema, prompt.lastUser)
		res.Content = []anthropicOut{{
			Type: "tool_use", ID: "toolu_sim_" + strconv.FormatUint(s.ids.Add(1), 10), Name: t.name,
			Input: json.RawMessage(args),
		}}
		res.Usage.OutputTokens = int64(countTokens(t.name) + countTokens(args))
		stopReason = "tool_use"
	} else {
		var words []string
		if prompt.afterToolResult {
			words = toolResultAnswer(req.Model, prompt.resultTool, prompt.resultText)
		} else {
			words = answer(req.Model, prompt.lastUser)
		}
		text := strings.Join(words, " ")
		if oc := req.OutputConfig; oc != nil && oc.Format != nil {
			text = jsonSchemaAnswer(oc.Format.Schema, text)
		}
		stopReason = "end_turn"
		var seq string
		text, seq = anthropicStop(text, req.StopSequences)
		if seq != "" {
			stopReason = "stop_sequence"
			res.StopSequence = &seq
		}
		var cut bool
		if text, cut = limitTokens(text, *req.MaxTokens); cut {
			stopReason, res.StopSequence = "max_tokens", nil
		}
		res.Content = []anthropicOut{{Type: "text", Text: &text}}
		res.Usage.OutputTokens = int64(countTokens(text))
	}

	if req.Stream {
		s.anthropicStream(w, r, &res, stopReason, f)
		return
	}
	res.StopReason = &stopReason
	writeJSON(w, http.StatusOK, res)
}

// anthropicStop cuts text before the earliest stop sequence and returns the sequence that
// matched, or "" (Anthropic reports which one).
func anthropicStop(text string, stops []string) (string, string) {
	cut, ok := applyStop(text, stops)
	if !ok {
		return text, ""
	}
	rest := text[len(cut):]
	for _, s := range stops {
		if s != "" && strings.HasPrefix(rest, s) {
			return cut, s
		}
	}
	return cut, "" // unreachable: applyStop cut at one of stops
}

// parseAnthropicRequest validates req as Anthropic does and returns what the answer depends
// on, or a message in Anthropic's style ("path: problem").
func parseAnthropicRequest(req *anthropicRequest) (anthropicPrompt, string) {
	var p anthropicPrompt
	switch {
	case req.Model == "":
		return p, "model: Field required"
	case req.MaxTokens == nil:
		return p, "max_tokens: Field required"
	case *req.MaxTokens < 1:
		return p, "max_tokens: Input should be greater than or equal to 1"
	case len(req.Messages) == 0:
		return p, "messages: at least one message is required"
	case req.Temperature != nil && (*req.Temperature < 0 || *req.Temperature > 1):
		return p, "temperature: Input should be less than or equal to 1 and greater than or equal to 0"
	case req.TopP != nil && (*req.TopP < 0 || *req.TopP > 1):
		return p, "top_p: Input should be less than or equal to 1 and greater than or equal to 0"
	case req.TopK != nil && *req.TopK < 0:
		return p, "top_k: Input should be greater than or equal to 0"
	case req.Metadata != nil && req.Metadata.UserID != nil && len(*req.Metadata.UserID) > 256:
		return p, "metadata.user_id: String should have at most 256 characters"
	}
	if oc := req.OutputConfig; oc != nil && oc.Format != nil {
		if oc.Format.Type != "json_schema" {
			return p, "output_config.format.type: Input should be 'json_schema'"
		}
		if oc.Format.Schema == nil {
			return p, "output_config.format.schema: Field required"
		}
	}
	for i, stop := range req.StopSequences {
		if strings.TrimSpace(stop) == "" {
			return p, "stop_sequences." + strconv.Itoa(i) + ": each stop sequence must contain non-whitespace"
		}
	}

	sys, msg := anthropicSystem(req.System)
	if msg != "" {
		return p, msg
	}
	p.tokens = countTokens(sys)

	for i, t := range req.Tools {
		path := "tools." + strconv.Itoa(i)
		if t.Type != "" && t.Type != "custom" {
			return p, path + ".type: the simulator has no server tool " + strconv.Quote(t.Type)
		}
		if t.Name == "" {
			return p, path + ".name: Field required"
		}
		var schema struct {
			Type string `json:"type"`
		}
		if len(t.InputSchema) == 0 {
			return p, path + ".input_schema: Field required"
		}
		if json.Unmarshal(t.InputSchema, &schema) != nil || schema.Type != "object" {
			return p, path + ".input_schema.type: Input should be 'object'"
		}
		p.tools = append(p.tools, offeredTool{name: t.Name, schema: t.InputSchema})
	}
	if tc := req.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto":
			p.mode = toolAuto
		case "any":
			p.mode = toolRequired
		case "none":
			p.mode = toolNone
		case "tool":
			if tc.Name == "" {
				return p, "tool_choice.name: Field required"
			}
			found := false
			for _, t := range p.tools {
				found = found || t.name == tc.Name
			}
			if !found {
				return p, "tool_choice: Tool '" + tc.Name + "' not found in 'tools'"
			}
			p.mode, p.named = toolNamed, tc.Name
		default:
			return p, "tool_choice.type: Input tag '" + tc.Type + "' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
		}
		if tc.Type != "none" && len(p.tools) == 0 {
			return p, "tool_choice: may only be specified while providing tools"
		}
	}

	// toolNames maps the ids of the previous assistant message's tool_use blocks to their
	// names; each must be answered by a tool_result in the next message.
	var toolNames map[string]string
	last := len(req.Messages) - 1
	for i := range req.Messages {
		m := &req.Messages[i]
		path := "messages." + strconv.Itoa(i)
		if m.Role != "user" && m.Role != "assistant" {
			return p, path + ".role: Input should be 'user' or 'assistant'"
		}
		blocks, msg := anthropicBlocks(m.Content, path+".content")
		if msg != "" {
			return p, msg
		}
		if len(blocks) == 0 && !(i == last && m.Role == "assistant") {
			return p, path + ": all messages must have non-empty content except for the optional final assistant message"
		}
		answered := map[string]bool{}
		var used map[string]string
		var texts []string
		results := false
		for j := range blocks {
			b := &blocks[j]
			bpath := path + ".content." + strconv.Itoa(j)
			switch b.Type {
			case "text":
				if strings.TrimSpace(b.Text) == "" {
					return p, path + ": text content blocks must contain non-whitespace text"
				}
				p.tokens += countTokens(b.Text)
				texts = append(texts, b.Text)
			case "image":
				if m.Role != "user" {
					return p, bpath + ": image blocks are only allowed in user messages"
				}
				if msg := anthropicImage(b.Source, bpath+".source"); msg != "" {
					return p, msg
				}
				p.tokens += imageTokens
			case "tool_use":
				if m.Role != "assistant" {
					return p, bpath + ": tool_use blocks are only allowed in assistant messages"
				}
				if b.ID == "" || b.Name == "" {
					return p, bpath + ": tool_use blocks require an id and a name"
				}
				in := bytes.TrimSpace(b.Input)
				if len(in) == 0 || in[0] != '{' || !json.Valid(in) {
					return p, bpath + ".input: Input should be a valid dictionary"
				}
				if used == nil {
					used = map[string]string{}
				}
				used[b.ID] = b.Name
				p.tokens += countTokens(b.Name) + countTokens(string(in))
			case "tool_result":
				if m.Role != "user" {
					return p, bpath + ": tool_result blocks are only allowed in user messages"
				}
				name, ok := toolNames[b.ToolUseID]
				if !ok {
					return p, bpath + ": unexpected `tool_use_id` found in `tool_result` blocks: " + b.ToolUseID +
						". Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
				}
				answered[b.ToolUseID] = true
				text, msg := anthropicResultText(b.Content, bpath+".content")
				if msg != "" {
					return p, msg
				}
				p.tokens += countTokens(text)
				results = true
				p.resultTool, p.resultText = name, text
			default:
				return p, bpath + ".type: Input tag '" + b.Type + "' does not match any of the expected tags: 'text', 'image', 'tool_use', 'tool_result'"
			}
		}
		if len(answered) < len(toolNames) {
			return p, "messages." + strconv.Itoa(i-1) + ": `tool_use` ids were found without `tool_result` blocks immediately after. " +
				"Each `tool_use` block must have a corresponding `tool_result` block in the next message."
		}
		toolNames = used
		if m.Role == "user" {
			if len(texts) > 0 {
				p.lastUser = strings.Join(texts, " ")
			}
			p.afterToolResult = i == last && results
		}
	}
	return p, ""
}

// anthropicSystem returns the text of a system prompt: a string or an array of text blocks.
func anthropicSystem(raw json.RawMessage) (string, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", "system: Input should be a valid string"
		}
		return s, ""
	}
	var blocks []anthropicBlock
	if raw[0] != '[' || json.Unmarshal(raw, &blocks) != nil {
		return "", "system: Input should be a valid string or a list of text blocks"
	}
	texts := make([]string, 0, len(blocks))
	for i, b := range blocks {
		if b.Type != "text" {
			return "", "system." + strconv.Itoa(i) + ".type: Input should be 'text'"
		}
		if strings.TrimSpace(b.Text) == "" {
			return "", "system: text content blocks must contain non-whitespace text"
		}
		texts = append(texts, b.Text)
	}
	return strings.Join(texts, " "), ""
}

// anthropicBlocks decodes a message's content: a string (one text block) or an array of
// blocks.
func anthropicBlocks(raw json.RawMessage, path string) ([]anthropicBlock, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, path + ": Field required"
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, path + ": Input should be a valid string"
		}
		if s == "" {
			return nil, ""
		}
		return []anthropicBlock{{Type: "text", Text: s}}, ""
	case '[':
		var blocks []anthropicBlock
		if json.Unmarshal(raw, &blocks) != nil {
			return nil, path + ": Input should be a valid list of content blocks"
		}
		return blocks, ""
	}
	return nil, path + ": Input should be a valid string or a list of content blocks"
}

// anthropicImage validates an image source: base64 data of an accepted media type, or a URL.
func anthropicImage(src *anthropicImageSource, path string) string {
	if src == nil {
		return path + ": Field required"
	}
	switch src.Type {
	case "base64":
		if !anthropicMediaTypes[src.MediaType] {
			return path + ".media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
		}
		if src.Data == "" {
			return path + ".data: Field required"
		}
		if _, err := base64.StdEncoding.DecodeString(src.Data); err != nil {
			return path + ".data: The image data is not valid base64."
		}
	case "url":
		if !strings.HasPrefix(src.URL, "https://") && !strings.HasPrefix(src.URL, "http://") {
			return path + ".url: Input should be a valid URL"
		}
	default:
		return path + ".type: Input tag '" + src.Type + "' does not match any of the expected tags: 'base64', 'url'"
	}
	return ""
}

// anthropicResultText returns the text of a tool result's content: a string or an array of
// text (and image) blocks.
func anthropicResultText(raw json.RawMessage, path string) (string, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", ""
	}
	blocks, msg := anthropicBlocks(raw, path)
	if msg != "" {
		return "", msg
	}
	texts := make([]string, 0, len(blocks))
	for i, b := range blocks {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "image":
			if msg := anthropicImage(b.Source, path+"."+strconv.Itoa(i)+".source"); msg != "" {
				return "", msg
			}
		default:
			return "", path + "." + strconv.Itoa(i) + ".type: Input should be 'text' or 'image'"
		}
	}
	return strings.Join(texts, " "), ""
}

// anthropicStream sends res as Anthropic's event sequence: message_start, then for each
// content block content_block_start, its deltas and content_block_stop (a ping follows the
// first start, as the API sends one), then message_delta with the stop reason and the output
// tokens, and message_stop.
func (s *Simulator) anthropicStream(w http.ResponseWriter, r *http.Request, res *anthropicResponse, stopReason string, f Fault) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	send := func(ev *anthropicEvent) bool {
		buf.Reset()
		buf.WriteString("event: ")
		buf.WriteString(ev.Type)
		buf.WriteString("\ndata: ")
		if err := enc.Encode(ev); err != nil {
			return false
		}
		buf.WriteByte('\n')
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	blocks, usage := res.Content, res.Usage
	start := *res
	start.Content = []anthropicOut{}
	start.Usage.OutputTokens = 1 // the API reports the first token before it streams
	if !send(&anthropicEvent{Type: "message_start", Message: &start}) {
		s.clientGone()
		return
	}
	sent := 0
	for i := range blocks {
		b := blocks[i]
		var chunks []string
		var kind string
		if b.Type == "tool_use" {
			chunks, kind = jsonPieces(string(b.Input)), "input_json_delta"
			b.Input = json.RawMessage("{}")
		} else {
			chunks, kind = pieces(*b.Text), "text_delta"
			empty := ""
			b.Text = &empty
		}
		idx := i
		if !send(&anthropicEvent{Type: "content_block_start", Index: &idx, ContentBlock: &b}) {
			s.clientGone()
			return
		}
		if i == 0 && !send(&anthropicEvent{Type: "ping"}) {
			s.clientGone()
			return
		}
		for _, c := range chunks {
			if f.Kind == FaultCut && sent == f.Chunks {
				panic(http.ErrAbortHandler)
			}
			if sent > 0 && !s.wait(ctx, s.cfg.ChunkDelay) {
				s.clientGone()
				return
			}
			d := anthropicBlockDelta{Type: kind}
			if kind == "text_delta" {
				d.Text = &c
			} else {
				d.PartialJSON = &c
			}
			if !send(&anthropicEvent{Type: "content_block_delta", Index: &idx, Delta: &d}) {
				s.clientGone()
				return
			}
			sent++
		}
		if f.Kind == FaultCut {
			panic(http.ErrAbortHandler)
		}
		if !send(&anthropicEvent{Type: "content_block_stop", Index: &idx}) {
			s.clientGone()
			return
		}
	}
	if !s.wait(ctx, s.cfg.ChunkDelay) {
		s.clientGone()
		return
	}
	md := anthropicMessageDelta{StopReason: &stopReason, StopSequence: res.StopSequence}
	if !send(&anthropicEvent{Type: "message_delta", Delta: &md, Usage: &anthropicDeltaUsage{OutputTokens: usage.OutputTokens}}) {
		s.clientGone()
		return
	}
	if !send(&anthropicEvent{Type: "message_stop"}) {
		s.clientGone()
	}
}

// maxJSONPiece is the most bytes of a tool call's arguments one streamed delta carries.
const maxJSONPiece = 8

// jsonPieces splits a tool call's JSON arguments into deltas of at most maxJSONPiece bytes,
// never inside a UTF-8 sequence, so the deltas concatenate to args.
func jsonPieces(args string) []string {
	out := make([]string, 0, len(args)/maxJSONPiece+1)
	for len(args) > 0 {
		n := min(maxJSONPiece, len(args))
		for n < len(args) && n > 1 && !utf8.RuneStart(args[n]) {
			n--
		}
		out = append(out, args[:n])
		args = args[n:]
	}
	return out
}

// writeAnthropicFault answers with f's status in Anthropic's error shape. A 503 is answered
// as Anthropic signals overload: 529 overloaded_error.
func writeAnthropicFault(w http.ResponseWriter, model string, f Fault) {
	if f.RetryAfter > 0 {
		secs := int64(math.Ceil(f.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	switch f.Status {
	case http.StatusTooManyRequests:
		writeAnthropicError(w, f.Status, "rate_limit_error",
			"This request would exceed the rate limit for "+model+" (simulated).")
	case http.StatusServiceUnavailable, anthropicOverloaded:
		writeAnthropicError(w, anthropicOverloaded, "overloaded_error", "Overloaded (simulated)")
	case http.StatusBadRequest:
		writeAnthropicError(w, f.Status, "invalid_request_error", "Invalid request (simulated)")
	case http.StatusUnauthorized:
		writeAnthropicError(w, f.Status, "authentication_error", "invalid x-api-key (simulated)")
	case http.StatusForbidden:
		writeAnthropicError(w, f.Status, "permission_error", "Your API key does not have permission to use the specified resource. (simulated)")
	case http.StatusNotFound:
		writeAnthropicError(w, f.Status, "not_found_error", "model: "+model+" (simulated)")
	case http.StatusRequestEntityTooLarge:
		writeAnthropicError(w, f.Status, "request_too_large", "Request exceeds the maximum allowed number of bytes. (simulated)")
	default:
		typ := "api_error"
		if f.Status < 500 {
			typ = "invalid_request_error"
		}
		writeAnthropicError(w, f.Status, typ, http.StatusText(f.Status)+" (simulated)")
	}
}

func writeAnthropicError(w http.ResponseWriter, status int, typ, msg string) {
	writeJSON(w, status, anthropicErrorBody{Type: "error", Error: anthropicErrorDetail{Type: typ, Message: msg}})
}
