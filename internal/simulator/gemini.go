package simulator

// The Google Gemini API dialect (generativelanguage.googleapis.com, v1beta), as
// google.golang.org/genai speaks it with BackendGeminiAPI: generateContent,
// streamGenerateContent (SSE), batchEmbedContents and embedContent, and the model list, with
// Google's camelCase field names and error shape ({"error":{"code","message","status"}}).
//
// Requests are decoded strictly, as Google's JSON transcoding does: an unknown field is a 400
// ("Unknown name ... Cannot find field"), so that an adapter sending a misspelt field fails in
// tests instead of being silently ignored. The conversation rules that most often trip up
// clients are enforced too: roles are user or model, a function-response turn must follow a
// function-call turn with as many responses as calls, and allowedFunctionNames needs mode ANY.
//
// Authentication follows the real API rather than a generic 401: a missing key is
// 403 PERMISSION_DENIED, a wrong key is 400 INVALID_ARGUMENT with an ErrorInfo detail whose
// reason is API_KEY_INVALID. Clients must recognise that 400 as a credential failure.
//
// Answers, tokens, stop sequences, length, JSON output, tool calls and embeddings follow the
// shared rules of the package doc. In Gemini's terms: functionDeclarations are the tools
// (their parametersJsonSchema, or their parameters with Gemini's upper-case type names, are
// the schemas); functionCallingConfig NONE offers no tool, ANY with one allowed name names
// it, ANY otherwise requires one (among the allowed names, if given); a function-response
// turn is a tool result, quoted by the answer as JSON. responseMimeType application/json is
// the JSON-object format, or the JSON-schema format with responseJsonSchema or
// responseSchema; text/x.enum answers the schema's first enum value. A function call comes
// whole in one part (Gemini streams no argument pieces) with finish reason STOP, and has no
// id, as the Gemini API's calls have none. A streamed answer is one SSE event per token,
// each with the usage so far; the last carries the finish reason.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// geminiMaxBatch bounds the requests of one batchEmbedContents call.
const geminiMaxBatch = 100

func (s *Simulator) registerGemini(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1beta/models/{call}", s.geminiCall)
	mux.HandleFunc("GET /v1beta/models", s.geminiModels)
	mux.HandleFunc("GET /v1beta/models/{model}", s.geminiModel)
	mux.HandleFunc("/v1beta/", func(w http.ResponseWriter, r *http.Request) {
		writeGeminiError(w, http.StatusNotFound, "Method not found.", nil)
	})
}

// The request fields of generateContent. Fields the simulator accepts but does not use are
// json.RawMessage, so that strict decoding still knows them.
type geminiRequest struct {
	Model             string            `json:"model"`
	Contents          []geminiContent   `json:"contents"`
	SystemInstruction *geminiContent    `json:"systemInstruction"`
	GenerationConfig  *geminiGenConfig  `json:"generationConfig"`
	Tools             []geminiTool      `json:"tools"`
	ToolConfig        *geminiToolConfig `json:"toolConfig"`
	SafetySettings    json.RawMessage   `json:"safetySettings"`
	CachedContent     json.RawMessage   `json:"cachedContent"`
	Labels            json.RawMessage   `json:"labels"`
	ServiceTier       json.RawMessage   `json:"serviceTier"`
	Store             json.RawMessage   `json:"store"`
	ContinuationToken json.RawMessage   `json:"continuationToken"`
}

type geminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []geminiPart `json:"parts"`
}

type geminiPart struct {
	Text                *string                 `json:"text,omitempty"`
	InlineData          *geminiBlob             `json:"inlineData,omitempty"`
	FileData            *geminiFileData         `json:"fileData,omitempty"`
	FunctionCall        *geminiFunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse    *geminiFunctionResponse `json:"functionResponse,omitempty"`
	Thought             bool                    `json:"thought,omitempty"`
	ThoughtSignature    json.RawMessage         `json:"thoughtSignature,omitempty"`
	ExecutableCode      json.RawMessage         `json:"executableCode,omitempty"`
	CodeExecutionResult json.RawMessage         `json:"codeExecutionResult,omitempty"`
	VideoMetadata       json.RawMessage         `json:"videoMetadata,omitempty"`
	PartMetadata        json.RawMessage         `json:"partMetadata,omitempty"`
	MediaResolution     json.RawMessage         `json:"mediaResolution,omitempty"`
}

