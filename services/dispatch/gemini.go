package dispatch

// The Google Gemini adapter, for PROVIDER_KIND_GEMINI: the Gemini API (generativelanguage,
// v1beta) through google.golang.org/genai with BackendGeminiAPI.
//
// Configuration comes from the registry only. genai.NewClient fills every field left empty
// from the environment (GOOGLE_API_KEY, GEMINI_API_KEY, GOOGLE_GEMINI_BASE_URL,
// GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_ENTERPRISE, GOOGLE_CLOUD_PROJECT/LOCATION),
// and has no option to stop it reading them. So the adapter leaves none of the fields that
// matter empty: the backend is set explicitly (the USE_* variables only choose one when it
// is unspecified), the API key always comes from the endpoint's credential (an endpoint
// without one is refused, or GOOGLE_API_KEY would fill the gap), the base URL and API version
// always come from the endpoint (the default base URL and GOOGLE_GEMINI_BASE_URL are read only
// when BaseURL is empty), and the HTTP client is dispatch's. Project and location, which the
// environment may still fill, are used by the Vertex backend only. TestGeminiIgnoresEnvironment
// holds this.
//
// The base URL is the API's root (https://generativelanguage.googleapis.com); a trailing
// version segment (".../v1beta") is accepted and used as the API version, unless the
// endpoint's api_version says otherwise. The default version is v1beta, as the SDK's.
//
// The SDK makes one HTTP request per call: its HTTP retries are off unless RetryOptions are
// set (they are not), and its automatic continuation of long answers is turned off, so
// dispatch owns retries and fallback.
//
// Translation, and what Gemini does differently:
//   - System and developer messages become the system instruction (Gemini has one, so all of
//     them, wherever they are, in order); assistant messages become role "model".
//   - Images: a base64 data URL becomes inlineData; an https URL becomes fileData with its
//     MIME type guessed from the path's extension (png, jpg/jpeg, webp, heic, heif, gif), and
//     is unsupported when there is none; other URLs are unsupported. The detail hint has no
//     Gemini equivalent and is dropped.
//   - Gemini's function calls have no ids. Calls in answers get stable ids "call_<n>" (n is
//     the call's position in the answer), or the vendor's id when it sends one. In requests,
//     a tool message is sent as a functionResponse named after the call it answers, found by
//     its tool_call_id in the assistant message that made the call; ids are not sent, as the
//     Gemini API pairs responses with calls by name and order. Consecutive tool messages form
//     one turn, as Gemini requires as many responses in the turn as calls. A tool result that
//     is a JSON object is the response; other text is sent as {"output": <text>}.
//   - tool_choice: none → NONE, required → ANY, a named tool → ANY with that one allowed name.
//     strict has no equivalent (parametersJsonSchema is sent as given).
//   - response_format json_object → responseMimeType application/json; json_schema → the
//     same plus responseJsonSchema.
//   - seed must fit in 32 bits (else unsupported); end_user_id has no Gemini field and is not
//     sent.
//   - Finish reasons: STOP (TOOL_CALLS when the answer calls a function), MAX_TOKENS →
//     LENGTH, the safety family (SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII and
//     the IMAGE_ ones) and a blocked prompt → CONTENT_FILTER, others unspecified.
//   - Streams: function calls arrive whole, so each becomes one ToolCallDelta with its id,
//     name and full arguments. A stream that ends without a finish reason is interrupted.
//   - Usage: output tokens include thinking tokens (thoughtsTokenCount), which Gemini bills as
//     output; input tokens include tool-use prompt tokens.
//   - Embeddings use batchEmbedContents (what the SDK's EmbedContent calls), at most 100
//     inputs per call; dimensions → outputDimensionality. Gemini reports no token usage for
//     embeddings, so none is returned.
//   - Errors: 429 is rate limited, with the delay of the google.rpc.RetryInfo detail (Gemini
//     sends it there; genai.APIError does not expose headers). 401 and 403 are credential
//     failures, and so is Gemini's answer to a wrong key, a 400 whose ErrorInfo reason is
//     API_KEY_INVALID. Other 400s are bad requests, with the vendor's message (the key
//     redacted).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/genai"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

