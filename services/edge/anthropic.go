package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// The Anthropic-compatible API: POST /v1/messages, so that an application built on an
// official Anthropic SDK points its base URL at http://HOST:PORT and works unchanged, whichever
// vendor serves the model behind the alias. Like the OpenAI dialect it is a thin translation
// onto the local GatewayService client: authentication, validation, routing, policy, quota,
// moderation, dispatch and tracing are the native API's, identically.
//
//	request   anthropic_request.go  (Messages API → vendor-neutral messages and params)
//	answer    this file              (GenerateResponse → Message)
//	stream    anthropic_stream.go    (StreamGenerate → Anthropic's SSE events)
//	errors    anthropic_errors.go    (gRPC status → Anthropic's error shape and status)
//
// Authentication: `x-api-key: <key>` (the SDKs' default) or `Authorization: Bearer <key>`;
// when both are sent, x-api-key wins, as it does at Anthropic. The key reaches the gateway as
// the `authorization: Bearer <key>` metadata every ingress uses. The `anthropic-version`
// header is required (any value: the dialect is the 2023-06-01 Messages API, which every
// published version shares); without it the answer is 400, as Anthropic's.
//
// Parsing is strict: an unknown field anywhere is refused with 400 naming it, and so are the
// keys and headers that would pick an upstream or a credential (forbiddenKeys and
// routingHeaders, shared with the OpenAI dialect) except inside the caller's own data (tool
// input schemas, message content). Parameters the vendor-neutral model cannot carry are
// refused rather than dropped: top_k, server tools, disable_parallel_tool_use, images in
// tool results, cache_control and the like.

// anthropicRoutingHeaders are, beside routingHeaders, the headers an Anthropic client might
// send to pick an upstream.
var anthropicRoutingHeaders = []string{"Anthropic-Base-Url"}

// anthropic serves the Anthropic dialect.
type anthropic struct {
	gw gatewayv1.GatewayServiceClient
}

func anthropicHandler(gw gatewayv1.GatewayServiceClient) http.Handler {
	return &anthropic{gw: gw}
}

func (h *anthropic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/messages" {
		writeAnthropicError(w, errAnthropicNotFound(r))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnthropicError(w, &anthropicError{status: http.StatusMethodNotAllowed, typ: "invalid_request_error",
			message: "method " + r.Method + " is not allowed on /v1/messages; use POST"})
		return
	}
	ctx, err := h.authorize(r)
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	body, err := readAnthropicBody(r)
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	req, err := parseAnthropicRequest(body)
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	if req.stream {
		h.stream(ctx, w, req)
		return
	}
	resp, err := h.gw.Generate(ctx, &gatewayv1.GenerateRequest{Model: req.model, Messages: req.messages, Params: req.params})
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	msg, err := anthropicMessageOf(req.model, resp)
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	writeAnthropicJSON(w, http.StatusOK, msg)
}

// authorize checks the headers: no routing header, an anthropic-version, and an API key,
// which it returns in the outgoing gRPC metadata of the request's context.
func (h *anthropic) authorize(r *http.Request) (context.Context, error) {
	for _, name := range append(routingHeaders[:len(routingHeaders):len(routingHeaders)], anthropicRoutingHeaders...) {
		if len(r.Header.Values(name)) > 0 {
			return nil, anthropicInvalid("the %s header is not accepted: fmgate sends requests only to the endpoints of its registry", name)
		}
	}
	key := r.Header.Get("X-Api-Key")
	if key == "" {
		auth := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(auth, " ")
		if auth != "" && (!ok || !strings.EqualFold(scheme, "Bearer")) {
			return nil, &anthropicError{status: http.StatusUnauthorized, typ: "authentication_error",
				message: "the Authorization header must be 'Bearer <key>'"}
		}
		key = strings.TrimSpace(token)
	}
	if key == "" {
		return nil, &anthropicError{status: http.StatusUnauthorized, typ: "authentication_error",
			message: "missing API key: send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'"}
	}
	if r.Header.Get("Anthropic-Version") == "" {
		return nil, anthropicInvalid("anthropic-version: header is required")
	}
	return metadata.AppendToOutgoingContext(r.Context(), "authorization", "Bearer "+key), nil
}

