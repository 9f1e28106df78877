package dispatch

// The OpenAI adapter, for PROVIDER_KIND_OPENAI and PROVIDER_KIND_OPENAI_COMPATIBLE, through the
// official SDK.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

type openAIVendor struct {
	endpointID string
	model      string
	cred       Credential
	// legacyMaxTokens sends max_output_tokens as max_tokens instead of max_completion_tokens.
	// OpenAI deprecated max_tokens (its reasoning models refuse it), but OpenAI-compatible
	// hosts (vLLM, Ollama, TGI) have long understood max_tokens and not always its successor.
	legacyMaxTokens bool
	svc             openai.ChatCompletionService
}

func newOpenAIVendor(endpointID, baseURL, model string, cred Credential, client *http.Client, compatible bool) *openAIVendor {
	// NewChatCompletionService, unlike openai.NewClient, reads no OPENAI_* environment
	// variables: nothing but the registry's URL and credential may reach the request.
	return &openAIVendor{
		endpointID:      endpointID,
		model:           model,
		cred:            cred,
		legacyMaxTokens: compatible,
		svc: openai.NewChatCompletionService(
			option.WithBaseURL(baseURL),
			option.WithAPIKey(cred.Reveal()),
			option.WithHTTPClient(client),
			option.WithMaxRetries(0), // dispatch owns retries and fallback
		),
	}
}

func (v *openAIVendor) params(req *vendorRequest) openai.ChatCompletionNewParams {
	p := openai.ChatCompletionNewParams{Model: v.model, Messages: toOpenAIMessages(req.messages)}
	gp := req.params
	if gp == nil {
		return p
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
	if gp.Seed != nil {
		p.Seed = openai.Int(gp.GetSeed())
	}
	if len(gp.GetStop()) > 0 {
		p.Stop.OfStringArray = gp.GetStop()
	}
	return p
}

func (v *openAIVendor) generate(ctx context.Context, req *vendorRequest) (*vendorResult, error) {
	res, err := v.svc.New(ctx, v.params(req))
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	if len(res.Choices) == 0 {
		return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "vendor answered without choices"}
	}
	ch := res.Choices[0]
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
		usage:   fromOpenAIUsage(&res.Usage),
		model:   res.Model,
	}, nil
}

func (v *openAIVendor) stream(ctx context.Context, req *vendorRequest, onDelta func(delta) error) (*vendorResult, error) {
	p := v.params(req)
	p.StreamOptions.IncludeUsage = openai.Bool(true)
	s := v.svc.NewStreaming(ctx, p)
	defer s.Close()
	res := &vendorResult{}
	finished := false
	for s.Next() {
		chunk := s.Current()
		if res.model == "" {
			res.model = chunk.Model
		}
		if chunk.JSON.Usage.Valid() {
			res.usage = fromOpenAIUsage(&chunk.Usage)
		}
		if len(chunk.Choices) == 0 {
			continue
		}
		ch := &chunk.Choices[0]
		if d := ch.Delta.Content; d != "" {
			if err := onDelta(delta{model: res.model, text: d}); err != nil {
				return nil, err
			}
		}
		if ch.FinishReason != "" {
			res.finish = fromOpenAIFinish(ch.FinishReason)
			finished = true
		}
	}
	if err := s.Err(); err != nil {
		return nil, v.classify(ctx, err)
	}
	if !finished {
		// The SDK ends quietly when the connection closes at an event boundary; without a
		// finish reason the answer is incomplete.
		return nil, &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "stream ended without a finish reason"}
	}
	return res, nil
}

// classify turns an SDK error into an *attemptError, passing context errors through.
func (v *openAIVendor) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var apiErr *openai.Error
	if errors.As(err, &apiErr) {
		ae := &attemptError{
			kind:          classifyHTTP(apiErr.StatusCode),
			endpointID:    v.endpointID,
			httpStatus:    apiErr.StatusCode,
			vendorMessage: v.cred.redact(apiErr.Message),
		}
		if apiErr.Response != nil {
			ae.retryAfter = parseRetryAfter(apiErr.Response.Header, time.Now())
		}
		if ae.kind == failCredential {
			// OpenAI's 401 message quotes part of the key: keep none of it.
			ae.vendorMessage = ""
		}
		ae.detail = ae.vendorMessage
		return ae
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

func fromOpenAIUsage(u *openai.CompletionUsage) *typev1.Usage {
	return &typev1.Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
}

// PLACEHOLDER until OpenAI embeddings land.
func (v *openAIVendor) embed(context.Context, *embedRequest) (*embedResult, error) {
	return nil, &attemptError{kind: failUnsupported, endpointID: v.endpointID, detail: "embeddings"}
}