type geminiBlob struct {
	MIMEType    string `json:"mimeType"`
	Data        []byte `json:"data"`
	DisplayName string `json:"displayName,omitempty"`
}

type geminiFileData struct {
	MIMEType    string `json:"mimeType"`
	FileURI     string `json:"fileUri"`
	DisplayName string `json:"displayName,omitempty"`
}

type geminiFunctionCall struct {
	ID   string         `json:"id,omitempty"`
	Name string         `json:"name"`
	Args map[string]any `json:"args,omitempty"`
}

type geminiFunctionResponse struct {
	ID           string          `json:"id,omitempty"`
	Name         string          `json:"name"`
	Response     map[string]any  `json:"response"`
	Parts        json.RawMessage `json:"parts,omitempty"`
	WillContinue json.RawMessage `json:"willContinue,omitempty"`
	Scheduling   json.RawMessage `json:"scheduling,omitempty"`
}

type geminiGenConfig struct {
	Temperature                *float64        `json:"temperature"`
	TopP                       *float64        `json:"topP"`
	TopK                       *float64        `json:"topK"`
	CandidateCount             *int64          `json:"candidateCount"`
	MaxOutputTokens            *int64          `json:"maxOutputTokens"`
	StopSequences              []string        `json:"stopSequences"`
	PresencePenalty            *float64        `json:"presencePenalty"`
	FrequencyPenalty           *float64        `json:"frequencyPenalty"`
	Seed                       *int64          `json:"seed"`
	ResponseMIMEType           string          `json:"responseMimeType"`
	ResponseSchema             json.RawMessage `json:"responseSchema"`
	ResponseJSONSchema         json.RawMessage `json:"responseJsonSchema"`
	ResponseLogprobs           json.RawMessage `json:"responseLogprobs"`
	Logprobs                   json.RawMessage `json:"logprobs"`
	ResponseModalities         json.RawMessage `json:"responseModalities"`
	MediaResolution            json.RawMessage `json:"mediaResolution"`
	SpeechConfig               json.RawMessage `json:"speechConfig"`
	ThinkingConfig             json.RawMessage `json:"thinkingConfig"`
	ImageConfig                json.RawMessage `json:"imageConfig"`
	EnableEnhancedCivicAnswers json.RawMessage `json:"enableEnhancedCivicAnswers"`
}

type geminiTool struct {
	FunctionDeclarations  []geminiFunctionDecl `json:"functionDeclarations"`
	GoogleSearch          json.RawMessage      `json:"googleSearch"`
	GoogleSearchRetrieval json.RawMessage      `json:"googleSearchRetrieval"`
	CodeExecution         json.RawMessage      `json:"codeExecution"`
	URLContext            json.RawMessage      `json:"urlContext"`
	ComputerUse           json.RawMessage      `json:"computerUse"`
	FileSearch            json.RawMessage      `json:"fileSearch"`
	GoogleMaps            json.RawMessage      `json:"googleMaps"`
	MCPServers            json.RawMessage      `json:"mcpServers"`
}

type geminiFunctionDecl struct {
	Name                 string          `json:"name"`
	Description          string          `json:"description"`
	Parameters           json.RawMessage `json:"parameters"`
	ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema"`
	Response             json.RawMessage `json:"response"`
	ResponseJSONSchema   json.RawMessage `json:"responseJsonSchema"`
	Behavior             json.RawMessage `json:"behavior"`
}

type geminiToolConfig struct {
	FunctionCallingConfig            *geminiFunctionCallingConfig `json:"functionCallingConfig"`
	RetrievalConfig                  json.RawMessage              `json:"retrievalConfig"`
	IncludeServerSideToolInvocations json.RawMessage              `json:"includeServerSideToolInvocations"`
}

type geminiFunctionCallingConfig struct {
	Mode                        string          `json:"mode"`
	AllowedFunctionNames        []string        `json:"allowedFunctionNames"`
	StreamFunctionCallArguments json.RawMessage `json:"streamFunctionCallArguments"`
}

type geminiResponse struct {
	Candidates    []geminiCandidate `json:"candidates"`
	UsageMetadata *geminiUsage      `json:"usageMetadata,omitempty"`
	ModelVersion  string            `json:"modelVersion"`
	ResponseID    string            `json:"responseId"`
}

type geminiCandidate struct {
	Content      geminiOutContent `json:"content"`
	FinishReason string           `json:"finishReason,omitempty"`
	Index        int              `json:"index"`
}

