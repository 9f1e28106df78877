package simulator

// The OpenAI dialect: chat completions (plain and SSE streaming, with tools and response
// formats), embeddings and the model list, with OpenAI's field names, object types,
// validation messages and error shape. The Azure OpenAI dialect (azure.go) serves the same
// bodies through the handlers here.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

func (s *Simulator) registerOpenAI(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		if s.openAIAuthorized(w, r) {
			s.chat(w, r, "")
		}
	})
	mux.HandleFunc("POST /v1/embeddings", func(w http.ResponseWriter, r *http.Request) {
		if s.openAIAuthorized(w, r) {
			s.embeddings(w, r, "")
		}
	})
	mux.HandleFunc("GET /v1/models", s.openAIModels)
	mux.HandleFunc("GET /v1/models/{model}", s.openAIModel)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeOpenAIError(w, http.StatusNotFound, "Invalid URL ("+r.Method+" "+r.URL.Path+")",
			"invalid_request_error", "", "")
	})
}

// The request fields the simulator reads; the rest are accepted and ignored, as a model that
// does not use them would.
type openAIChatRequest struct {
	Model               string                `json:"model"`
	Messages            []openAIMessage       `json:"messages"`
	Stream              bool                  `json:"stream"`
	StreamOptions       *openAIStreamOpts     `json:"stream_options"`
	MaxTokens           *int64                `json:"max_tokens"`
	MaxCompletionTokens *int64                `json:"max_completion_tokens"`
	N                   *int64                `json:"n"`
	Seed                *int64                `json:"seed"`
	User                *string               `json:"user"`
	Temperature         *float64              `json:"temperature"`
	TopP                *float64              `json:"top_p"`
	FrequencyPenalty    *float64              `json:"frequency_penalty"`
	PresencePenalty     *float64              `json:"presence_penalty"`
	Stop                json.RawMessage       `json:"stop"`
	Tools               []openAITool          `json:"tools"`
	ToolChoice          json.RawMessage       `json:"tool_choice"`
	ResponseFormat      *openAIResponseFormat `json:"response_format"`
}

type openAIStreamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type openAIMessage struct {
	Role       string           `json:"role"`
	Content    json.RawMessage  `json:"content"`
	Name       string           `json:"name"`
	ToolCalls  []openAIToolCall `json:"tool_calls"`
	ToolCallID string           `json:"tool_call_id"`
}

type openAIContentPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Refusal  string `json:"refusal"`
	ImageURL *struct {
		URL    string `json:"url"`
		Detail string `json:"detail"`
	} `json:"image_url"`
}

type openAIToolCall struct {
	ID       string             `json:"id"`
	Type     string             `json:"type"`
	Function openAIFunctionCall `json:"function"`
}

type openAIFunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type openAITool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

type openAINamedToolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

type openAIResponseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	} `json:"json_schema"`
}

type openAICompletion struct {
	ID                string         `json:"id"`
	Object            string         `json:"object"`
	Created           int64          `json:"created"`
	Model             string         `json:"model"`
	Choices           []openAIChoice `json:"choices"`
	Usage             *openAIUsage   `json:"usage,omitempty"`
	ServiceTier       string         `json:"service_tier"`
	SystemFingerprint string         `json:"system_fingerprint"`
}

type openAIChoice struct {
	Index        int                `json:"index"`
	Message      openAIReplyMessage `json:"message"`
	Logprobs     *struct{}          `json:"logprobs"`
	FinishReason string             `json:"finish_reason"`
}

type openAIReplyMessage struct {
	Role        string           `json:"role"`
	Content     *string          `json:"content"`
	Refusal     *string          `json:"refusal"`
	ToolCalls   []openAIToolCall `json:"tool_calls,omitempty"`
	Annotations []struct{}       `json:"annotations"`
}

type openAIChunk struct {
	ID                string              `json:"id"`
	Object            string              `json:"object"`
	Created           int64               `json:"created"`
	Model             string              `json:"model"`
	ServiceTier       string              `json:"service_tier,omitempty"`
	SystemFingerprint string              `json:"system_fingerprint,omitempty"`
	Choices           []openAIChunkChoice `json:"choices"`
	Usage             *openAIUsage        `json:"usage,omitempty"`
	// PromptFilterResults is sent by Azure OpenAI, in a first chunk without choices.
	PromptFilterResults []azurePromptFilter `json:"prompt_filter_results,omitempty"`
}

