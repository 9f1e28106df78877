package dispatch

// The OpenAI adapter, for PROVIDER_KIND_OPENAI and PROVIDER_KIND_OPENAI_COMPATIBLE. Requests
// are translated into the official SDK's parameter types; chat completions are sent on a lean
// path of their own (see send), embeddings through the SDK. Azure OpenAI (azure.go) is the
// same adapter with Azure's routing and authentication options, entirely through the SDK.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

type openAIVendor struct {
	endpointID string
	model      string
	cred       Credential
	// legacyMaxTokens sends max_output_tokens as max_tokens instead of max_completion_tokens.
	// OpenAI deprecated max_tokens (its reasoning models refuse it), but OpenAI-compatible
	// hosts (vLLM, Ollama, TGI) have long understood max_tokens and not always its successor,
	// and Azure OpenAI knows only max_tokens before API version 2024-09-01.
	legacyMaxTokens bool
	// base64Embeddings asks for vectors as base64 float32s, a third of the JSON's size; the SDK
	// decodes them. OpenAI-compatible hosts do not all support it.
	base64Embeddings bool
	// The services are built once per endpoint: they hold the URL, credential and client.
	chat       openai.ChatCompletionService
	embeddings openai.EmbeddingService
	// chatURL, when set, sends chat completions on the lean path (send) with client, and
	// authorization ("Bearer <key>", zero without a credential); Azure leaves it empty and
	// goes through chat.
	chatURL       string
	client        *http.Client
	authorization Credential
}

func newOpenAIVendor(endpointID, baseURL, model string, cred Credential, client *http.Client, compatible bool) *openAIVendor {
	// The services, unlike openai.NewClient, read no OPENAI_* environment variables: nothing
	// but the registry's URL and credential may reach the request.
	v := newOpenAIVendorWith(endpointID, model, cred, compatible, !compatible,
		option.WithBaseURL(baseURL),
		option.WithAPIKey(cred.Reveal()),
		option.WithHTTPClient(client),
	)
	// The URL the SDK would build: the base with a trailing slash, resolved against.
	if u, err := url.Parse(baseURL); err == nil {
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		v.chatURL = u.ResolveReference(&url.URL{Path: "chat/completions"}).String()
		v.client = client
		if !cred.IsZero() {
			v.authorization = NewCredential("Bearer " + cred.Reveal())
		}
	}
	return v
}

// newOpenAIVendorWith builds the adapter from the SDK options that say where and how to
// authenticate; retries are always off, as dispatch owns retries and fallback.
func newOpenAIVendorWith(endpointID, model string, cred Credential, legacyMaxTokens, base64Embeddings bool,
	opts ...option.RequestOption) *openAIVendor {
	opts = append(opts, option.WithMaxRetries(0))
	return &openAIVendor{
		endpointID:       endpointID,
		model:            model,
		cred:             cred,
		legacyMaxTokens:  legacyMaxTokens,
		base64Embeddings: base64Embeddings,
		chat:             openai.NewChatCompletionService(opts...),
		embeddings:       openai.NewEmbeddingService(opts...),
	}
}

// badRequest is a request the adapter cannot translate; like a vendor 400, no other endpoint
// would do better.
func (v *openAIVendor) badRequest(msg string) *attemptError {
	return &attemptError{kind: failBadRequest, endpointID: v.endpointID, detail: msg, vendorMessage: msg}
}