type geminiOutContent struct {
	Role  string          `json:"role"`
	Parts []geminiOutPart `json:"parts"`
}

type geminiOutPart struct {
	Text         string              `json:"text,omitempty"`
	FunctionCall *geminiFunctionCall `json:"functionCall,omitempty"`
}

type geminiUsage struct {
	PromptTokenCount     int `json:"promptTokenCount"`
	CandidatesTokenCount int `json:"candidatesTokenCount,omitempty"`
	TotalTokenCount      int `json:"totalTokenCount"`
}

type geminiEmbedRequest struct {
	Model                string          `json:"model"`
	Content              *geminiContent  `json:"content"`
	TaskType             json.RawMessage `json:"taskType"`
	Title                json.RawMessage `json:"title"`
	OutputDimensionality *int64          `json:"outputDimensionality"`
}

type geminiBatchEmbedRequest struct {
	Requests []geminiEmbedRequest `json:"requests"`
}

type geminiEmbedding struct {
	Values []float32 `json:"values"`
}

type geminiModelInfo struct {
	Name                       string   `json:"name"`
	BaseModelID                string   `json:"baseModelId"`
	Version                    string   `json:"version"`
	DisplayName                string   `json:"displayName"`
	Description                string   `json:"description"`
	InputTokenLimit            int      `json:"inputTokenLimit"`
	OutputTokenLimit           int      `json:"outputTokenLimit"`
	SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
}

type geminiErrorBody struct {
	Error geminiErrorDetail `json:"error"`
}

type geminiErrorDetail struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Status  string           `json:"status"`
	Details []map[string]any `json:"details,omitempty"`
}

func (s *Simulator) geminiAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	key := r.Header.Get("X-Goog-Api-Key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	switch key {
	case s.cfg.APIKey:
		return true
	case "":
		writeGeminiError(w, http.StatusForbidden,
			"Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", nil)
	default:
		// The presented key is never echoed: it may be a real secret sent to the wrong place.
		writeGeminiError(w, http.StatusBadRequest, "API key not valid. Please pass a valid API key.",
			[]map[string]any{{
				"@type":    "type.googleapis.com/google.rpc.ErrorInfo",
				"reason":   "API_KEY_INVALID",
				"domain":   "googleapis.com",
				"metadata": map[string]string{"service": "generativelanguage.googleapis.com"},
			}})
	}
	return false
}

func (s *Simulator) geminiModelInfo(name string) geminiModelInfo {
	return geminiModelInfo{
		Name: "models/" + name, BaseModelID: name, Version: "001", DisplayName: name,
		Description:     "Simulated model " + name + " (fmgate simulator).",
		InputTokenLimit: 1048576, OutputTokenLimit: 65536,
		SupportedGenerationMethods: []string{"generateContent", "countTokens", "embedContent", "batchEmbedContents"},
	}
}

func (s *Simulator) geminiModels(w http.ResponseWriter, r *http.Request) {
	if !s.geminiAuthorized(w, r) {
		return
	}
	models := make([]geminiModelInfo, len(s.cfg.Models))
	for i, m := range s.cfg.Models {
		models[i] = s.geminiModelInfo(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"models": models})
}

func (s *Simulator) geminiModel(w http.ResponseWriter, r *http.Request) {
	if !s.geminiAuthorized(w, r) {
		return
	}
	id := r.PathValue("model")
	for _, m := range s.cfg.Models {
		if m == id {
			writeJSON(w, http.StatusOK, s.geminiModelInfo(m))
			return
		}
	}
	writeGeminiError(w, http.StatusNotFound, "models/"+id+" is not found for API version v1beta, or is not supported for generateContent.", nil)
}

// geminiCall dispatches POST /v1beta/models/{model}:{method}.
func (s *Simulator) geminiCall(w http.ResponseWriter, r *http.Request) {
	call := r.PathValue("call")
	i := strings.LastIndexByte(call, ':')
	if i <= 0 {
		writeGeminiError(w, http.StatusNotFound, "Method not found.", nil)
		return
	}
	model, method := call[:i], call[i+1:]
	if !s.geminiAuthorized(w, r) {
		return
	}
	switch method {
	case "generateContent":
		s.geminiGenerate(w, r, model, false)
	case "streamGenerateContent":
		s.geminiGenerate(w, r, model, true)
	case "embedContent":
		s.geminiEmbed(w, r, model, false)
	case "batchEmbedContents":
		s.geminiEmbed(w, r, model, true)
	default:
		writeGeminiError(w, http.StatusNotFound, "Method not found.", nil)
	}
}