type openAIChunkChoice struct {
	Index        int         `json:"index"`
	Delta        openAIDelta `json:"delta"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason *string     `json:"finish_reason"`
}

type openAIDelta struct {
	Role      string                `json:"role,omitempty"`
	Content   *string               `json:"content,omitempty"`
	ToolCalls []openAIToolCallDelta `json:"tool_calls,omitempty"`
}

type openAIToolCallDelta struct {
	Index    int                 `json:"index"`
	ID       string              `json:"id,omitempty"`
	Type     string              `json:"type,omitempty"`
	Function openAIFunctionDelta `json:"function"`
}

type openAIFunctionDelta struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

type openAIUsage struct {
	PromptTokens            int64                   `json:"prompt_tokens"`
	CompletionTokens        int64                   `json:"completion_tokens"`
	TotalTokens             int64                   `json:"total_tokens"`
	PromptTokensDetails     openAIPromptDetails     `json:"prompt_tokens_details"`
	CompletionTokensDetails openAICompletionDetails `json:"completion_tokens_details"`
}

type openAIPromptDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
	AudioTokens  int64 `json:"audio_tokens"`
}

type openAICompletionDetails struct {
	ReasoningTokens          int64 `json:"reasoning_tokens"`
	AudioTokens              int64 `json:"audio_tokens"`
	AcceptedPredictionTokens int64 `json:"accepted_prediction_tokens"`
	RejectedPredictionTokens int64 `json:"rejected_prediction_tokens"`
}

type openAIEmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     *int64          `json:"dimensions"`
	EncodingFormat string          `json:"encoding_format"`
	User           *string         `json:"user"`
}

type openAIEmbeddingList struct {
	Object string            `json:"object"`
	Data   []openAIEmbedding `json:"data"`
	Model  string            `json:"model"`
	Usage  openAIEmbedUsage  `json:"usage"`
}

type openAIEmbedding struct {
	Object    string `json:"object"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"` // []float32, or a base64 string of little-endian float32s
}