func (v *openAIVendor) params(req *vendorRequest) (openai.ChatCompletionNewParams, error) {
	p := openai.ChatCompletionNewParams{Model: v.model, Messages: toOpenAIMessages(req.messages)}
	gp := req.params
	if gp == nil {
		return p, nil
	}
	if gp.MaxOutputTokens != nil {
		if v.legacyMaxTokens {
			p.MaxTokens = openai.Int(int64(gp.GetMaxOutputTokens()))
		} else {
			p.MaxCompletionTokens = openai.Int(int64(gp.GetMaxOutputTokens()))
		}
	}
	if gp.Temperature != nil {
		p.Temperature = openai.Float(gp.GetTemperature())
	}
	if gp.TopP != nil {
		p.TopP = openai.Float(gp.GetTopP())
	}
	if gp.FrequencyPenalty != nil {
		p.FrequencyPenalty = openai.Float(gp.GetFrequencyPenalty())
	}
	if gp.PresencePenalty != nil {
		p.PresencePenalty = openai.Float(gp.GetPresencePenalty())
	}
	if gp.Seed != nil {
		p.Seed = openai.Int(gp.GetSeed())
	}
	if len(gp.GetStop()) > 0 {
		p.Stop.OfStringArray = gp.GetStop()
	}
	if u := gp.GetEndUserId(); u != "" {
		p.User = openai.String(u)
	}
	var err error
	if p.Tools, err = v.tools(gp.GetTools()); err != nil {
		return p, err
	}
	if p.ToolChoice, err = v.toolChoice(gp.GetToolChoice(), gp.GetTools()); err != nil {
		return p, err
	}
	if p.ResponseFormat, err = v.responseFormat(gp.GetResponseFormat()); err != nil {
		return p, err
	}
	return p, nil
}

func (v *openAIVendor) tools(tools []*typev1.Tool) ([]openai.ChatCompletionToolUnionParam, error) {
	if len(tools) == 0 {
		return nil, nil
	}
	out := make([]openai.ChatCompletionToolUnionParam, len(tools))
	for i, t := range tools {
		if t.GetName() == "" {
			return nil, v.badRequest("tools[" + strconv.Itoa(i) + "].name is required")
		}
		fd := shared.FunctionDefinitionParam{Name: t.GetName()}
		if d := t.GetDescription(); d != "" {
			fd.Description = openai.String(d)
		}
		if t.GetStrict() {
			fd.Strict = openai.Bool(true)
		}
		if ps := t.GetParametersJson(); ps != "" {
			raw, ok := jsonObject(ps)
			if !ok {
				return nil, v.badRequest("tools[" + strconv.Itoa(i) + "].parameters_json is not a JSON object")
			}
			// The schema goes out as the caller wrote it, without a decode into a map.
			fd.SetExtraFields(map[string]any{"parameters": raw})
		}
		out[i] = openai.ChatCompletionFunctionTool(fd)
	}
	return out, nil
}

func (v *openAIVendor) toolChoice(tc *typev1.ToolChoice, tools []*typev1.Tool) (openai.ChatCompletionToolChoiceOptionUnionParam, error) {
	var u openai.ChatCompletionToolChoiceOptionUnionParam
	switch tc.GetMode() {
	case typev1.ToolChoice_MODE_UNSPECIFIED:
	case typev1.ToolChoice_MODE_NONE:
		u.OfAuto = openai.String(string(openai.ChatCompletionToolChoiceOptionAutoNone))
	case typev1.ToolChoice_MODE_REQUIRED:
		u.OfAuto = openai.String(string(openai.ChatCompletionToolChoiceOptionAutoRequired))
	case typev1.ToolChoice_MODE_TOOL:
		if tc.GetName() == "" {
			return u, v.badRequest("tool_choice.name is required with MODE_TOOL")
		}
		u = openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: tc.GetName()})
	default:
		return u, v.badRequest("tool_choice.mode " + tc.GetMode().String() + " is not supported")
	}
	if tc.GetMode() != typev1.ToolChoice_MODE_UNSPECIFIED && len(tools) == 0 {
		// OpenAI refuses a tool choice without tools; "none" without tools means nothing.
		if tc.GetMode() == typev1.ToolChoice_MODE_NONE {
			return openai.ChatCompletionToolChoiceOptionUnionParam{}, nil
		}
		return u, v.badRequest("tool_choice needs tools")
	}
	return u, nil
}

func (v *openAIVendor) responseFormat(rf *typev1.ResponseFormat) (openai.ChatCompletionNewParamsResponseFormatUnion, error) {
	var u openai.ChatCompletionNewParamsResponseFormatUnion
	switch rf.GetType() {
	case typev1.ResponseFormat_TYPE_UNSPECIFIED:
	case typev1.ResponseFormat_TYPE_JSON_OBJECT:
		u.OfJSONObject = &shared.ResponseFormatJSONObjectParam{}
	case typev1.ResponseFormat_TYPE_JSON_SCHEMA:
		raw, ok := jsonObject(rf.GetSchemaJson())
		if !ok {
			return u, v.badRequest("response_format.schema_json is not a JSON object")
		}
		name := rf.GetSchemaName()
		if name == "" {
			name = defaultSchemaName // OpenAI requires a name; the neutral contract does not
		}
		js := shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: name, Schema: raw}
		if rf.GetStrict() {
			js.Strict = openai.Bool(true)
		}
		u.OfJSONSchema = &shared.ResponseFormatJSONSchemaParam{JSONSchema: js}
	default:
		return u, v.badRequest("response_format.type " + rf.GetType().String() + " is not supported")
	}
	return u, nil
}