// geminiDecode decodes the body into v strictly and answers the error itself.
func geminiDecode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil || errors.Is(err, io.EOF) { // an empty body is an empty request
		return true
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		writeGeminiError(w, http.StatusRequestEntityTooLarge,
			"Request payload size exceeds the limit: "+strconv.Itoa(MaxBodyBytes)+" bytes.", nil)
		return false
	}
	msg := "Invalid JSON payload received."
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		msg += " Unknown name " + name + ": Cannot find field."
	}
	writeGeminiError(w, http.StatusBadRequest, msg, nil)
	return false
}

// geminiPlan is what a validated generateContent request asks for.
type geminiPlan struct {
	promptTokens int
	lastUser     string
	// toolResult is the JSON of the last function response when the last turn holds function
	// responses, and toolName its function's name.
	toolResult, toolName string
	afterToolResult      bool
	tools                []offeredTool
	mode                 toolMode
	named                string
	mimeType             string
	schema               map[string]any // responseJsonSchema or responseSchema, if any
	stops                []string
	limit                int64
	candidates           int
}

// geminiReply is the answer to a geminiPlan: text or one function call.
type geminiReply struct {
	content          string
	call             *geminiFunctionCall
	finish           string
	completionTokens int
}

// planGemini validates req as the Gemini API does and returns what it asks for, or the
// message of a 400.
func planGemini(req *geminiRequest) (*geminiPlan, string) {
	p := &geminiPlan{candidates: 1}
	if len(req.Contents) == 0 {
		return nil, "* GenerateContentRequest.contents: contents is not specified"
	}
	if req.SystemInstruction != nil {
		for _, part := range req.SystemInstruction.Parts {
			if part.Text != nil {
				p.promptTokens += countTokens(*part.Text)
			}
		}
	}
	if msg := p.parseConfig(req); msg != "" {
		return nil, msg
	}
	if msg := p.parseTools(req); msg != "" {
		return nil, msg
	}
	if msg := p.parseContents(req.Contents); msg != "" {
		return nil, msg
	}
	return p, ""
}

func (p *geminiPlan) parseContents(contents []geminiContent) string {
	prevCalls, prevRole := 0, ""
	for i := range contents {
		c := &contents[i]
		field := "* GenerateContentRequest.contents[" + strconv.Itoa(i) + "]"
		role := c.Role
		switch role {
		case "", "user", "function":
			role = "user"
		case "model":
		default:
			return "Please use a valid role: user, model."
		}
		if len(c.Parts) == 0 {
			return field + ".parts: contents.parts must not be empty."
		}
		var texts []string
		calls, responses := 0, 0
		for j := range c.Parts {
			part := &c.Parts[j]
			pf := field + ".parts[" + strconv.Itoa(j) + "]"
			n := 0
			if part.Text != nil {
				n++
				texts = append(texts, *part.Text)
				p.promptTokens += countTokens(*part.Text)
			}
			if part.InlineData != nil {
				n++
				if part.InlineData.MIMEType == "" {
					return pf + ".inline_data.mime_type: mime_type is required."
				}
				p.promptTokens += imageTokens
			}
			if part.FileData != nil {
				n++
				if part.FileData.FileURI == "" {
					return pf + ".file_data.file_uri: file_uri is required."
				}
				p.promptTokens += imageTokens
			}
			if fc := part.FunctionCall; fc != nil {
				n++
				calls++
				if fc.Name == "" {
					return pf + ".function_call.name: Name cannot be empty."
				}
				p.promptTokens += countTokens(fc.Name) + countTokens(marshalCompact(fc.Args))
			}
			if fr := part.FunctionResponse; fr != nil {
				n++
				responses++
				if fr.Name == "" {
					return pf + ".function_response.name: Name cannot be empty."
				}
				result := marshalCompact(fr.Response)
				p.promptTokens += countTokens(fr.Name) + countTokens(result)
				p.toolName, p.toolResult = fr.Name, result
			}
			if n == 0 && part.ExecutableCode == nil && part.CodeExecutionResult == nil && part.ThoughtSignature == nil {
				return pf + ": required oneof field 'data' must have one initialized field"
			}
		}
		switch {
		case calls > 0 && role != "model":
			return "Please ensure that function call turns come from the model."
		case calls > 0 && prevRole == "model":
			return "Please ensure that function call turn comes immediately after a user turn or after a function response turn."
		case responses > 0 && prevCalls == 0:
			return "Please ensure that function response turn comes immediately after a function call turn."
		case responses > 0 && responses != prevCalls:
			return "Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."
		}
		p.afterToolResult = responses > 0
		if role == "user" && responses == 0 && len(texts) > 0 {
			p.lastUser = strings.Join(texts, " ")
		}
		prevCalls, prevRole = calls, role
	}
	return ""
}