type openAIEmbedUsage struct {
	PromptTokens int64 `json:"prompt_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}

type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type openAIModelList struct {
	Object string        `json:"object"`
	Data   []openAIModel `json:"data"`
}

type openAIErrorBody struct {
	Error openAIErrorDetail `json:"error"`
}

type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

const (
	openAIFingerprint = "fp_fmgate_sim"
	// modelsCreated is the fixed creation time of listed models (2024-01-01).
	modelsCreated = 1704067200
	// maxStops and maxEmbeddingInputs are OpenAI's limits.
	maxStops           = 4
	maxEmbeddingInputs = 2048
	// argumentPiece is the most bytes of a tool call's arguments in one streamed chunk.
	argumentPiece = 8
)

var (
	noAnnotations = []struct{}{}
	// namePattern is what OpenAI accepts as a function or schema name.
	namePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)
)

func (s *Simulator) openAIAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	h := r.Header.Get("Authorization")
	if token, ok := strings.CutPrefix(h, "Bearer "); ok && token == s.cfg.APIKey {
		return true
	}
	msg := "Incorrect API key provided."
	if h == "" {
		msg = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	}
	// The presented key is never echoed: it may be a real secret sent to the wrong place.
	writeOpenAIError(w, http.StatusUnauthorized, msg, "invalid_request_error", "", "invalid_api_key")
	return false
}

func (s *Simulator) openAIModels(w http.ResponseWriter, r *http.Request) {
	if !s.openAIAuthorized(w, r) {
		return
	}
	list := openAIModelList{Object: "list", Data: make([]openAIModel, len(s.cfg.Models))}
	for i, m := range s.cfg.Models {
		list.Data[i] = openAIModel{ID: m, Object: "model", Created: modelsCreated, OwnedBy: "fmgate"}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Simulator) openAIModel(w http.ResponseWriter, r *http.Request) {
	if !s.openAIAuthorized(w, r) {
		return
	}
	id := r.PathValue("model")
	for _, m := range s.cfg.Models {
		if m == id {
			writeJSON(w, http.StatusOK, openAIModel{ID: m, Object: "model", Created: modelsCreated, OwnedBy: "fmgate"})
			return
		}
	}
	writeOpenAIError(w, http.StatusNotFound, "The model '"+id+"' does not exist", "invalid_request_error", "model", "model_not_found")
}

// paramError is a request OpenAI would refuse with 400, naming the offending parameter.
type paramError struct{ param, msg string }

func badParam(param, msg string) *paramError { return &paramError{param: param, msg: msg} }

// decodeOpenAIBody decodes a JSON body into v, answering 413 or 400 itself when it cannot.
func decodeOpenAIBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	err := dec.Decode(v)
	if err == nil {
		return true
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		writeOpenAIError(w, http.StatusRequestEntityTooLarge,
			"Request body too large: the limit is "+strconv.Itoa(MaxBodyBytes)+" bytes.", "invalid_request_error", "", "")
		return false
	}
	if ute := (*json.UnmarshalTypeError)(nil); errors.As(err, &ute) && ute.Field != "" {
		writeOpenAIError(w, http.StatusBadRequest,
			"Invalid type for '"+ute.Field+"': expected "+jsonTypeName(ute.Type.Kind().String())+", but got "+ute.Value+" instead.",
			"invalid_request_error", ute.Field, "invalid_type")
		return false
	}
	writeOpenAIError(w, http.StatusBadRequest,
		"We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
		"invalid_request_error", "", "")
	return false
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64", "int32":
		return "an integer"
	case "float64", "float32":
		return "a decimal"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a " + kind
}

// chat answers a chat completion. deployment, when set (Azure OpenAI), names the model in
// place of the body's model field.
func (s *Simulator) chat(w http.ResponseWriter, r *http.Request, deployment string) {
	var req openAIChatRequest
	if !decodeOpenAIBody(w, r, &req) {
		return
	}
	if deployment != "" {
		req.Model = deployment
	}
	plan, perr := planOpenAIChat(&req)
	if perr != nil {
		writeOpenAIError(w, http.StatusBadRequest, perr.msg, "invalid_request_error", perr.param, "")
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
		writeOpenAIFault(w, req.Model, f)
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

	rep := plan.reply(req.Model, "call_sim_"+strconv.FormatUint(s.ids.Add(1), 10))
	usage := openAIUsage{
		PromptTokens:     int64(plan.promptTokens),
		CompletionTokens: int64(rep.completionTokens),
		TotalTokens:      int64(plan.promptTokens + rep.completionTokens),
	}
	id := "chatcmpl-sim-" + strconv.FormatUint(s.ids.Add(1), 10)
	created := time.Now().Unix()

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		s.openAIStream(w, r, streamHead{id: id, created: created, model: req.Model, azure: deployment != ""},
			rep, f, includeUsage, &usage)
		return
	}
	msg := openAIReplyMessage{Role: "assistant", Annotations: noAnnotations}
	if rep.toolCall != nil {
		msg.ToolCalls = []openAIToolCall{*rep.toolCall}
	} else {
		msg.Content = &rep.content
	}
	writeJSON(w, http.StatusOK, openAICompletion{
		ID:                id,
		Object:            "chat.completion",
		Created:           created,
		Model:             req.Model,
		Choices:           []openAIChoice{{Message: msg, FinishReason: rep.finish}},
		Usage:             &usage,
		ServiceTier:       "default",
		SystemFingerprint: openAIFingerprint,
	})
}

// chatPlan is what a validated request asks for.
type chatPlan struct {
	promptTokens int
	lastUser     string
	// toolResult is the text of the last message when it is a tool result, and toolName the
	// name of the call it answers.
	toolResult, toolName string
	afterToolResult      bool
	tools                []offeredTool
	mode                 toolMode
	named                string
	format               string         // "", "json_object" or "json_schema"
	schema               map[string]any // for json_schema
	stops                []string
	limit                int64
}

// chatReply is the answer to a chatPlan: text or one tool call.
type chatReply struct {
	content          string
	toolCall         *openAIToolCall
	finish           string
	completionTokens int
}

// reply applies the package's rules (see the package doc) to the plan.
func (p *chatPlan) reply(model, callID string) chatReply {
	if i := pickTool(p.tools, p.mode, p.named, p.lastUser, p.afterToolResult); i >= 0 {
		t := p.tools[i]
		args := toolArguments(t.schema, p.lastUser)
		return chatReply{
			toolCall: &openAIToolCall{ID: callID, Type: "function", Function: openAIFunctionCall{Name: t.name, Arguments: args}},
			finish:   "tool_calls", completionTokens: countTokens(t.name) + countTokens(args),
		}
	}
	var words []string
	if p.afterToolResult {
		words = toolResultAnswer(model, p.toolName, p.toolResult)
	} else {
		words = answer(model, p.lastUser)
	}
	content := strings.Join(words, " ")
	switch p.format {
	case "json_object":
		content = jsonObjectAnswer(content)
	case "json_schema":
		content = jsonSchemaAnswer(p.schema, content)
	}
	finish := "stop"
	content, _ = applyStop(content, p.stops)
	if c, cut := limitTokens(content, p.limit); cut {
		content, finish = c, "length"
	}
	return chatReply{content: content, finish: finish, completionTokens: countTokens(content)}
}

// planOpenAIChat validates req as OpenAI does and returns what it asks for, or the
// offending parameter.
func planOpenAIChat(req *openAIChatRequest) (*chatPlan, *paramError) {
	p := &chatPlan{}
	if req.Model == "" {
		return nil, badParam("model", "you must provide a model parameter")
	}
	if len(req.Messages) == 0 {
		return nil, badParam("messages", "[] is too short - 'messages'")
	}
	for _, c := range []struct {
		name string
		v    *int64
	}{{"max_tokens", req.MaxTokens}, {"max_completion_tokens", req.MaxCompletionTokens}, {"n", req.N}} {
		if c.v != nil && *c.v < 1 {
			return nil, badParam(c.name, "Invalid '"+c.name+"': integer below minimum value. Expected a value >= 1, but got "+
				strconv.FormatInt(*c.v, 10)+" instead.")
		}
	}
	if req.N != nil && *req.N > 1 {
		return nil, badParam("n", "Invalid 'n': the simulator answers with one choice, so 'n' must be 1.")
	}
	for _, c := range []struct {
		name   string
		v      *float64
		lo, hi float64
	}{
		{"temperature", req.Temperature, 0, 2}, {"top_p", req.TopP, 0, 1},
		{"frequency_penalty", req.FrequencyPenalty, -2, 2}, {"presence_penalty", req.PresencePenalty, -2, 2},
	} {
		if err := checkRange(c.name, c.v, c.lo, c.hi); err != nil {
			return nil, err
		}
	}
	if req.MaxTokens != nil {
		p.limit = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil {
		p.limit = *req.MaxCompletionTokens
	}
	var err *paramError
	if p.stops, err = parseStop(req.Stop); err != nil {
		return nil, err
	}
	if err := p.parseTools(req); err != nil {
		return nil, err
	}
	if err := p.parseFormat(req.ResponseFormat); err != nil {
		return nil, err
	}
	if err := p.parseMessages(req.Messages); err != nil {
		return nil, err
	}
	return p, nil
}

func checkRange(name string, v *float64, lo, hi float64) *paramError {
	if v == nil {
		return nil
	}
	got := strconv.FormatFloat(*v, 'g', -1, 64)
	switch {
	case math.IsNaN(*v) || *v < lo:
		return badParam(name, "Invalid '"+name+"': decimal below minimum value. Expected a value >= "+
			strconv.FormatFloat(lo, 'g', -1, 64)+", but got "+got+" instead.")
	case *v > hi:
		return badParam(name, "Invalid '"+name+"': decimal above maximum value. Expected a value <= "+
			strconv.FormatFloat(hi, 'g', -1, 64)+", but got "+got+" instead.")
	}
	return nil
}

// parseStop reads stop: null, a string or an array of at most four strings.
func parseStop(raw json.RawMessage) ([]string, *paramError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) != nil {
		return nil, badParam("stop", "Invalid type for 'stop': expected one of a string or array of strings.")
	}
	if len(many) > maxStops {
		return nil, badParam("stop", "Invalid 'stop': array too long. Expected an array with maximum length 4, but got an array with length "+
			strconv.Itoa(len(many))+" instead.")
	}
	return many, nil
}

func (p *chatPlan) parseTools(req *openAIChatRequest) *paramError {
	for i, t := range req.Tools {
		f := "tools[" + strconv.Itoa(i) + "]"
		if t.Type != "function" {
			return badParam(f+".type", "Invalid value: '"+t.Type+"'. Supported values are: 'function' and 'custom'.")
		}
		if !namePattern.MatchString(t.Function.Name) {
			return badParam(f+".function.name", "Invalid '"+f+".function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$' with at most 64 characters.")
		}
		if ps := bytes.TrimSpace(t.Function.Parameters); len(ps) > 0 && ps[0] != '{' {
			return badParam(f+".function.parameters", "Invalid type for '"+f+".function.parameters': expected an object.")
		}
		p.tools = append(p.tools, offeredTool{name: t.Function.Name, schema: t.Function.Parameters})
	}
	raw := bytes.TrimSpace(req.ToolChoice)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		if len(p.tools) == 0 {
			p.mode = toolNone
		}
		return nil
	}
	if len(p.tools) == 0 {
		return badParam("tool_choice", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "none":
			p.mode = toolNone
		case "auto":
			p.mode = toolAuto
		case "required":
			p.mode = toolRequired
		default:
			return badParam("tool_choice", "Invalid value: '"+mode+"'. Supported values are: 'none', 'auto', and 'required'.")
		}
		return nil
	}
	var named openAINamedToolChoice
	if json.Unmarshal(raw, &named) != nil || named.Type != "function" {
		return badParam("tool_choice", "Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a named function.")
	}
	for _, t := range p.tools {
		if t.name == named.Function.Name {
			p.mode, p.named = toolNamed, t.name
			return nil
		}
	}
	return badParam("tool_choice", "Invalid value for 'tool_choice': tool '"+named.Function.Name+"' is not one of the tools.")
}

func (p *chatPlan) parseFormat(rf *openAIResponseFormat) *paramError {
	if rf == nil {
		return nil
	}
	switch rf.Type {
	case "text":
	case "json_object":
		p.format = rf.Type
	case "json_schema":
		if rf.JSONSchema == nil {
			return badParam("response_format.json_schema", "Missing required parameter: 'response_format.json_schema'.")
		}
		if rf.JSONSchema.Name == "" {
			return badParam("response_format.json_schema.name", "Missing required parameter: 'response_format.json_schema.name'.")
		}
		if !namePattern.MatchString(rf.JSONSchema.Name) {
			return badParam("response_format.json_schema.name", "Invalid 'response_format.json_schema.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'.")
		}
		p.format = rf.Type
		p.schema = map[string]any{}
		if len(bytes.TrimSpace(rf.JSONSchema.Schema)) > 0 && json.Unmarshal(rf.JSONSchema.Schema, &p.schema) != nil {
			return badParam("response_format.json_schema.schema", "Invalid type for 'response_format.json_schema.schema': expected an object.")
		}
	default:
		return badParam("response_format.type", "Invalid value: '"+rf.Type+"'. Supported values are: 'text', 'json_object', and 'json_schema'.")
	}
	return nil
}

func (p *chatPlan) parseMessages(msgs []openAIMessage) *paramError {
	// Every tool call must be answered by a tool message, and every tool message must answer
	// a call of an earlier assistant message.
	calls := map[string]string{} // id → tool name
	pending := []string{}        // ids of the last assistant message not yet answered
	pendingAt := 0
	mentionsJSON := false
	for i := range msgs {
		m := &msgs[i]
		f := "messages[" + strconv.Itoa(i) + "]"
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool", "function":
		case "":
			return badParam(f+".role", "Missing required parameter: '"+f+".role'.")
		default:
			return badParam(f+".role", "Invalid value: '"+m.Role+"'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.")
		}
		if m.Role != "tool" && len(pending) > 0 {
			return unansweredCalls(pendingAt, pending)
		}
		text, images, err := openAIText(m.Content, m.Role, f)
		if err != nil {
			return err
		}
		p.promptTokens += countTokens(text) + images*imageTokens
		mentionsJSON = mentionsJSON || strings.Contains(strings.ToLower(text), "json")
		p.afterToolResult = false
		switch m.Role {
		case "user":
			p.lastUser = text
		case "assistant":
			for j, tc := range m.ToolCalls {
				if tc.ID == "" || tc.Function.Name == "" {
					return badParam(f+".tool_calls["+strconv.Itoa(j)+"]", "Missing required parameter: '"+f+".tool_calls["+strconv.Itoa(j)+"].id' or '.function.name'.")
				}
				calls[tc.ID] = tc.Function.Name
				pending = append(pending, tc.ID)
				p.promptTokens += countTokens(tc.Function.Name) + countTokens(tc.Function.Arguments)
			}
			pendingAt = i
		case "tool":
			name, ok := calls[m.ToolCallID]
			if !ok {
				return badParam(f+".role", "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.")
			}
			for j, id := range pending {
				if id == m.ToolCallID {
					pending = append(pending[:j], pending[j+1:]...)
					break
				}
			}
			p.afterToolResult, p.toolResult, p.toolName = true, text, name
		}
	}
	if len(pending) > 0 {
		return unansweredCalls(pendingAt, pending)
	}
	if p.format == "json_object" && !mentionsJSON {
		return badParam("messages", "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.")
	}
	return nil
}

func unansweredCalls(at int, ids []string) *paramError {
	return badParam("messages.["+strconv.Itoa(at)+"].role",
		"An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: "+
			strings.Join(ids, ", "))
}

// openAIText returns the text of a message's content (a string, an array of parts whose
// text parts are joined by spaces, or null) and its number of images.
func openAIText(raw json.RawMessage, role, field string) (string, int, *paramError) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", 0, nil
	}
	invalid := badParam(field+".content", "Invalid type for '"+field+".content': expected a string or an array of content parts.")
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", 0, invalid
		}
		return s, 0, nil
	case '[':
		var parts []openAIContentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", 0, invalid
		}
		var b strings.Builder
		images := 0
		for j, part := range parts {
			pf := field + ".content[" + strconv.Itoa(j) + "]"
			switch {
			case part.Type == "text":
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(part.Text)
			case part.Type == "image_url" && role == "user":
				if part.ImageURL == nil || !validImageURL(part.ImageURL.URL) {
					return "", 0, badParam(pf+".image_url.url", "Invalid '"+pf+".image_url.url'. Expected a https URL or a base64-encoded data URL with an image MIME type (e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU=').")
				}
				switch part.ImageURL.Detail {
				case "", "auto", "low", "high":
				default:
					return "", 0, badParam(pf+".image_url.detail", "Invalid value: '"+part.ImageURL.Detail+"'. Supported values are: 'auto', 'low', and 'high'.")
				}
				images++
			case part.Type == "refusal" && role == "assistant":
			default:
				return "", 0, badParam(pf+".type", "Invalid value: '"+part.Type+"'. Supported values for role '"+role+"' do not include it.")
			}
		}
		return b.String(), images, nil
	}
	return "", 0, invalid
}

func validImageURL(u string) bool {
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return len(u) > len("https://")
	}
	mediaType, data, ok := strings.Cut(strings.TrimPrefix(u, "data:"), ";base64,")
	return ok && strings.HasPrefix(u, "data:image/") && mediaType != "image/" && data != ""
}

// streamHead is what every chunk of one stream repeats.
type streamHead struct {
	id      string
	created int64
	model   string
	azure   bool
}

func (s *Simulator) openAIStream(w http.ResponseWriter, r *http.Request, head streamHead, rep chatReply,
	f Fault, includeUsage bool, usage *openAIUsage) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	send := func(v any) bool {
		buf.Reset()
		buf.WriteString("data: ")
		if v == nil {
			buf.WriteString("[DONE]\n")
		} else if err := enc.Encode(v); err != nil {
			return false
		}
		buf.WriteByte('\n')
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	gone := func() { s.clientGone() }

	if head.azure {
		// Azure OpenAI first reports its prompt filtering, in a chunk without an id, a
		// model or choices.
		if !send(&openAIChunk{Choices: []openAIChunkChoice{}, PromptFilterResults: azureNoFilter}) {
			gone()
			return
		}
	}
	chunk := openAIChunk{
		ID: head.id, Object: "chat.completion.chunk", Created: head.created, Model: head.model,
		ServiceTier: "default", SystemFingerprint: openAIFingerprint,
		Choices: []openAIChunkChoice{{}},
	}
	delta := &chunk.Choices[0].Delta
	var parts []string
	setPart := func(p string) { delta.Content = &p }
	if tc := rep.toolCall; tc != nil {
		// The first chunk names the call; its arguments follow in pieces.
		delta.Role = "assistant"
		delta.ToolCalls = []openAIToolCallDelta{{ID: tc.ID, Type: "function", Function: openAIFunctionDelta{Name: tc.Function.Name}}}
		if !send(&chunk) {
			gone()
			return
		}
		parts = argumentPieces(tc.Function.Arguments)
		setPart = func(p string) {
			delta.ToolCalls = []openAIToolCallDelta{{Function: openAIFunctionDelta{Arguments: p}}}
		}
	} else {
		empty := ""
		delta.Role, delta.Content = "assistant", &empty
		if !send(&chunk) {
			gone()
			return
		}
		parts = pieces(rep.content)
	}
	delta.Role = ""
	for i, part := range parts {
		if f.Kind == FaultCut && i == f.Chunks {
			panic(http.ErrAbortHandler)
		}
		if i > 0 && !s.wait(ctx, s.cfg.ChunkDelay) {
			gone()
			return
		}
		setPart(part)
		if !send(&chunk) {
			gone()
			return
		}
	}
	if f.Kind == FaultCut {
		panic(http.ErrAbortHandler)
	}
	if !s.wait(ctx, s.cfg.ChunkDelay) {
		gone()
		return
	}
	*delta = openAIDelta{}
	chunk.Choices[0].FinishReason = &rep.finish
	if !send(&chunk) {
		gone()
		return
	}
	if includeUsage {
		chunk.Choices = chunk.Choices[:0]
		chunk.Usage = usage
		if !send(&chunk) {
			gone()
			return
		}
	}
	if !send(nil) {
		gone()
	}
}

// argumentPieces splits a tool call's arguments into pieces of at most argumentPiece bytes,
// at rune boundaries.
func argumentPieces(args string) []string {
	var out []string
	for len(args) > 0 {
		n := min(argumentPiece, len(args))
		for n < len(args) && !utf8.RuneStart(args[n]) {
			n--
		}
		if n == 0 { // a rune longer than a piece
			_, n = utf8.DecodeRuneInString(args)
		}
		out = append(out, args[:n])
		args = args[n:]
	}
	return out
}

// embeddings answers an embeddings request. deployment, when set (Azure OpenAI), names the
// model in place of the body's model field.
func (s *Simulator) embeddings(w http.ResponseWriter, r *http.Request, deployment string) {
	var req openAIEmbeddingRequest
	if !decodeOpenAIBody(w, r, &req) {
		return
	}
	if deployment != "" {
		req.Model = deployment
	}
	inputs, dims, perr := s.planEmbeddings(&req)
	if perr != nil {
		writeOpenAIError(w, http.StatusBadRequest, perr.msg, "invalid_request_error", perr.param, "")
		return
	}
	s.requests.Add(1)
	ctx := r.Context()
	if !s.wait(ctx, s.cfg.Latency) {
		s.clientGone()
		return
	}
	switch f := s.fault(req.Model); f.Kind {
	case FaultStatus:
		writeOpenAIFault(w, req.Model, f)
		return
	case FaultHang:
		<-ctx.Done()
		s.clientGone()
		return
	case FaultCut:
		panic(http.ErrAbortHandler)
	}
	res := openAIEmbeddingList{Object: "list", Model: req.Model, Data: make([]openAIEmbedding, len(inputs))}
	for i, in := range inputs {
		v := embedding(in, dims)
		res.Data[i] = openAIEmbedding{Object: "embedding", Index: i, Embedding: v}
		if req.EncodingFormat == "base64" {
			b := make([]byte, 4*len(v))
			for j, x := range v {
				binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(x))
			}
			res.Data[i].Embedding = base64.StdEncoding.EncodeToString(b)
		}
		res.Usage.PromptTokens += int64(countTokens(in))
	}
	res.Usage.TotalTokens = res.Usage.PromptTokens
	writeJSON(w, http.StatusOK, res)
}

// planEmbeddings validates req as OpenAI does and returns its inputs and the vector length.
func (s *Simulator) planEmbeddings(req *openAIEmbeddingRequest) ([]string, int, *paramError) {
	if req.Model == "" {
		return nil, 0, badParam("model", "you must provide a model parameter")
	}
	raw := bytes.TrimSpace(req.Input)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, 0, badParam("input", "Missing required parameter: 'input'.")
	}
	var inputs []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		inputs = []string{one}
	} else if json.Unmarshal(raw, &inputs) != nil {
		var tokens []json.RawMessage
		if json.Unmarshal(raw, &tokens) == nil {
			return nil, 0, badParam("input", "Invalid 'input': token arrays are not supported by the simulator; send strings.")
		}
		return nil, 0, badParam("input", "Invalid type for 'input': expected a string or an array of strings.")
	}
	if len(inputs) == 0 {
		return nil, 0, badParam("input", "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.")
	}
	if len(inputs) > maxEmbeddingInputs {
		return nil, 0, badParam("input", "Invalid 'input': array too long. Expected an array with maximum length 2048, but got an array with length "+
			strconv.Itoa(len(inputs))+" instead.")
	}
	for i, in := range inputs {
		if in == "" {
			return nil, 0, badParam("input", "'$.input' is invalid: input["+strconv.Itoa(i)+"] is an empty string.")
		}
	}
	switch req.EncodingFormat {
	case "", "float", "base64":
	default:
		return nil, 0, badParam("encoding_format", "Invalid value: '"+req.EncodingFormat+"'. Supported values are: 'float' and 'base64'.")
	}
	dims := s.cfg.EmbeddingDimensions
	if dims <= 0 {
		dims = DefaultEmbeddingDimensions
	}
	if d := req.Dimensions; d != nil {
		if *d < 1 || *d > MaxEmbeddingDimensions {
			return nil, 0, badParam("dimensions", "Invalid 'dimensions': expected a value between 1 and "+
				strconv.Itoa(MaxEmbeddingDimensions)+", but got "+strconv.FormatInt(*d, 10)+" instead.")
		}
		dims = int(*d)
	}
	return inputs, dims, nil
}

func writeOpenAIFault(w http.ResponseWriter, model string, f Fault) {
	if f.RetryAfter > 0 {
		secs := int64(math.Ceil(f.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	switch f.Status {
	case http.StatusTooManyRequests:
		writeOpenAIError(w, f.Status, "Rate limit reached for "+model+" (simulated).", "requests", "", "rate_limit_exceeded")
	case http.StatusServiceUnavailable:
		writeOpenAIError(w, f.Status, "The engine is currently overloaded, please try again later. (simulated)", "server_error", "", "")
	case http.StatusInternalServerError:
		writeOpenAIError(w, f.Status, "The server had an error while processing your request. Sorry about that! (simulated)", "server_error", "", "")
	default:
		typ := "server_error"
		if f.Status < 500 {
			typ = "invalid_request_error"
		}
		writeOpenAIError(w, f.Status, http.StatusText(f.Status)+" (simulated)", typ, "", "")
	}
}

func writeOpenAIError(w http.ResponseWriter, status int, msg, typ, param, code string) {
	d := openAIErrorDetail{Message: msg, Type: typ}
	if param != "" {
		d.Param = &param
	}
	if code != "" {
		d.Code = &code
	}
	writeJSON(w, status, openAIErrorBody{Error: d})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own fixed types are marshalled here.
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