type geminiVendor struct {
	endpointID string
	model      string
	cred       Credential
	models     *genai.Models
}

const (
	// geminiDefaultAPIVersion is the SDK's default for the Gemini API.
	geminiDefaultAPIVersion = "v1beta"
	// geminiMaxEmbedBatch is the most requests of one batchEmbedContents call.
	geminiMaxEmbedBatch = 100
	// geminiMaxMessage bounds a vendor's error message passed on to the caller (an error
	// body that is not Google's JSON shape, such as a proxy's HTML page, arrives whole).
	geminiMaxMessage = 1024
)

// geminiVersionSegment matches a path segment naming a Google API version (v1, v1beta, v1alpha2).
var geminiVersionSegment = regexp.MustCompile(`^v\d+((alpha|beta)\d*)?$`)

func newGeminiVendor(cfg vendorConfig) (vendor, error) {
	if cfg.cred.IsZero() {
		// Without a key, genai.NewClient would take GOOGLE_API_KEY or GEMINI_API_KEY.
		return nil, errors.New("gemini endpoint has no credential (an API key)")
	}
	base, version := geminiBase(cfg.baseURL, cfg.apiVersion)
	client, err := genai.NewClient(context.Background(), &genai.ClientConfig{
		APIKey:     cfg.cred.Reveal(),
		Backend:    genai.BackendGeminiAPI,
		HTTPClient: cfg.client,
		HTTPOptions: genai.HTTPOptions{
			BaseURL:    base,
			APIVersion: version,
		},
	})
	if err != nil {
		// genai's configuration errors print the whole ClientConfig, key included.
		return nil, errors.New("gemini client: " + cfg.cred.redact(err.Error()))
	}
	return &geminiVendor{endpointID: cfg.endpointID, model: cfg.upstreamModel, cred: cfg.cred, models: client.Models}, nil
}

// geminiBase splits the registry's base URL into the SDK's base URL and API version: a
// trailing version segment is taken off, and is the version unless apiVersion is set.
func geminiBase(u *url.URL, apiVersion string) (string, string) {
	b := *u
	b.RawQuery, b.Fragment = "", ""
	p := strings.TrimRight(b.Path, "/")
	if last := path.Base(p); geminiVersionSegment.MatchString(last) {
		b.Path, b.RawPath = strings.TrimSuffix(p, last), ""
		if apiVersion == "" {
			apiVersion = last
		}
	}
	if apiVersion == "" {
		apiVersion = geminiDefaultAPIVersion
	}
	s := b.String()
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s, apiVersion
}

func (v *geminiVendor) unsupported(what string) error {
	return &attemptError{kind: failUnsupported, endpointID: v.endpointID, detail: what}
}

func (v *geminiVendor) badRequest(msg string) error {
	return &attemptError{kind: failBadRequest, endpointID: v.endpointID, detail: msg, vendorMessage: msg}
}