// defaultSchemaName names a JSON schema response format that the caller did not name.
const defaultSchemaName = "response"

// jsonObject returns s as raw JSON when it is a JSON object.
func jsonObject(s string) (json.RawMessage, bool) {
	t := strings.TrimSpace(s)
	if !strings.HasPrefix(t, "{") || !json.Valid([]byte(t)) {
		return nil, false
	}
	return json.RawMessage(t), true
}

func (v *openAIVendor) generate(ctx context.Context, req *vendorRequest) (*vendorResult, error) {
	p, err := v.params(req)
	if err != nil {
		return nil, err
	}
	// As for the stream, the request goes out on the lean path (send; the SDK's for Azure)
	// and the answer is decoded here: the SDK's ChatCompletion decodes through reflection at
	// about 4x the time and 8x the allocations of openAICompletion below
	// (BenchmarkOpenAICompletionDecode), about a tenth of the gateway's allocations per
	// request.
	raw, err := v.send(ctx, p, false)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(raw.Body)
	raw.Body.Close()
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	var res openAICompletion
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "malformed response"}
	}
	if len(res.Choices) == 0 {
		return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "vendor answered without choices"}
	}
	ch := &res.Choices[0]
	msg := &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT}
	text := ch.Message.Content
	if text == "" {
		text = ch.Message.Refusal
	}
	if text != "" {
		msg.Content = []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: text}}}
	}
	for _, tc := range ch.Message.ToolCalls {
		if tc.Type != "function" {
			continue // only function tools exist in fmgate's contract
		}
		msg.ToolCalls = append(msg.ToolCalls, &typev1.ToolCall{
			Id: tc.ID, Name: tc.Function.Name, ArgumentsJson: tc.Function.Arguments,
		})
	}
	return &vendorResult{
		message: msg,
		finish:  fromOpenAIFinish(ch.FinishReason),
		usage:   &typev1.Usage{InputTokens: res.Usage.PromptTokens, OutputTokens: res.Usage.CompletionTokens, TotalTokens: res.Usage.TotalTokens},
		model:   res.Model,
	}, nil
}