func (p *geminiPlan) parseConfig(req *geminiRequest) string {
	g := req.GenerationConfig
	if g == nil {
		return ""
	}
	const f = "* GenerateContentRequest.generation_config."
	switch {
	case g.Temperature != nil && (*g.Temperature < 0 || *g.Temperature > 2):
		return f + "temperature: temperature must be in the range [0.0, 2.0]"
	case g.TopP != nil && (*g.TopP < 0 || *g.TopP > 1):
		return f + "top_p: top_p must be in the range [0.0, 1.0]"
	case g.PresencePenalty != nil && (*g.PresencePenalty < -2 || *g.PresencePenalty >= 2):
		return f + "presence_penalty: presence_penalty must be in the range [-2.0, 2.0)"
	case g.FrequencyPenalty != nil && (*g.FrequencyPenalty < -2 || *g.FrequencyPenalty >= 2):
		return f + "frequency_penalty: frequency_penalty must be in the range [-2.0, 2.0)"
	case g.MaxOutputTokens != nil && *g.MaxOutputTokens < 0:
		return f + "max_output_tokens: max_output_tokens must be positive."
	case g.CandidateCount != nil && (*g.CandidateCount < 0 || *g.CandidateCount > 8):
		return f + "candidate_count: candidate_count must be in the range [1, 8]"
	case len(g.StopSequences) > 5:
		return f + "stop_sequences: at most 5 stop sequences are allowed"
	case g.ResponseSchema != nil && g.ResponseJSONSchema != nil:
		return "* GenerateContentRequest.generation_config: response_schema and response_json_schema cannot both be set."
	case (g.ResponseSchema != nil || g.ResponseJSONSchema != nil) &&
		g.ResponseMIMEType != "application/json" && g.ResponseMIMEType != "text/x.enum":
		return f + "response_mime_type: response_mime_type must be application/json or text/x.enum when a response schema is set."
	}
	switch g.ResponseMIMEType {
	case "", "text/plain", "application/json", "text/x.enum":
	default:
		return f + "response_mime_type: allowed mimetypes are `text/plain`, `application/json`, `text/x.enum`."
	}
	p.mimeType, p.stops = g.ResponseMIMEType, g.StopSequences
	if g.MaxOutputTokens != nil {
		p.limit = *g.MaxOutputTokens
	}
	if g.CandidateCount != nil && *g.CandidateCount > 1 {
		p.candidates = int(*g.CandidateCount)
	}
	schema := g.ResponseJSONSchema
	if schema == nil && g.ResponseSchema != nil {
		schema = geminiSchema(g.ResponseSchema)
	}
	if schema != nil && json.Unmarshal(schema, &p.schema) != nil {
		return f + "response_json_schema: the schema must be a JSON object."
	}
	return ""
}