// request translates a neutral request into Gemini's contents and configuration.
func (v *geminiVendor) request(req *vendorRequest) ([]*genai.Content, *genai.GenerateContentConfig, error) {
	cfg := &genai.GenerateContentConfig{AutomaticContinuation: genai.Ptr(false)}
	var contents []*genai.Content
	var system []*genai.Part
	// responses is the turn of function responses being built, while tool messages follow
	// each other (system messages in between do not end it: they are hoisted).
	var responses *genai.Content
	for i, m := range req.messages {
		if r := m.GetRole(); r == typev1.Role_ROLE_USER || r == typev1.Role_ROLE_ASSISTANT {
			responses = nil
		}
		switch m.GetRole() {
		case typev1.Role_ROLE_SYSTEM, typev1.Role_ROLE_DEVELOPER:
			for _, c := range m.GetContent() {
				if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok && t.Text != "" {
					system = append(system, &genai.Part{Text: t.Text})
				}
			}
		case typev1.Role_ROLE_USER:
			parts := make([]*genai.Part, 0, len(m.GetContent()))
			for _, c := range m.GetContent() {
				switch p := c.GetPart().(type) {
				case *typev1.ContentPart_Text:
					if p.Text != "" {
						parts = append(parts, &genai.Part{Text: p.Text})
					}
				case *typev1.ContentPart_Image:
					part, err := v.image(p.Image.GetUrl())
					if err != nil {
						return nil, nil, err
					}
					parts = append(parts, part)
				}
			}
			contents = append(contents, &genai.Content{Role: genai.RoleUser, Parts: parts})
		case typev1.Role_ROLE_ASSISTANT:
			parts := make([]*genai.Part, 0, len(m.GetContent())+len(m.GetToolCalls()))
			for _, c := range m.GetContent() {
				if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok && t.Text != "" {
					parts = append(parts, &genai.Part{Text: t.Text})
				}
			}
			for _, tc := range m.GetToolCalls() {
				args, err := v.jsonObject(tc.GetArgumentsJson(), "tool call arguments")
				if err != nil {
					return nil, nil, err
				}
				parts = append(parts, &genai.Part{FunctionCall: &genai.FunctionCall{Name: tc.GetName(), Args: args}})
			}
			contents = append(contents, &genai.Content{Role: genai.RoleModel, Parts: parts})
		case typev1.Role_ROLE_TOOL:
			name := geminiToolName(req.messages[:i], m.GetToolCallId())
			if name == "" {
				return nil, nil, v.badRequest("tool message answers unknown tool_call_id " + strconv.Quote(m.GetToolCallId()))
			}
			part := &genai.Part{FunctionResponse: &genai.FunctionResponse{Name: name, Response: geminiToolResponse(m)}}
			// The responses to one turn's calls form one turn.
			if responses != nil {
				responses.Parts = append(responses.Parts, part)
			} else {
				responses = &genai.Content{Role: genai.RoleUser, Parts: []*genai.Part{part}}
				contents = append(contents, responses)
			}
		}
	}
	if len(system) > 0 {
		cfg.SystemInstruction = &genai.Content{Role: genai.RoleUser, Parts: system}
	}
	if err := v.params(req.params, cfg); err != nil {
		return nil, nil, err
	}
	return contents, cfg, nil
}