// openAICompletion is the part of a chat.completion that dispatch reads.
type openAICompletion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content   string `json:"content"`
			Refusal   string `json:"refusal"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		TotalTokens      int64 `json:"total_tokens"`
	} `json:"usage"`
}

func (v *openAIVendor) stream(ctx context.Context, req *vendorRequest, onDelta func(delta) error) (*vendorResult, error) {
	p, err := v.params(req)
	if err != nil {
		return nil, err
	}
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	// The request goes out on the lean path (send; the SDK's for Azure) and the event stream
	// is read here. Why not the SDK's stream: its chunk type decodes through reflection at
	// about 25 µs and 53 allocations per chunk against about 5 µs and 12 for openAIChunk
	// through json.Unmarshal, and fewer still through decodeOpenAIChunk
	// (BenchmarkOpenAIChunkDecode); a gateway decodes every chunk of every answer.
	raw, err := v.send(ctx, p, true)
	if err != nil {
		return nil, err
	}
	events := ssestream.NewDecoder(raw)
	defer events.Close()
	res := &vendorResult{}
	finished := false
	for events.Next() {
		data := events.Event().Data
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			break
		}
		var chunk openAIChunk
		if err := decodeOpenAIChunk(data, &chunk); err != nil {
			return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "malformed stream chunk"}
		}
		if chunk.Error != nil {
			return nil, &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "vendor sent an error event"}
		}
		if res.model == "" {
			res.model = chunk.Model
		}
		if chunk.Usage != nil {
			res.usage = &typev1.Usage{
				InputTokens: chunk.Usage.PromptTokens, OutputTokens: chunk.Usage.CompletionTokens, TotalTokens: chunk.Usage.TotalTokens,
			}
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		ch := &chunk.Choices[0]
		d := delta{model: res.model, text: ch.Delta.Content}
		if d.text == "" {
			d.text = ch.Delta.Refusal
		}
		for _, tc := range ch.Delta.ToolCalls {
			if tc.Type != "" && tc.Type != "function" {
				continue // only function tools exist in fmgate's contract
			}
			d.toolCalls = append(d.toolCalls, &typev1.ToolCallDelta{
				Index: int32(tc.Index), Id: tc.ID, Name: tc.Function.Name, ArgumentsDelta: tc.Function.Arguments,
			})
		}
		if d.text != "" || len(d.toolCalls) > 0 {
			if err := onDelta(d); err != nil {
				return nil, err
			}
		}
		if ch.FinishReason != "" {
			res.finish = fromOpenAIFinish(ch.FinishReason)
			finished = true
		}
	}
	if err := events.Err(); err != nil {
		return nil, v.classify(ctx, err)
	}
	if !finished {
		// A connection closed at an event boundary ends the event stream quietly; without a
		// finish reason the answer is incomplete.
		return nil, &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "stream ended without a finish reason"}
	}
	return res, nil
}

// openAIChunk is the part of a chat.completion.chunk event that dispatch reads
// (decodeOpenAIChunk).
type openAIChunk struct {
	Model   string              `json:"model"`
	Choices []openAIChunkChoice `json:"choices"`
	Usage   *openAIUsage        `json:"usage"`
	Error   json.RawMessage     `json:"error"`
}

type openAIChunkChoice struct {
	Delta struct {
		Content   string                `json:"content"`
		Refusal   string                `json:"refusal"`
		ToolCalls []openAIChunkToolCall `json:"tool_calls"`
	} `json:"delta"`
	FinishReason string `json:"finish_reason"`
}

type openAIChunkToolCall struct {
	Index    int64  `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type openAIUsage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
}

// send sends a chat completion request and returns the response of a 2xx answer, its body
// for the caller to read and close; other answers and transport failures come back as
// *attemptError (context errors pass through).
//
// Why not the SDK's request path (kept for Azure): its request config (default headers,
// retry and idempotency settings, middleware, the body's encoding) runs before the first
// byte goes out, for a POST that needs a JSON body and three headers. Against the simulator
// on loopback (BenchmarkOpenAIRequestPath, which counts the simulator's own work too) the
// lean path saves about 70 allocations per request, and about 40% of a Generate's and 20%
// of a stream's round-trip time. The body is the SDK's own encoding of the same
// ChatCompletionNewParams, so the wire format does not change (TestOpenAILeanPathMatchesSDK).
func (v *openAIVendor) send(ctx context.Context, p openai.ChatCompletionNewParams, stream bool) (*http.Response, error) {
	if v.chatURL == "" {
		var raw *http.Response
		opts := []option.RequestOption{option.WithResponseBodyInto(&raw)}
		if stream {
			opts = append(opts, option.WithJSONSet("stream", true))
		}
		if _, err := v.chat.New(ctx, p, opts...); err != nil {
			return nil, v.classify(ctx, err)
		}
		return raw, nil
	}
	body, err := json.Marshal(p)
	if err != nil || len(body) < 2 || body[len(body)-1] != '}' {
		return nil, &attemptError{kind: failBadRequest, endpointID: v.endpointID, detail: "cannot encode the request"}
	}
	if stream {
		// The params always hold model and messages, so the object is not empty.
		body = append(body[:len(body)-1], `,"stream":true}`...)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.chatURL, bytes.NewReader(body))
	if err != nil {
		return nil, &attemptError{kind: failMisconfigured, endpointID: v.endpointID, detail: "bad base_url"}
	}
	// Header values are shared, read-only slices: no canonicalisation or allocation per request.
	req.Header["Content-Type"] = headerJSON
	if stream {
		req.Header["Accept"] = headerEventStream
	} else {
		req.Header["Accept"] = headerJSON
	}
	if !v.authorization.IsZero() {
		req.Header["Authorization"] = []string{v.authorization.Reveal()}
	}
	res, err := v.client.Do(req)
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		defer res.Body.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, v.httpFailure(res.StatusCode, res.Header, openAIErrorMessage(res.Body))
	}
	return res, nil
}

