package simulator

// The OpenAI dialect: chat completions (plain and SSE streaming) and the model list, with
// OpenAI's field names, object types and error shape.

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func (s *Simulator) registerOpenAI(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/chat/completions", s.openAIChat)
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
	Model               string            `json:"model"`
	Messages            []openAIMessage   `json:"messages"`
	Stream              bool              `json:"stream"`
	StreamOptions       *openAIStreamOpts `json:"stream_options"`
	MaxTokens           *int64            `json:"max_tokens"`
	MaxCompletionTokens *int64            `json:"max_completion_tokens"`
}

type openAIStreamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type openAIMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type openAIContentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
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
	Role        string     `json:"role"`
	Content     string     `json:"content"`
	Refusal     *string    `json:"refusal"`
	Annotations []struct{} `json:"annotations"`
}

type openAIChunk struct {
	ID                string              `json:"id"`
	Object            string              `json:"object"`
	Created           int64               `json:"created"`
	Model             string              `json:"model"`
	ServiceTier       string              `json:"service_tier"`
	SystemFingerprint string              `json:"system_fingerprint"`
	Choices           []openAIChunkChoice `json:"choices"`
	Usage             *openAIUsage        `json:"usage,omitempty"`
}

type openAIChunkChoice struct {
	Index        int         `json:"index"`
	Delta        openAIDelta `json:"delta"`
	Logprobs     *struct{}   `json:"logprobs"`
	FinishReason *string     `json:"finish_reason"`
}

type openAIDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
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
)

var noAnnotations = []struct{}{}

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

func (s *Simulator) openAIChat(w http.ResponseWriter, r *http.Request) {
	if !s.openAIAuthorized(w, r) {
		return
	}
	var req openAIChatRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err := dec.Decode(&req); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeOpenAIError(w, http.StatusRequestEntityTooLarge,
				"Request body too large: the limit is "+strconv.Itoa(MaxBodyBytes)+" bytes.", "invalid_request_error", "", "")
			return
		}
		writeOpenAIError(w, http.StatusBadRequest,
			"We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
			"invalid_request_error", "", "")
		return
	}
	promptTokens, lastUser, param, msg := parseOpenAIRequest(&req)
	if param != "" {
		writeOpenAIError(w, http.StatusBadRequest, msg, "invalid_request_error", param, "")
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

	limit := int64(0)
	if req.MaxTokens != nil {
		limit = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil {
		limit = *req.MaxCompletionTokens
	}
	tokens, cut := truncate(answer(req.Model, lastUser), limit)
	finish := "stop"
	if cut {
		finish = "length"
	}
	usage := openAIUsage{
		PromptTokens:     int64(promptTokens),
		CompletionTokens: int64(len(tokens)),
		TotalTokens:      int64(promptTokens + len(tokens)),
	}
	id := "chatcmpl-sim-" + strconv.FormatUint(s.ids.Add(1), 10)
	created := time.Now().Unix()

	if req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		s.openAIStream(w, r, id, created, req.Model, tokens, finish, f, includeUsage, &usage)
		return
	}
	writeJSON(w, http.StatusOK, openAICompletion{
		ID:      id,
		Object:  "chat.completion",
		Created: created,
		Model:   req.Model,
		Choices: []openAIChoice{{
			Message: openAIReplyMessage{
				Role:        "assistant",
				Content:     strings.Join(tokens, " "),
				Annotations: noAnnotations,
			},
			FinishReason: finish,
		}},
		Usage:             &usage,
		ServiceTier:       "default",
		SystemFingerprint: openAIFingerprint,
	})
}

// parseOpenAIRequest validates req as OpenAI does and returns the prompt's token count and
// the text of the last user message, or the offending parameter and a message.
func parseOpenAIRequest(req *openAIChatRequest) (promptTokens int, lastUser, param, msg string) {
	if req.Model == "" {
		return 0, "", "model", "you must provide a model parameter"
	}
	if len(req.Messages) == 0 {
		return 0, "", "messages", "[] is too short - 'messages'"
	}
	if req.MaxTokens != nil && *req.MaxTokens < 1 {
		return 0, "", "max_tokens", "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1."
	}
	if req.MaxCompletionTokens != nil && *req.MaxCompletionTokens < 1 {
		return 0, "", "max_completion_tokens", "Invalid 'max_completion_tokens': integer below minimum value. Expected a value >= 1."
	}
	for i := range req.Messages {
		m := &req.Messages[i]
		switch m.Role {
		case "system", "developer", "user", "assistant", "tool", "function":
		case "":
			p := "messages[" + strconv.Itoa(i) + "].role"
			return 0, "", p, "Missing required parameter: '" + p + "'."
		default:
			p := "messages[" + strconv.Itoa(i) + "].role"
			return 0, "", p, "Invalid value: '" + m.Role + "'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
		}
		text, ok := openAIText(m.Content)
		if !ok {
			p := "messages[" + strconv.Itoa(i) + "].content"
			return 0, "", p, "Invalid type for '" + p + "': expected a string or an array of content parts."
		}
		promptTokens += countTokens(text)
		if m.Role == "user" {
			lastUser = text
		}
	}
	return promptTokens, lastUser, "", ""
}

// openAIText returns the text of a message's content: a string, an array of parts (the text
// parts joined by spaces), or null.
func openAIText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", true
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case '[':
		var parts []openAIContentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", false
		}
		var b strings.Builder
		for _, p := range parts {
			if p.Type != "text" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(p.Text)
		}
		return b.String(), true
	}
	return "", false
}

func (s *Simulator) openAIStream(w http.ResponseWriter, r *http.Request, id string, created int64,
	model string, tokens []string, finish string, f Fault, includeUsage bool, usage *openAIUsage) {
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

	empty := ""
	chunk := openAIChunk{
		ID: id, Object: "chat.completion.chunk", Created: created, Model: model,
		ServiceTier: "default", SystemFingerprint: openAIFingerprint,
		Choices: []openAIChunkChoice{{Delta: openAIDelta{Role: "assistant", Content: &empty}}},
	}
	if !send(&chunk) {
		gone()
		return
	}
	chunk.Choices[0].Delta.Role = ""
	var piece string
	for i, tok := range tokens {
		if f.Kind == FaultCut && i == f.Chunks {
			panic(http.ErrAbortHandler)
		}
		if i > 0 && !s.wait(ctx, s.cfg.ChunkDelay) {
			gone()
			return
		}
		piece = tok
		if i < len(tokens)-1 {
			piece = tok + " "
		}
		chunk.Choices[0].Delta.Content = &piece
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
	chunk.Choices[0].Delta.Content = nil
	chunk.Choices[0].FinishReason = &finish
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