func (p *geminiPlan) parseTools(req *geminiRequest) string {
	for i, t := range req.Tools {
		for j, d := range t.FunctionDeclarations {
			f := "* GenerateContentRequest.tools[" + strconv.Itoa(i) + "].function_declarations[" + strconv.Itoa(j) + "]"
			switch {
			case d.Name == "":
				return f + ".name: Name cannot be empty."
			case d.Parameters != nil && d.ParametersJSONSchema != nil:
				return f + ": parameters and parameters_json_schema cannot both be set."
			case d.ParametersJSONSchema != nil && !isJSONObject(d.ParametersJSONSchema):
				return f + ".parameters_json_schema: the schema must be a JSON object."
			}
			schema := d.ParametersJSONSchema
			if d.Parameters != nil {
				schema = geminiSchema(d.Parameters)
			}
			p.tools = append(p.tools, offeredTool{name: d.Name, schema: schema})
		}
	}
	p.mode = toolAuto
	if len(p.tools) == 0 {
		p.mode = toolNone
	}
	tc := req.ToolConfig
	if tc == nil || tc.FunctionCallingConfig == nil {
		return ""
	}
	fc := tc.FunctionCallingConfig
	const f = "* GenerateContentRequest.tool_config.function_calling_config."
	switch fc.Mode {
	case "", "MODE_UNSPECIFIED", "AUTO":
		if len(fc.AllowedFunctionNames) > 0 {
			return f + "allowed_function_names: allowed_function_names is only allowed when mode is ANY or VALIDATED."
		}
	case "NONE":
		if len(fc.AllowedFunctionNames) > 0 {
			return f + "allowed_function_names: allowed_function_names is only allowed when mode is ANY or VALIDATED."
		}
		p.mode = toolNone
	case "ANY", "VALIDATED":
		if len(p.tools) == 0 {
			return f + "mode: function calling mode ANY requires function declarations."
		}
		p.mode = toolRequired
		if len(fc.AllowedFunctionNames) > 0 {
			allowed := make([]offeredTool, 0, len(fc.AllowedFunctionNames))
			for _, name := range fc.AllowedFunctionNames {
				i := slices.IndexFunc(p.tools, func(t offeredTool) bool { return t.name == name })
				if i < 0 {
					return f + "allowed_function_names: " + name + " is not a declared function."
				}
				allowed = append(allowed, p.tools[i])
			}
			p.tools = allowed
			if len(allowed) == 1 {
				p.mode, p.named = toolNamed, allowed[0].name
			}
		}
	default:
		return "Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"" + fc.Mode + "\""
	}
	return ""
}

func isJSONObject(raw json.RawMessage) bool {
	var m map[string]any
	return json.Unmarshal(raw, &m) == nil
}