var (
	headerJSON        = []string{"application/json"}
	headerEventStream = []string{"text/event-stream"}
)

// maxErrorBody bounds how much of an error answer is read for its message.
const maxErrorBody = 64 << 10

// openAIErrorMessage returns error.message of an OpenAI error body, {"error":{"message":...}},
// or "" when the body is not one.
func openAIErrorMessage(body io.Reader) string {
	b, err := io.ReadAll(io.LimitReader(body, maxErrorBody))
	if err != nil {
		return ""
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil {
		return ""
	}
	return e.Error.Message
}

// httpFailure is the *attemptError of a vendor's HTTP error answer; message is the vendor's
// text, redacted here.
func (v *openAIVendor) httpFailure(status int, h http.Header, message string) *attemptError {
	ae := &attemptError{
		kind:          classifyHTTP(status),
		endpointID:    v.endpointID,
		httpStatus:    status,
		vendorMessage: v.cred.redact(message),
		retryAfter:    parseRetryAfter(h, time.Now()),
	}
	if ae.kind == failCredential {
		// OpenAI's 401 message quotes part of the key: keep none of it.
		ae.vendorMessage = ""
	}
	ae.detail = ae.vendorMessage
	return ae
}

// classify turns an SDK or transport error into an *attemptError, passing context errors
// through.
func (v *openAIVendor) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		var h http.Header
		if apiErr.Response != nil {
			h = apiErr.Response.Header
		}
		return v.httpFailure(apiErr.StatusCode, h, apiErr.Message)
	}
	var streamErr *ssestream.StreamError
	if errors.As(err, &streamErr) {
		return &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "vendor sent an error event"}
	}
	kind := failUnavailable
	if isNetTimeout(err) {
		kind = failTimeout
	}
	return &attemptError{kind: kind, endpointID: v.endpointID, detail: v.cred.redact(err.Error())}
}

func toOpenAIMessages(msgs []*typev1.Message) []openai.ChatCompletionMessageParamUnion {
	out := make([]openai.ChatCompletionMessageParamUnion, 0, len(msgs))
	for _, m := range msgs {
		var u openai.ChatCompletionMessageParamUnion
		switch m.GetRole() {
		case typev1.Role_ROLE_SYSTEM:
			var p openai.ChatCompletionSystemMessageParam
			if s, ok := singleText(m); ok {
				p.Content.OfString = openai.String(s)
			} else {
				p.Content.OfArrayOfContentParts = textParts(m)
			}
			if m.GetName() != "" {
				p.Name = openai.String(m.GetName())
			}
			u.OfSystem = &p
		case typev1.Role_ROLE_DEVELOPER:
			var p openai.ChatCompletionDeveloperMessageParam
			if s, ok := singleText(m); ok {
				p.Content.OfString = openai.String(s)
			} else {
				p.Content.OfArrayOfContentParts = textParts(m)
			}
			if m.GetName() != "" {
				p.Name = openai.String(m.GetName())
			}
			u.OfDeveloper = &p
		case typev1.Role_ROLE_USER:
			var p openai.ChatCompletionUserMessageParam
			if s, ok := singleText(m); ok {
				p.Content.OfString = openai.String(s)
			} else {
				parts := make([]openai.ChatCompletionContentPartUnionParam, 0, len(m.GetContent()))
				for _, c := range m.GetContent() {
					switch part := c.GetPart().(type) {
					case *typev1.ContentPart_Text:
						parts = append(parts, openai.TextContentPart(part.Text))
					case *typev1.ContentPart_Image:
						parts = append(parts, openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{
							URL: part.Image.GetUrl(), Detail: part.Image.GetDetail(),
						}))
					}
				}
				p.Content.OfArrayOfContentParts = parts
			}
			if m.GetName() != "" {
				p.Name = openai.String(m.GetName())
			}
			u.OfUser = &p
		case typev1.Role_ROLE_ASSISTANT:
			var p openai.ChatCompletionAssistantMessageParam
			if s, ok := singleText(m); ok {
				p.Content.OfString = openai.String(s)
			} else if len(m.GetContent()) > 0 {
				for _, tp := range textParts(m) {
					p.Content.OfArrayOfContentParts = append(p.Content.OfArrayOfContentParts,
						openai.ChatCompletionAssistantMessageParamContentArrayOfContentPartUnion{OfText: &tp})
				}
			}
			for _, tc := range m.GetToolCalls() {
				p.ToolCalls = append(p.ToolCalls, openai.ChatCompletionMessageToolCallUnionParam{
					OfFunction: &openai.ChatCompletionMessageFunctionToolCallParam{
						ID: tc.GetId(),
						Function: openai.ChatCompletionMessageFunctionToolCallFunctionParam{
							Name: tc.GetName(), Arguments: tc.GetArgumentsJson(),
						},
					},
				})
			}
			if m.GetName() != "" {
				p.Name = openai.String(m.GetName())
			}
			u.OfAssistant = &p
		case typev1.Role_ROLE_TOOL:
			var p openai.ChatCompletionToolMessageParam
			if s, ok := singleText(m); ok {
				p.Content.OfString = openai.String(s)
			} else {
				p.Content.OfArrayOfContentParts = textParts(m)
			}
			p.ToolCallID = m.GetToolCallId()
			u.OfTool = &p
		}
		out = append(out, u)
	}
	return out
}