func (v *geminiVendor) params(gp *typev1.GenerationParams, cfg *genai.GenerateContentConfig) error {
	if gp == nil {
		return nil
	}
	if gp.MaxOutputTokens != nil {
		cfg.MaxOutputTokens = gp.GetMaxOutputTokens()
	}
	f32 := func(p *float64) *float32 {
		if p == nil {
			return nil
		}
		return genai.Ptr(float32(*p))
	}
	cfg.Temperature = f32(gp.Temperature)
	cfg.TopP = f32(gp.TopP)
	cfg.PresencePenalty = f32(gp.PresencePenalty)
	cfg.FrequencyPenalty = f32(gp.FrequencyPenalty)
	cfg.StopSequences = gp.GetStop()
	if gp.Seed != nil {
		s := gp.GetSeed()
		if s < math.MinInt32 || s > math.MaxInt32 {
			return v.unsupported("seed outside the 32-bit range")
		}
		cfg.Seed = genai.Ptr(int32(s))
	}
	if len(gp.GetTools()) > 0 {
		decls := make([]*genai.FunctionDeclaration, 0, len(gp.GetTools()))
		for _, t := range gp.GetTools() {
			d := &genai.FunctionDeclaration{Name: t.GetName(), Description: t.GetDescription()}
			if s := strings.TrimSpace(t.GetParametersJson()); s != "" {
				if !json.Valid([]byte(s)) {
					return v.badRequest("parameters of tool " + strconv.Quote(t.GetName()) + " are not a JSON document")
				}
				d.ParametersJsonSchema = json.RawMessage(s)
			}
			decls = append(decls, d)
		}
		cfg.Tools = []*genai.Tool{{FunctionDeclarations: decls}}
	}
	if tc := gp.GetToolChoice(); tc != nil {
		var fc *genai.FunctionCallingConfig
		switch tc.GetMode() {
		case typev1.ToolChoice_MODE_NONE:
			fc = &genai.FunctionCallingConfig{Mode: genai.FunctionCallingConfigModeNone}
		case typev1.ToolChoice_MODE_REQUIRED:
			fc = &genai.FunctionCallingConfig{Mode: genai.FunctionCallingConfigModeAny}
		case typev1.ToolChoice_MODE_TOOL:
			fc = &genai.FunctionCallingConfig{Mode: genai.FunctionCallingConfigModeAny, AllowedFunctionNames: []string{tc.GetName()}}
		}
		if fc != nil {
			cfg.ToolConfig = &genai.ToolConfig{FunctionCallingConfig: fc}
		}
	}
	if rf := gp.GetResponseFormat(); rf != nil {
		switch rf.GetType() {
		case typev1.ResponseFormat_TYPE_JSON_OBJECT:
			cfg.ResponseMIMEType = "application/json"
		case typev1.ResponseFormat_TYPE_JSON_SCHEMA:
			cfg.ResponseMIMEType = "application/json"
			if s := strings.TrimSpace(rf.GetSchemaJson()); s != "" {
				if !json.Valid([]byte(s)) {
					return v.badRequest("response format schema is not a JSON document")
				}
				cfg.ResponseJsonSchema = json.RawMessage(s)
			}
		}
	}
	return nil
}

// jsonObject decodes a JSON object; what names it for errors. Empty text is no object.
func (v *geminiVendor) jsonObject(s, what string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, v.badRequest(what + " are not a JSON object")
	}
	return m, nil
}

// geminiToolName returns the name of the tool call with id in the latest assistant message
// of history that made it, or "".
func geminiToolName(history []*typev1.Message, id string) string {
	for i := len(history) - 1; i >= 0; i-- {
		for _, tc := range history[i].GetToolCalls() {
			if tc.GetId() == id {
				return tc.GetName()
			}
		}
	}
	return ""
}

// geminiToolResponse is a tool message's text as Gemini's response object: the text itself when it
// is a JSON object, else {"output": text}, the key Gemini documents for a function's output.
func geminiToolResponse(m *typev1.Message) map[string]any {
	var b strings.Builder
	for _, c := range m.GetContent() {
		if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok {
			b.WriteString(t.Text)
		}
	}
	text := b.String()
	var obj map[string]any
	if json.Unmarshal([]byte(text), &obj) == nil && obj != nil {
		return obj
	}
	return map[string]any{"output": text}
}

// geminiImageTypes maps image file extensions to the MIME types Gemini accepts.
var geminiImageTypes = map[string]string{
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
	".heic": "image/heic", ".heif": "image/heif", ".gif": "image/gif",
}

// image turns an image URL into a part: a base64 data URL into inline data, an https URL
// into file data with the MIME type of its extension.
func (v *geminiVendor) image(u string) (*genai.Part, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		mediaType, isBase64 := strings.CutSuffix(meta, ";base64")
		if !ok || !isBase64 || mediaType == "" {
			return nil, v.badRequest("image data URL is not a base64 data URL with a media type")
		}
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, v.badRequest("image data URL is not valid base64")
		}
		return &genai.Part{InlineData: &genai.Blob{MIMEType: strings.ToLower(mediaType), Data: b}}, nil
	}
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "https" || pu.Host == "" {
		return nil, v.unsupported("image URLs other than https and base64 data URLs")
	}
	mimeType, ok := geminiImageTypes[strings.ToLower(path.Ext(pu.Path))]
	if !ok {
		return nil, v.unsupported("image URL without a png, jpeg, webp, heic, heif or gif extension (Gemini needs the MIME type)")
	}
	return &genai.Part{FileData: &genai.FileData{FileURI: u, MIMEType: mimeType}}, nil
}