// geminiSchema turns a Gemini Schema (an OpenAPI subset with upper-case type names such as
// "OBJECT") into the JSON Schema the shared rules read, by lower-casing every "type".
func geminiSchema(raw json.RawMessage) json.RawMessage {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return nil
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if t, ok := e.(string); ok && k == "type" {
					x[k] = strings.ToLower(t)
					continue
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return json.RawMessage(marshalCompact(v))
}

// reply applies the package's rules (see the package doc) to the plan.
func (p *geminiPlan) reply(model string) geminiReply {
	if i := pickTool(p.tools, p.mode, p.named, p.lastUser, p.afterToolResult); i >= 0 {
		t := p.tools[i]
		args := toolArguments(t.schema, p.lastUser)
		call := &geminiFunctionCall{Name: t.name}
		// toolArguments returns a JSON object.
		_ = json.Unmarshal([]byte(args), &call.Args)
		return geminiReply{call: call, finish: "STOP", completionTokens: countTokens(t.name) + countTokens(args)}
	}
	var words []string
	if p.afterToolResult {
		words = toolResultAnswer(model, p.toolName, p.toolResult)
	} else {
		words = answer(model, p.lastUser)
	}
	content := strings.Join(words, " ")
	switch {
	case p.mimeType == "text/x.enum":
		if e, ok := p.schema["enum"].([]any); ok && len(e) > 0 {
			content = fmt.Sprint(e[0])
		}
	case p.mimeType == "application/json" && p.schema != nil:
		content = jsonSchemaAnswer(p.schema, content)
	case p.mimeType == "application/json":
		content = jsonObjectAnswer(content)
	}
	finish := "STOP"
	content, _ = applyStop(content, p.stops)
	if c, cut := limitTokens(content, p.limit); cut {
		content, finish = c, "MAX_TOKENS"
	}
	return geminiReply{content: content, finish: finish, completionTokens: countTokens(content)}
}

func (s *Simulator) geminiGenerate(w http.ResponseWriter, r *http.Request, model string, stream bool) {
	var req geminiRequest
	if !geminiDecode(w, r, &req) {
		return
	}
	if stream && r.URL.Query().Get("alt") != "sse" {
		// Without alt=sse the real API streams one JSON array; only SSE is simulated.
		writeGeminiError(w, http.StatusBadRequest, "The simulator streams only with alt=sse.", nil)
		return
	}
	plan, msg := planGemini(&req)
	if msg != "" {
		writeGeminiError(w, http.StatusBadRequest, msg, nil)
		return
	}
	s.requests.Add(1)

	ctx := r.Context()
	if !s.wait(ctx, s.cfg.Latency) {
		s.clientGone()
		return
	}
	f := s.fault(model)
	switch f.Kind {
	case FaultStatus:
		writeGeminiFault(w, model, f)
		return
	case FaultHang:
		<-ctx.Done()
		s.clientGone()
		return
	case FaultCut:
		if !stream {
			// Drop the connection without a response; net/http does not log this panic.
			panic(http.ErrAbortHandler)
		}
	}

	rep := plan.reply(model)
	// Each piece of the answer is the parts of one response: the whole answer, or, streamed,
	// one token (a function call is never split).
	var pieces [][]geminiOutPart
	switch {
	case rep.call != nil:
		pieces = [][]geminiOutPart{{{FunctionCall: rep.call}}}
	case stream:
		for _, tok := range streamPieces(rep.content) {
			pieces = append(pieces, []geminiOutPart{{Text: tok}})
		}
	default:
		pieces = [][]geminiOutPart{{{Text: rep.content}}}
	}
	id := "sim-" + strconv.FormatUint(s.ids.Add(1), 10)
	if !stream {
		resp := geminiResponse{ModelVersion: model, ResponseID: id, UsageMetadata: &geminiUsage{
			PromptTokenCount:     plan.promptTokens,
			CandidatesTokenCount: plan.candidates * rep.completionTokens,
			TotalTokenCount:      plan.promptTokens + plan.candidates*rep.completionTokens,
		}}
		for i := range plan.candidates {
			resp.Candidates = append(resp.Candidates, geminiCandidate{
				Content: geminiOutContent{Role: "model", Parts: pieces[0]}, FinishReason: rep.finish, Index: i,
			})
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	s.geminiStream(w, r, id, model, pieces, plan, rep, f)
}

// streamPieces is pieces (simulator.go), keeping an empty answer as one empty piece so that
// the stream still has an event to carry the finish reason.
func streamPieces(content string) []string {
	if p := pieces(content); len(p) > 0 {
		return p
	}
	return []string{content}
}

// geminiStream sends one SSE event per piece of the answer, each with the usage so far, as
// the real API does; the last one carries the finish reason.
func (s *Simulator) geminiStream(w http.ResponseWriter, r *http.Request, id, model string,
	pieces [][]geminiOutPart, plan *geminiPlan, rep geminiReply, f Fault) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	usage := geminiUsage{PromptTokenCount: plan.promptTokens}
	resp := geminiResponse{ModelVersion: model, ResponseID: id, UsageMetadata: &usage,
		Candidates: make([]geminiCandidate, plan.candidates)}
	sent := 0
	for i, piece := range pieces {
		if f.Kind == FaultCut && i == f.Chunks {
			panic(http.ErrAbortHandler)
		}
		if i > 0 && !s.wait(ctx, s.cfg.ChunkDelay) {
			s.clientGone()
			return
		}
		last := i == len(pieces)-1
		if rep.call != nil || last {
			sent = rep.completionTokens
		} else {
			sent += countTokens(piece[0].Text)
		}
		usage.CandidatesTokenCount = plan.candidates * sent
		usage.TotalTokenCount = plan.promptTokens + usage.CandidatesTokenCount
		for c := range resp.Candidates {
			resp.Candidates[c] = geminiCandidate{Content: geminiOutContent{Role: "model", Parts: piece}, Index: c}
			if last && f.Kind != FaultCut {
				resp.Candidates[c].FinishReason = rep.finish
			}
		}
		buf.Reset()
		buf.WriteString("data: ")
		if err := enc.Encode(&resp); err != nil {
			return // only our own fixed types are encoded
		}
		buf.WriteByte('\n') // Encode ended the line; a blank line ends the event
		if _, err := w.Write(buf.Bytes()); err != nil || rc.Flush() != nil {
			s.clientGone()
			return
		}
	}
	if f.Kind == FaultCut {
		panic(http.ErrAbortHandler)
	}
}

func (s *Simulator) geminiEmbed(w http.ResponseWriter, r *http.Request, model string, batch bool) {
	var reqs []geminiEmbedRequest
	if batch {
		var b geminiBatchEmbedRequest
		if !geminiDecode(w, r, &b) {
			return
		}
		reqs = b.Requests
		if len(reqs) == 0 {
			writeGeminiError(w, http.StatusBadRequest, "* BatchEmbedContentsRequest.requests: at least one request is required", nil)
			return
		}
		if len(reqs) > geminiMaxBatch {
			writeGeminiError(w, http.StatusBadRequest, "* BatchEmbedContentsRequest.requests: at most "+strconv.Itoa(geminiMaxBatch)+" requests can be in one batch", nil)
			return
		}
	} else {
		var one geminiEmbedRequest
		if !geminiDecode(w, r, &one) {
			return
		}
		reqs = []geminiEmbedRequest{one}
	}
	texts := make([]string, len(reqs))
	dims := make([]int, len(reqs))
	for i, q := range reqs {
		f := "* BatchEmbedContentsRequest.requests[" + strconv.Itoa(i) + "]"
		if q.Model != "" && q.Model != "models/"+model {
			writeGeminiError(w, http.StatusBadRequest, f+".model: the model of each request must match the model of the batch, models/"+model+".", nil)
			return
		}
		if q.Content == nil || len(q.Content.Parts) == 0 {
			writeGeminiError(w, http.StatusBadRequest, f+".content: content is not specified", nil)
			return
		}
		var words []string
		for _, p := range q.Content.Parts {
			if p.Text == nil {
				writeGeminiError(w, http.StatusBadRequest, f+".content.parts: only text parts can be embedded", nil)
				return
			}
			words = append(words, *p.Text)
		}
		texts[i] = strings.Join(words, " ")
		if strings.TrimSpace(texts[i]) == "" {
			writeGeminiError(w, http.StatusBadRequest, f+".content: text cannot be empty", nil)
			return
		}
		dims[i] = s.cfg.EmbeddingDimensions
		if dims[i] <= 0 {
			dims[i] = DefaultEmbeddingDimensions
		}
		if d := q.OutputDimensionality; d != nil {
			if *d < 1 || *d > MaxEmbeddingDimensions {
				writeGeminiError(w, http.StatusBadRequest, f+".output_dimensionality: output_dimensionality must be in the range [1, "+strconv.Itoa(MaxEmbeddingDimensions)+"]", nil)
				return
			}
			dims[i] = int(*d)
		}
	}
	s.requests.Add(1)
	ctx := r.Context()
	if !s.wait(ctx, s.cfg.Latency) {
		s.clientGone()
		return
	}
	switch f := s.fault(model); f.Kind {
	case FaultStatus:
		writeGeminiFault(w, model, f)
		return
	case FaultHang:
		<-ctx.Done()
		s.clientGone()
		return
	case FaultCut:
		panic(http.ErrAbortHandler)
	}
	out := make([]geminiEmbedding, len(texts))
	for i, t := range texts {
		out[i] = geminiEmbedding{Values: embedding(t, dims[i])}
	}
	if batch {
		writeJSON(w, http.StatusOK, map[string]any{"embeddings": out})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"embedding": out[0]})
}

// geminiStatus is the google.rpc.Code name Google's APIs pair with an HTTP status.
func geminiStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusConflict:
		return "ABORTED"
	case http.StatusRequestEntityTooLarge:
		return "INVALID_ARGUMENT"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	case http.StatusInternalServerError:
		return "INTERNAL"
	}
	if code >= 500 {
		return "INTERNAL"
	}
	return "FAILED_PRECONDITION"
}

func writeGeminiFault(w http.ResponseWriter, model string, f Fault) {
	var details []map[string]any
	if f.RetryAfter > 0 {
		secs := int64(math.Ceil(f.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		details = append(details, map[string]any{
			"@type":      "type.googleapis.com/google.rpc.RetryInfo",
			"retryDelay": strconv.FormatInt(secs, 10) + "s",
		})
	}
	switch f.Status {
	case http.StatusTooManyRequests:
		writeGeminiError(w, f.Status, "You exceeded your current quota for "+model+" (simulated). Please retry later.", details)
	case http.StatusServiceUnavailable:
		writeGeminiError(w, f.Status, "The model is overloaded. Please try again later. (simulated)", details)
	case http.StatusInternalServerError:
		writeGeminiError(w, f.Status, "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting (simulated)", details)
	default:
		writeGeminiError(w, f.Status, http.StatusText(f.Status)+" (simulated)", details)
	}
}

func writeGeminiError(w http.ResponseWriter, code int, msg string, details []map[string]any) {
	writeJSON(w, code, geminiErrorBody{Error: geminiErrorDetail{
		Code: code, Message: msg, Status: geminiStatus(code), Details: details,
	}})
}