// singleText returns the text of a message made of exactly one text part, which is sent as
// a plain string: the form every OpenAI-compatible host understands.
func singleText(m *typev1.Message) (string, bool) {
	if len(m.GetContent()) != 1 {
		return "", false
	}
	t, ok := m.GetContent()[0].GetPart().(*typev1.ContentPart_Text)
	if !ok {
		return "", false
	}
	return t.Text, true
}

// textParts returns the text parts of m; validation has refused images outside user messages.
func textParts(m *typev1.Message) []openai.ChatCompletionContentPartTextParam {
	parts := make([]openai.ChatCompletionContentPartTextParam, 0, len(m.GetContent()))
	for _, c := range m.GetContent() {
		if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok {
			parts = append(parts, openai.ChatCompletionContentPartTextParam{Text: t.Text})
		}
	}
	return parts
}

func fromOpenAIFinish(reason string) typev1.FinishReason {
	switch strings.ToLower(reason) {
	case "stop":
		return typev1.FinishReason_FINISH_REASON_STOP
	case "length":
		return typev1.FinishReason_FINISH_REASON_LENGTH
	case "tool_calls", "function_call":
		return typev1.FinishReason_FINISH_REASON_TOOL_CALLS
	case "content_filter":
		return typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
	default:
		return typev1.FinishReason_FINISH_REASON_UNSPECIFIED
	}
}

func (v *openAIVendor) embed(ctx context.Context, req *embedRequest) (*embedResult, error) {
	p := openai.EmbeddingNewParams{
		Model: v.model,
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: req.inputs},
	}
	if req.dimensions > 0 {
		p.Dimensions = openai.Int(int64(req.dimensions))
	}
	if req.endUserID != "" {
		p.User = openai.String(req.endUserID)
	}
	if v.base64Embeddings {
		p.EncodingFormat = openai.EmbeddingNewParamsEncodingFormatBase64
	}
	res, err := v.embeddings.New(ctx, p)
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	malformed := func(detail string) error {
		return &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: detail}
	}
	if len(res.Data) != len(req.inputs) {
		return nil, malformed("vendor returned " + strconv.Itoa(len(res.Data)) + " vectors for " + strconv.Itoa(len(req.inputs)) + " inputs")
	}
	// Vendors answer in input order with an index each; place by index, refusing holes.
	out := make([]*typev1.Embedding, len(res.Data))
	for _, d := range res.Data {
		if d.Index < 0 || d.Index >= int64(len(out)) || out[d.Index] != nil {
			return nil, malformed("vendor returned a vector with a bad index")
		}
		values := make([]float32, len(d.Embedding))
		for i, x := range d.Embedding {
			values[i] = float32(x)
		}
		out[d.Index] = &typev1.Embedding{Index: int32(d.Index), Values: values}
	}
	return &embedResult{
		embeddings: out,
		usage:      &typev1.Usage{InputTokens: res.Usage.PromptTokens, TotalTokens: res.Usage.TotalTokens},
		model:      res.Model,
	}, nil
}