func (v *geminiVendor) generate(ctx context.Context, req *vendorRequest) (*vendorResult, error) {
	contents, cfg, err := v.request(req)
	if err != nil {
		return nil, err
	}
	res, err := v.models.GenerateContent(ctx, v.model, contents, cfg)
	if err != nil {
		return nil, v.classify(ctx, err, false)
	}
	out := &vendorResult{model: v.responseModel(res), usage: fromGeminiUsage(res.UsageMetadata)}
	msg := &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT}
	out.message = msg
	if len(res.Candidates) == 0 || res.Candidates[0] == nil {
		if res.PromptFeedback != nil && res.PromptFeedback.BlockReason != "" {
			out.finish = typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
			return out, nil
		}
		return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "vendor answered without candidates"}
	}
	cand := res.Candidates[0]
	var text strings.Builder
	if cand.Content != nil {
		for _, p := range cand.Content.Parts {
			switch {
			case p == nil || p.Thought:
			case p.FunctionCall != nil:
				msg.ToolCalls = append(msg.ToolCalls, &typev1.ToolCall{
					Id: geminiCallID(p.FunctionCall, len(msg.ToolCalls)), Name: p.FunctionCall.Name,
					ArgumentsJson: geminiArgs(p.FunctionCall.Args),
				})
			default:
				text.WriteString(p.Text)
			}
		}
	}
	if text.Len() > 0 {
		msg.Content = []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: text.String()}}}
	}
	out.finish = fromGeminiFinish(cand.FinishReason, len(msg.ToolCalls) > 0)
	return out, nil
}

func (v *geminiVendor) stream(ctx context.Context, req *vendorRequest, onDelta func(delta) error) (*vendorResult, error) {
	contents, cfg, err := v.request(req)
	if err != nil {
		return nil, err
	}
	res := &vendorResult{}
	var reason genai.FinishReason
	finished, blocked, calls := false, false, 0
	for chunk, err := range v.models.GenerateContentStream(ctx, v.model, contents, cfg) {
		if err != nil {
			return nil, v.classify(ctx, err, true)
		}
		if res.model == "" {
			res.model = v.responseModel(chunk)
		}
		if chunk.UsageMetadata != nil {
			res.usage = fromGeminiUsage(chunk.UsageMetadata)
		}
		if len(chunk.Candidates) == 0 || chunk.Candidates[0] == nil {
			if chunk.PromptFeedback != nil && chunk.PromptFeedback.BlockReason != "" {
				blocked, finished = true, true
			}
			continue
		}
		cand := chunk.Candidates[0]
		if cand.Content != nil {
			for _, p := range cand.Content.Parts {
				var d delta
				switch {
				case p == nil || p.Thought:
					continue
				case p.FunctionCall != nil:
					d.toolCalls = []*typev1.ToolCallDelta{{
						Index: int32(calls), Id: geminiCallID(p.FunctionCall, calls),
						Name: p.FunctionCall.Name, ArgumentsDelta: geminiArgs(p.FunctionCall.Args),
					}}
					calls++
				case p.Text != "":
					d.text = p.Text
				default:
					continue
				}
				d.model = res.model
				if err := onDelta(d); err != nil {
					return nil, err
				}
			}
		}
		if cand.FinishReason != "" && cand.FinishReason != genai.FinishReasonUnspecified {
			reason, finished = cand.FinishReason, true
		}
	}
	if !finished {
		// The SDK ends quietly when the connection closes at an event boundary; without a
		// finish reason the answer is incomplete.
		return nil, &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "stream ended without a finish reason"}
	}
	res.finish = fromGeminiFinish(reason, calls > 0)
	if blocked {
		res.finish = typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
	}
	return res, nil
}