// readAnthropicBody reads the request body; the HTTP handler has capped its size.
func readAnthropicBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return nil, &anthropicError{status: http.StatusRequestEntityTooLarge, typ: "request_too_large",
				message: "the request body is larger than the limit of " + strconv.FormatInt(tooLarge.Limit, 10) + " bytes"}
		}
		return nil, anthropicInvalid("the request body could not be read")
	}
	return body, nil
}

// anthropicMessage is the answer, in the shape of Anthropic's Message object.
type anthropicMessage struct {
	ID           string                `json:"id"`
	Type         string                `json:"type"` // "message"
	Role         string                `json:"role"` // "assistant"
	Model        string                `json:"model"`
	Content      []anthropicOutBlock   `json:"content"`
	StopReason   *string               `json:"stop_reason"`
	StopSequence *string               `json:"stop_sequence"`
	Usage        anthropicMessageUsage `json:"usage"`
}

// anthropicOutBlock is a content block of an answer: text or tool_use.
type anthropicOutBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type anthropicMessageUsage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// anthropicMessageOf translates a complete answer. model is the alias the caller asked for.
func anthropicMessageOf(model string, resp *gatewayv1.GenerateResponse) (*anthropicMessage, error) {
	msg := &anthropicMessage{
		ID: anthropicMessageID(resp.GetId()), Type: "message", Role: "assistant", Model: model,
		Content:    []anthropicOutBlock{},
		StopReason: new(anthropicStopReason(resp.GetFinishReason())),
		Usage:      anthropicMessageUsage{InputTokens: resp.GetUsage().GetInputTokens(), OutputTokens: resp.GetUsage().GetOutputTokens()},
	}
	if text := messageText(resp.GetMessage()); text != "" {
		msg.Content = append(msg.Content, anthropicOutBlock{Type: "text", Text: &text})
	}
	for _, c := range resp.GetMessage().GetToolCalls() {
		input, err := anthropicToolInput(c.GetArgumentsJson())
		if err != nil {
			return nil, err
		}
		msg.Content = append(msg.Content, anthropicOutBlock{Type: "tool_use", ID: c.GetId(), Name: c.GetName(), Input: input})
	}
	return msg, nil
}

// anthropicToolInput is the input object of a tool_use block, from a call's JSON arguments. Anthropic
// clients expect an object; a model that answered something else has failed the call.
func anthropicToolInput(arguments string) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace([]byte(arguments))
	if len(trimmed) == 0 {
		return json.RawMessage(`{}`), nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(trimmed, &obj) != nil || obj == nil {
		return nil, &anthropicError{status: http.StatusBadGateway, typ: "api_error",
			message: "the model called a tool with arguments that are not a JSON object"}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, trimmed); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// anthropicStopReason maps a finish reason. The vendor-neutral STOP does not say whether a
// stop sequence or the end of the turn stopped the model, so it is end_turn (and
// stop_sequence is always null); a moderation block is a refusal.
func anthropicStopReason(r typev1.FinishReason) string {
	switch r {
	case typev1.FinishReason_FINISH_REASON_LENGTH:
		return "max_tokens"
	case typev1.FinishReason_FINISH_REASON_TOOL_CALLS:
		return "tool_use"
	case typev1.FinishReason_FINISH_REASON_CONTENT_FILTER:
		return "refusal"
	}
	return "end_turn"
}

// anthropicMessageID turns the gateway's generation id ("gen-<hex>") into a message id
// ("msg_<hex>"), so that the two can be matched in traces and usage.
func anthropicMessageID(id string) string { return "msg_" + strings.TrimPrefix(id, "gen-") }

func writeAnthropicJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"type":"error","error":{"type":"api_error","message":"internal error"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}