func (v *geminiVendor) embed(ctx context.Context, req *embedRequest) (*embedResult, error) {
	cfg := &genai.EmbedContentConfig{}
	if req.dimensions > 0 {
		cfg.OutputDimensionality = genai.Ptr(req.dimensions)
	}
	out := &embedResult{model: v.model, embeddings: make([]*typev1.Embedding, 0, len(req.inputs))}
	for start := 0; start < len(req.inputs); start += geminiMaxEmbedBatch {
		batch := req.inputs[start:min(start+geminiMaxEmbedBatch, len(req.inputs))]
		contents := make([]*genai.Content, len(batch))
		for i, in := range batch {
			contents[i] = &genai.Content{Parts: []*genai.Part{{Text: in}}}
		}
		res, err := v.models.EmbedContent(ctx, v.model, contents, cfg)
		if err != nil {
			return nil, v.classify(ctx, err, false)
		}
		if len(res.Embeddings) != len(batch) {
			return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID,
				detail: "vendor returned " + strconv.Itoa(len(res.Embeddings)) + " vectors for " + strconv.Itoa(len(batch)) + " inputs"}
		}
		for _, e := range res.Embeddings {
			var values []float32
			if e != nil {
				values = e.Values
			}
			out.embeddings = append(out.embeddings, &typev1.Embedding{Index: int32(len(out.embeddings)), Values: values})
		}
	}
	// The Gemini API reports no token counts for embeddings. Usage of zero would let embeddings
	// slip past token limits, so it is estimated at one token per four bytes of input (rounded
	// up per input), the usual rule of thumb for English text with these tokenizers.
	var tokens int64
	for _, in := range req.inputs {
		tokens += int64(len(in)+3) / 4
	}
	out.usage = &typev1.Usage{InputTokens: tokens, TotalTokens: tokens}
	return out, nil
}

// responseModel is the model version the vendor reports, or the requested model.
func (v *geminiVendor) responseModel(res *genai.GenerateContentResponse) string {
	if res != nil && res.ModelVersion != "" {
		return res.ModelVersion
	}
	return strings.TrimPrefix(v.model, "models/")
}

// geminiCallID is the id of the n-th function call of an answer: the vendor's, or a stable
// synthesised one.
func geminiCallID(fc *genai.FunctionCall, n int) string {
	if fc.ID != "" {
		return fc.ID
	}
	return "call_" + strconv.Itoa(n)
}

// geminiArgs encodes a function call's arguments as a JSON object.
func geminiArgs(args map[string]any) string {
	if len(args) == 0 {
		return "{}"
	}
	b, err := json.Marshal(args)
	if err != nil {
		return "{}" // decoded from JSON by the SDK, so it encodes
	}
	return string(b)
}

func fromGeminiFinish(r genai.FinishReason, toolCalls bool) typev1.FinishReason {
	switch r {
	case genai.FinishReasonStop:
		if toolCalls {
			return typev1.FinishReason_FINISH_REASON_TOOL_CALLS
		}
		return typev1.FinishReason_FINISH_REASON_STOP
	case genai.FinishReasonMaxTokens:
		return typev1.FinishReason_FINISH_REASON_LENGTH
	case genai.FinishReasonSafety, genai.FinishReasonRecitation, genai.FinishReasonBlocklist,
		genai.FinishReasonProhibitedContent, genai.FinishReasonSPII, genai.FinishReasonImageSafety,
		genai.FinishReasonImageProhibitedContent, genai.FinishReasonImageRecitation:
		return typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
	default:
		return typev1.FinishReason_FINISH_REASON_UNSPECIFIED
	}
}

func fromGeminiUsage(u *genai.GenerateContentResponseUsageMetadata) *typev1.Usage {
	if u == nil {
		return nil
	}
	in := int64(u.PromptTokenCount) + int64(u.ToolUsePromptTokenCount)
	out := int64(u.CandidatesTokenCount) + int64(u.ThoughtsTokenCount)
	total := int64(u.TotalTokenCount)
	if total == 0 {
		total = in + out
	}
	return &typev1.Usage{InputTokens: in, OutputTokens: out, TotalTokens: total}
}

// geminiStatusCodes maps google.rpc.Code names to HTTP statuses, for errors that carry a
// status name without a code (error events in a stream).
var geminiStatusCodes = map[string]int{
	"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
	"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ABORTED": 409,
	"ALREADY_EXISTS": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500,
	"UNKNOWN": 500, "DATA_LOSS": 500, "UNIMPLEMENTED": 501,
	"UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}

// classify turns an SDK error into an *attemptError, passing context errors through.
// streaming says the error ended a stream, where a broken connection or a malformed event
// interrupts the answer. The SDK's own error texts may quote the vendor's answer (a malformed
// event, a body it could not decode), so only transport errors' texts are kept, redacted.
func (v *geminiVendor) classify(ctx context.Context, err error, streaming bool) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var apiErr genai.APIError
	var apiErrPtr *genai.APIError
	if errors.As(err, &apiErrPtr) && apiErrPtr != nil {
		apiErr = *apiErrPtr
	} else if !errors.As(err, &apiErr) {
		return v.classifyTransport(err, streaming)
	}
	code := apiErr.Code
	if c, ok := geminiStatusCodes[apiErr.Status]; ok && (code < 400 || code > 599) {
		code = c
	}
	ae := &attemptError{
		kind:          classifyHTTP(code),
		endpointID:    v.endpointID,
		httpStatus:    code,
		vendorMessage: geminiTruncate(v.cred.redact(apiErr.Message)),
	}
	if code == 400 && geminiErrorReason(apiErr.Details) == "API_KEY_INVALID" {
		// Gemini answers a wrong key with 400 INVALID_ARGUMENT, not 401.
		ae.kind = failCredential
	}
	switch ae.kind {
	case failRateLimited:
		ae.retryAfter = geminiRetryDelay(apiErr.Details)
	case failCredential:
		ae.vendorMessage = "" // nothing about our credential goes to callers
	}
	ae.detail = ae.vendorMessage
	if ae.detail == "" && apiErr.Status != "" {
		ae.detail = apiErr.Status
	}
	return ae
}

func (v *geminiVendor) classifyTransport(err error, streaming bool) error {
	ae := &attemptError{kind: failUnavailable, endpointID: v.endpointID}
	var ue *url.Error
	switch {
	case isNetTimeout(err):
		ae.kind, ae.detail = failTimeout, v.cred.redact(err.Error())
	case errors.As(err, &ue): // the request got no response
		ae.detail = v.cred.redact(err.Error())
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		ae.detail = "vendor closed the connection mid-answer"
	default:
		ae.detail = "malformed vendor answer"
	}
	if streaming && ae.kind == failUnavailable && ue == nil {
		ae.kind = failInterrupted
	}
	return ae
}

// geminiErrorReason returns the reason of a google.rpc.ErrorInfo detail, or "".
func geminiErrorReason(details []map[string]any) string {
	for _, d := range details {
		if t, _ := d["@type"].(string); strings.HasSuffix(t, "google.rpc.ErrorInfo") {
			r, _ := d["reason"].(string)
			return r
		}
	}
	return ""
}

// geminiRetryDelay returns the delay of a google.rpc.RetryInfo detail ("37s", "0.5s"), or 0.
func geminiRetryDelay(details []map[string]any) time.Duration {
	for _, d := range details {
		if t, _ := d["@type"].(string); strings.HasSuffix(t, "google.rpc.RetryInfo") {
			s, _ := d["retryDelay"].(string)
			if dur, err := time.ParseDuration(s); err == nil && dur > 0 {
				return dur
			}
		}
	}
	return 0
}

// geminiTruncate keeps at most geminiMaxMessage bytes of s, at a rune boundary.
func geminiTruncate(s string) string {
	if len(s) <= geminiMaxMessage {
		return s
	}
	n := geminiMaxMessage
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
