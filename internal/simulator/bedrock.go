package simulator

// The AWS Bedrock Runtime dialect: Converse (JSON) and ConverseStream (AWS event stream
// framing), with Bedrock's paths, field names, stop reasons and error shape (JSON body
// {"message": ...} with the error type in the x-amzn-ErrorType header).
//
// # Credentials
//
// Bedrock requests are signed with AWS Signature Version 4, so Config.APIKey carries AWS
// credentials as "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]". Every request must carry an
// "AWS4-HMAC-SHA256 Credential=<access key id>/<date>/<region>/bedrock/aws4_request" Authorization
// header. When APIKey is set, the access key id must match, the session token (when given)
// must be sent as X-Amz-Security-Token, and the signature is recomputed with the secret and
// compared, as AWS does (the clock skew AWS also checks is not). An APIKey without ":" is an
// access key id alone: only the credential scope is checked.
//
// # Answers
//
// Answers, token counts, stop sequences, length limits and tool calls follow the rules every
// dialect shares (simulator.go). Bedrock's toolChoice "auto" (or none given) is the shared
// auto mode, "any" is required, and "tool" names the tool; Bedrock has no "none". Finish
// reasons are Bedrock's stop reasons: end_turn, tool_use, stop_sequence, max_tokens.
//
// ConverseStream sends messageStart, for a tool call a contentBlockStart with its id and
// name, one contentBlockDelta per piece (a token of text, or a piece of the tool input),
// contentBlockStop, messageStop with the stop reason, then metadata with usage and metrics.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func (s *Simulator) registerBedrock(mux *http.ServeMux) {
	mux.HandleFunc("POST /model/{modelId}/converse", func(w http.ResponseWriter, r *http.Request) {
		s.bedrockConverse(w, r, false)
	})
	mux.HandleFunc("POST /model/{modelId}/converse-stream", func(w http.ResponseWriter, r *http.Request) {
		s.bedrockConverse(w, r, true)
	})
	mux.HandleFunc("GET /foundation-models", s.bedrockFoundationModels)
}

// bedrockFoundationModels answers the Bedrock control plane's ListFoundationModels with
// Config.Models, each a text model of provider "fmgate"; the request must be signed as
// every Bedrock request is.
func (s *Simulator) bedrockFoundationModels(w http.ResponseWriter, r *http.Request) {
	s.setBedrockRequestID(w)
	if !s.bedrockAuthorized(w, r, nil) {
		return
	}
	auth, _ := parseSigV4Authorization(r.Header.Get("Authorization"))
	type summary struct {
		ModelArn                   string         `json:"modelArn"`
		ModelID                    string         `json:"modelId"`
		ModelName                  string         `json:"modelName"`
		ProviderName               string         `json:"providerName"`
		InputModalities            []string       `json:"inputModalities"`
		OutputModalities           []string       `json:"outputModalities"`
		ResponseStreamingSupported bool           `json:"responseStreamingSupported"`
		InferenceTypesSupported    []string       `json:"inferenceTypesSupported"`
		ModelLifecycle             map[string]any `json:"modelLifecycle"`
	}
	list := struct {
		ModelSummaries []summary `json:"modelSummaries"`
	}{ModelSummaries: make([]summary, len(s.cfg.Models))}
	for i, m := range s.cfg.Models {
		list.ModelSummaries[i] = summary{
			ModelArn:                   "arn:aws:bedrock:" + auth.region + "::foundation-model/" + m,
			ModelID:                    m,
			ModelName:                  "Simulated " + m,
			ProviderName:               "fmgate",
			InputModalities:            []string{"TEXT"},
			OutputModalities:           []string{"TEXT"},
			ResponseStreamingSupported: true,
			InferenceTypesSupported:    []string{"ON_DEMAND"},
			ModelLifecycle:             map[string]any{"status": "ACTIVE"},
		}
	}
	writeJSON(w, http.StatusOK, list)
}

// The request fields the simulator reads; the rest are accepted and ignored.
type bedrockRequest struct {
	Messages        []bedrockMessage        `json:"messages"`
	System          []bedrockSystemBlock    `json:"system"`
	InferenceConfig *bedrockInferenceConfig `json:"inferenceConfig"`
	ToolConfig      *bedrockToolConfig      `json:"toolConfig"`
}

type bedrockMessage struct {
	Role    string                `json:"role"`
	Content []bedrockContentBlock `json:"content"`
}

type bedrockSystemBlock struct {
	Text *string `json:"text,omitempty"`
}

type bedrockContentBlock struct {
	Text       *string            `json:"text,omitempty"`
	Image      *bedrockImage      `json:"image,omitempty"`
	ToolUse    *bedrockToolUse    `json:"toolUse,omitempty"`
	ToolResult *bedrockToolResult `json:"toolResult,omitempty"`
}

type bedrockImage struct {
	Format string `json:"format"`
	Source struct {
		Bytes []byte `json:"bytes"` // base64 in JSON, as encoding/json writes []byte
	} `json:"source"`
}

type bedrockToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

type bedrockToolResult struct {
	ToolUseID string                     `json:"toolUseId"`
	Content   []bedrockToolResultContent `json:"content"`
	Status    string                     `json:"status,omitempty"`
}

type bedrockToolResultContent struct {
	Text *string         `json:"text,omitempty"`
	JSON json.RawMessage `json:"json,omitempty"`
}

type bedrockInferenceConfig struct {
	MaxTokens     *int64   `json:"maxTokens"`
	Temperature   *float64 `json:"temperature"`
	TopP          *float64 `json:"topP"`
	StopSequences []string `json:"stopSequences"`
}

type bedrockToolConfig struct {
	Tools      []bedrockTool      `json:"tools"`
	ToolChoice *bedrockToolChoice `json:"toolChoice"`
}

type bedrockTool struct {
	ToolSpec *struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		InputSchema struct {
			JSON json.RawMessage `json:"json"`
		} `json:"inputSchema"`
	} `json:"toolSpec"`
}

type bedrockToolChoice struct {
	Auto *struct{} `json:"auto"`
	Any  *struct{} `json:"any"`
	Tool *struct {
		Name string `json:"name"`
	} `json:"tool"`
}

type bedrockConverseResponse struct {
	Output struct {
		Message bedrockMessage `json:"message"`
	} `json:"output"`
	StopReason string         `json:"stopReason"`
	Usage      bedrockUsage   `json:"usage"`
	Metrics    bedrockMetrics `json:"metrics"`
}

type bedrockUsage struct {
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
	TotalTokens  int64 `json:"totalTokens"`
}

type bedrockMetrics struct {
	LatencyMs int64 `json:"latencyMs"`
}

// The ConverseStream event payloads.
type (
	bedrockMessageStart struct {
		Role string `json:"role"`
	}
	bedrockBlockStart struct {
		ContentBlockIndex int `json:"contentBlockIndex"`
		Start             struct {
			ToolUse *bedrockToolUseStart `json:"toolUse,omitempty"`
		} `json:"start"`
	}
	bedrockToolUseStart struct {
		ToolUseID string `json:"toolUseId"`
		Name      string `json:"name"`
	}
	bedrockBlockDelta struct {
		ContentBlockIndex int `json:"contentBlockIndex"`
		Delta             struct {
			Text    *string                `json:"text,omitempty"`
			ToolUse *bedrockToolInputDelta `json:"toolUse,omitempty"`
		} `json:"delta"`
	}
	bedrockToolInputDelta struct {
		Input string `json:"input"`
	}
	bedrockBlockStop struct {
		ContentBlockIndex int `json:"contentBlockIndex"`
	}
	bedrockMessageStop struct {
		StopReason string `json:"stopReason"`
	}
	bedrockStreamMetadata struct {
		Usage   bedrockUsage   `json:"usage"`
		Metrics bedrockMetrics `json:"metrics"`
	}
)

// Bedrock's error types, sent in x-amzn-ErrorType as the service sends them (type, colon,
// namespace URI); SDKs keep the part before the colon.
const (
	bedrockThrottling   = "ThrottlingException"
	bedrockValidation   = "ValidationException"
	bedrockAccessDenied = "AccessDeniedException"
	bedrockInternal     = "InternalServerException"
	bedrockUnavailable  = "ServiceUnavailableException"
	bedrockNotFound     = "ResourceNotFoundException"
	bedrockModelTimeout = "ModelTimeoutException"
	bedrockModelError   = "ModelErrorException"
	bedrockUnrecognized = "UnrecognizedClientException"
	bedrockBadSignature = "InvalidSignatureException"
	bedrockMissingAuth  = "MissingAuthenticationTokenException"

	bedrockErrorNamespace = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
	bedrockService        = "bedrock"
	amzDateFormat         = "20060102T150405Z"
)

// bedrockAnswer is what the simulated model says to one request.
type bedrockAnswer struct {
	text       string // when toolName is empty
	toolName   string
	toolUseID  string
	toolInput  string // JSON
	stopReason string
	usage      bedrockUsage
}

func (s *Simulator) bedrockConverse(w http.ResponseWriter, r *http.Request, stream bool) {
	start := time.Now()
	s.setBedrockRequestID(w)
	body, err := readBody(w, r)
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			writeBedrockError(w, http.StatusRequestEntityTooLarge, bedrockValidation,
				"Input is too long for requested model.")
			return
		}
		writeBedrockError(w, http.StatusBadRequest, bedrockValidation, "Unable to read the request body.")
		return
	}
	if !s.bedrockAuthorized(w, r, body) {
		return
	}
	model := r.PathValue("modelId")
	var req bedrockRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeBedrockError(w, http.StatusBadRequest, bedrockValidation, "Malformed input request, please reformat your input and try again.")
		return
	}
	prompt, msg := parseBedrockRequest(&req)
	if msg != "" {
		writeBedrockError(w, http.StatusBadRequest, bedrockValidation, msg)
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
		writeBedrockFault(w, model, f)
		return
	case FaultHang:
		<-ctx.Done()
		s.clientGone()
		return
	case FaultCut:
		if !stream {
			panic(http.ErrAbortHandler)
		}
	}

	ans := s.bedrockAnswer(model, &prompt, req.InferenceConfig)
	if stream {
		s.bedrockStream(w, r, start, &ans, f)
		return
	}
	var res bedrockConverseResponse
	res.Output.Message = bedrockMessage{Role: "assistant", Content: []bedrockContentBlock{}}
	if ans.toolName != "" {
		res.Output.Message.Content = append(res.Output.Message.Content, bedrockContentBlock{ToolUse: &bedrockToolUse{
			ToolUseID: ans.toolUseID, Name: ans.toolName, Input: json.RawMessage(ans.toolInput),
		}})
	} else if ans.text != "" {
		res.Output.Message.Content = append(res.Output.Message.Content, bedrockContentBlock{Text: &ans.text})
	}
	res.StopReason = ans.stopReason
	res.Usage = ans.usage
	res.Metrics.LatencyMs = time.Since(start).Milliseconds()
	writeJSON(w, http.StatusOK, &res)
}

func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= MaxBodyBytes {
		buf.Grow(int(r.ContentLength))
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	return buf.Bytes(), err
}

func (s *Simulator) setBedrockRequestID(w http.ResponseWriter) {
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", s.ids.Add(1))
	w.Header().Set("X-Amzn-Requestid", id)
}

// bedrockAuthorized checks the SigV4 Authorization header as the package comment describes,
// answering 403 in Bedrock's shape when it fails. Presented credentials are never echoed.
func (s *Simulator) bedrockAuthorized(w http.ResponseWriter, r *http.Request, body []byte) bool {
	auth, ok := parseSigV4Authorization(r.Header.Get("Authorization"))
	if !ok {
		writeBedrockError(w, http.StatusForbidden, bedrockMissingAuth, "Missing Authentication Token")
		return false
	}
	if s.cfg.APIKey == "" {
		return true
	}
	akid, secret, hasSecret := strings.Cut(s.cfg.APIKey, ":")
	secret, token, _ := strings.Cut(secret, ":")
	if auth.accessKeyID != akid || (token != "" && r.Header.Get("X-Amz-Security-Token") != token) {
		writeBedrockError(w, http.StatusForbidden, bedrockUnrecognized, "The security token included in the request is invalid.")
		return false
	}
	if auth.service != bedrockService {
		writeBedrockError(w, http.StatusForbidden, bedrockBadSignature,
			"Credential should be scoped to correct service: '"+bedrockService+"'.")
		return false
	}
	if hasSecret && !verifySigV4(r, body, auth, aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret, SessionToken: token}) {
		writeBedrockError(w, http.StatusForbidden, bedrockBadSignature,
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
		return false
	}
	return true
}

type sigV4Authorization struct {
	accessKeyID, date, region, service string
	signedHeaders, signature           string
}

// parseSigV4Authorization reads "AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
// SignedHeaders=a;b, Signature=hex".
func parseSigV4Authorization(h string) (sigV4Authorization, bool) {
	var a sigV4Authorization
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return a, false
	}
	for field := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
		switch k {
		case "Credential":
			parts := strings.Split(v, "/")
			if len(parts) != 5 || parts[0] == "" || parts[4] != "aws4_request" {
				return a, false
			}
			a.accessKeyID, a.date, a.region, a.service = parts[0], parts[1], parts[2], parts[3]
		case "SignedHeaders":
			a.signedHeaders = v
		case "Signature":
			a.signature = v
		}
	}
	return a, a.accessKeyID != "" && a.signedHeaders != "" && a.signature != ""
}

// verifySigV4 signs a copy of r made of the headers the client signed, with the same time,
// scope and payload, and compares the signatures.
func verifySigV4(r *http.Request, body []byte, auth sigV4Authorization, creds aws.Credentials) bool {
	t, err := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil || t.Format("20060102") != auth.date {
		return false
	}
	c := &http.Request{
		Method: r.Method,
		URL: &url.URL{
			Scheme: "http", Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery,
		},
		Host:          r.Host,
		Header:        http.Header{},
		ContentLength: int64(len(body)),
	}
	for name := range strings.SplitSeq(auth.signedHeaders, ";") {
		if name == "host" || name == "content-length" {
			continue
		}
		if v := r.Header.Values(name); len(v) > 0 {
			c.Header[http.CanonicalHeaderKey(name)] = v
		}
	}
	sum := sha256.Sum256(body)
	err = v4.NewSigner().SignHTTP(context.Background(), creds, c, hex.EncodeToString(sum[:]), auth.service, auth.region, t)
	if err != nil {
		return false
	}
	want, ok := parseSigV4Authorization(c.Header.Get("Authorization"))
	return ok && want.signedHeaders == auth.signedHeaders &&
		hmac.Equal([]byte(want.signature), []byte(auth.signature))
}

// bedrockPrompt is what the simulator reads from a valid request.
type bedrockPrompt struct {
	tokens          int
	lastUser        string // text blocks of the last user message that has any
	afterToolResult bool   // the last message carries tool results
	resultTool      string // the tool whose result is the last one
	resultText      string
	tools           []offeredTool
	mode            toolMode
	named           string
}

// parseBedrockRequest validates req as Bedrock does before the model runs and returns what
// the answer depends on, or Bedrock's message for the first problem.
func parseBedrockRequest(req *bedrockRequest) (bedrockPrompt, string) {
	var p bedrockPrompt
	if len(req.Messages) == 0 || req.Messages[0].Role != "user" {
		return p, "A conversation must start with a user message. Try again with a conversation that starts with a user message."
	}
	if c := req.InferenceConfig; c != nil && c.MaxTokens != nil && *c.MaxTokens < 1 {
		return p, "1 validation error detected: Value '" + strconv.FormatInt(*c.MaxTokens, 10) +
			"' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
	}
	for i, b := range req.System {
		if b.Text == nil || strings.TrimSpace(*b.Text) == "" {
			return p, "The text field in the SystemContentBlock object at system." + strconv.Itoa(i) + " is blank. Add text to the text field, and try again."
		}
		p.tokens += countTokens(*b.Text)
	}
	if tc := req.ToolConfig; tc != nil {
		if len(tc.Tools) == 0 {
			return p, "1 validation error detected: Value '[]' at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1"
		}
		for i, t := range tc.Tools {
			if t.ToolSpec == nil || t.ToolSpec.Name == "" {
				return p, "The toolSpec at toolConfig.tools." + strconv.Itoa(i) + " must have a name."
			}
			if len(t.ToolSpec.InputSchema.JSON) == 0 {
				return p, "The toolSpec " + t.ToolSpec.Name + " must have an inputSchema."
			}
			p.tools = append(p.tools, offeredTool{name: t.ToolSpec.Name, schema: t.ToolSpec.InputSchema.JSON})
		}
		if ch := tc.ToolChoice; ch != nil {
			switch {
			case ch.Tool != nil:
				found := false
				for _, t := range p.tools {
					found = found || t.name == ch.Tool.Name
				}
				if !found {
					return p, "The tool " + ch.Tool.Name + " named in toolConfig.toolChoice is not in toolConfig.tools."
				}
				p.mode, p.named = toolNamed, ch.Tool.Name
			case ch.Any != nil:
				p.mode = toolRequired
			}
		}
	}

	// toolNames maps the ids of the previous assistant message's toolUse blocks to their
	// names; each must be answered by a toolResult in the next message.
	var toolNames map[string]string
	last := len(req.Messages) - 1
	for i := range req.Messages {
		m := &req.Messages[i]
		at := "messages." + strconv.Itoa(i)
		if m.Role != "user" && m.Role != "assistant" {
			return p, "1 validation error detected: Value '" + m.Role + "' at '" + at +
				".member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
		}
		if i > 0 && req.Messages[i-1].Role == m.Role {
			return p, "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
		}
		if len(m.Content) == 0 {
			return p, "The content field in the Message object at " + at + " is empty. Add a ContentBlock object to the content field and try again."
		}
		answered := map[string]bool{}
		var used map[string]string
		var texts []string
		results := false
		for j := range m.Content {
			b := &m.Content[j]
			bat := at + ".content." + strconv.Itoa(j)
			if (b.ToolUse != nil || b.ToolResult != nil) && req.ToolConfig == nil {
				return p, "The toolConfig field must be defined when using toolUse and toolResult content blocks."
			}
			switch {
			case b.Text != nil:
				if strings.TrimSpace(*b.Text) == "" {
					return p, "The text field in the ContentBlock object at " + bat + " is blank. Add text to the text field, and try again."
				}
				p.tokens += countTokens(*b.Text)
				texts = append(texts, *b.Text)
			case b.Image != nil:
				switch b.Image.Format {
				case "png", "jpeg", "gif", "webp":
				default:
					return p, "1 validation error detected: Value '" + b.Image.Format + "' at '" + bat +
						".image.format' failed to satisfy constraint: Member must satisfy enum value set: [png, jpeg, gif, webp]"
				}
				if len(b.Image.Source.Bytes) == 0 {
					return p, "The image at " + bat + " has no bytes. Add the image bytes to source.bytes and try again."
				}
				p.tokens += imageTokens
			case b.ToolUse != nil:
				if m.Role != "assistant" {
					return p, "The toolUse block at " + bat + " is only allowed in assistant messages."
				}
				if b.ToolUse.ToolUseID == "" || b.ToolUse.Name == "" {
					return p, "The toolUse block at " + bat + " must have a toolUseId and a name."
				}
				if used == nil {
					used = map[string]string{}
				}
				used[b.ToolUse.ToolUseID] = b.ToolUse.Name
				p.tokens += countTokens(b.ToolUse.Name) + countTokens(string(b.ToolUse.Input))
			case b.ToolResult != nil:
				if m.Role != "user" {
					return p, "The toolResult block at " + bat + " is only allowed in user messages."
				}
				name, ok := toolNames[b.ToolResult.ToolUseID]
				if !ok {
					return p, "The toolResult block at " + bat + " answers the toolUseId " + b.ToolResult.ToolUseID +
						", which no toolUse block of the previous message has."
				}
				answered[b.ToolResult.ToolUseID] = true
				text := bedrockResultText(b.ToolResult)
				p.tokens += countTokens(text)
				results = true
				p.resultTool, p.resultText = name, text
			default:
				return p, "The ContentBlock object at " + bat + " has no supported member: use text, image, toolUse or toolResult."
			}
		}
		if len(answered) < len(toolNames) {
			var missing []string
			for id := range toolNames {
				if !answered[id] {
					missing = append(missing, id)
				}
			}
			slices.Sort(missing)
			return p, "Expected toolResult blocks at " + at + ".content for the following Ids: " + strings.Join(missing, ", ")
		}
		toolNames = used
		if m.Role == "user" {
			if len(texts) > 0 {
				p.lastUser = strings.Join(texts, " ")
			}
			p.afterToolResult = i == last && results
		}
	}
	if len(toolNames) > 0 && req.Messages[last].Role == "assistant" {
		// The conversation ends with unanswered tool calls: the model has nothing to continue.
		return p, "Expected toolResult blocks after " + "messages." + strconv.Itoa(last) + " for its toolUse blocks."
	}
	return p, ""
}

// bedrockResultText is the text of a tool result: its text blocks and compacted JSON blocks,
// joined by spaces.
func bedrockResultText(r *bedrockToolResult) string {
	texts := make([]string, 0, len(r.Content))
	for _, c := range r.Content {
		if c.Text != nil {
			texts = append(texts, *c.Text)
		} else if len(c.JSON) > 0 {
			var compact bytes.Buffer
			if json.Compact(&compact, c.JSON) == nil {
				texts = append(texts, compact.String())
			}
		}
	}
	return strings.Join(texts, " ")
}

// bedrockAnswer computes the answer of model to a parsed request, by the rules every dialect
// shares (simulator.go).
func (s *Simulator) bedrockAnswer(model string, p *bedrockPrompt, ic *bedrockInferenceConfig) bedrockAnswer {
	ans := bedrockAnswer{usage: bedrockUsage{InputTokens: int64(p.tokens)}}
	if i := pickTool(p.tools, p.mode, p.named, p.lastUser, p.afterToolResult); i >= 0 {
		t := p.tools[i]
		ans.toolName = t.name
		ans.toolInput = toolArguments(t.schema, p.lastUser)
		ans.toolUseID = "tooluse_sim" + strconv.FormatUint(s.ids.Add(1), 10)
		ans.stopReason = "tool_use"
		ans.usage.OutputTokens = int64(countTokens(t.name) + countTokens(ans.toolInput))
	} else {
		var words []string
		if p.afterToolResult {
			words = toolResultAnswer(model, p.resultTool, p.resultText)
		} else {
			words = answer(model, p.lastUser)
		}
		ans.text, ans.stopReason = strings.Join(words, " "), "end_turn"
		if ic != nil {
			var cut bool
			if ans.text, cut = applyStop(ans.text, ic.StopSequences); cut {
				ans.stopReason = "stop_sequence"
			}
			if ic.MaxTokens != nil {
				if ans.text, cut = limitTokens(ans.text, *ic.MaxTokens); cut {
					ans.stopReason = "max_tokens"
				}
			}
		}
		ans.usage.OutputTokens = int64(countTokens(ans.text))
	}
	ans.usage.TotalTokens = ans.usage.InputTokens + ans.usage.OutputTokens
	return ans
}

func (s *Simulator) bedrockStream(w http.ResponseWriter, r *http.Request, start time.Time, ans *bedrockAnswer, f Fault) {
	ctx := r.Context()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	send := func(eventType string, v any) bool {
		payload, err := json.Marshal(v)
		if err != nil {
			return false
		}
		buf.Reset()
		appendEventMessage(&buf, eventType, payload)
		if _, err := w.Write(buf.Bytes()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	if !send("messageStart", bedrockMessageStart{Role: "assistant"}) {
		s.clientGone()
		return
	}
	var chunks []string
	if ans.toolName != "" {
		var ev bedrockBlockStart
		ev.Start.ToolUse = &bedrockToolUseStart{ToolUseID: ans.toolUseID, Name: ans.toolName}
		if !send("contentBlockStart", &ev) {
			s.clientGone()
			return
		}
		chunks = argumentPieces(ans.toolInput)
	} else {
		chunks = pieces(ans.text)
	}
	for i, p := range chunks {
		if f.Kind == FaultCut && i == f.Chunks {
			panic(http.ErrAbortHandler)
		}
		if i > 0 && !s.wait(ctx, s.cfg.ChunkDelay) {
			s.clientGone()
			return
		}
		var ev bedrockBlockDelta
		if ans.toolName != "" {
			ev.Delta.ToolUse = &bedrockToolInputDelta{Input: p}
		} else {
			ev.Delta.Text = &p
		}
		if !send("contentBlockDelta", &ev) {
			s.clientGone()
			return
		}
	}
	if f.Kind == FaultCut {
		panic(http.ErrAbortHandler)
	}
	if !s.wait(ctx, s.cfg.ChunkDelay) {
		s.clientGone()
		return
	}
	if len(chunks) > 0 && !send("contentBlockStop", bedrockBlockStop{}) {
		s.clientGone()
		return
	}
	if !send("messageStop", bedrockMessageStop{StopReason: ans.stopReason}) {
		s.clientGone()
		return
	}
	meta := bedrockStreamMetadata{Usage: ans.usage, Metrics: bedrockMetrics{LatencyMs: time.Since(start).Milliseconds()}}
	if !send("metadata", &meta) {
		s.clientGone()
	}
}

// appendEventMessage frames one event as an AWS event stream message: a prelude (total length,
// headers length, both big-endian uint32) and its CRC32, the headers (name length, name, value
// type 7 for string, value length as uint16, value), the payload, and the CRC32 of all that
// precedes it.
func appendEventMessage(buf *bytes.Buffer, eventType string, payload []byte) {
	headers := [...][2]string{
		{":event-type", eventType},
		{":content-type", "application/json"},
		{":message-type", "event"},
	}
	headersLen := 0
	for _, h := range headers {
		headersLen += 1 + len(h[0]) + 1 + 2 + len(h[1])
	}
	total := 12 + headersLen + len(payload) + 4
	start := buf.Len()
	buf.Grow(total)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(total))
	buf.Write(b[:])
	binary.BigEndian.PutUint32(b[:], uint32(headersLen))
	buf.Write(b[:])
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE(buf.Bytes()[start:start+8]))
	buf.Write(b[:])
	for _, h := range headers {
		buf.WriteByte(byte(len(h[0])))
		buf.WriteString(h[0])
		buf.WriteByte(7) // string
		binary.BigEndian.PutUint16(b[:2], uint16(len(h[1])))
		buf.Write(b[:2])
		buf.WriteString(h[1])
	}
	buf.Write(payload)
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE(buf.Bytes()[start:]))
	buf.Write(b[:])
}

func writeBedrockFault(w http.ResponseWriter, model string, f Fault) {
	if f.RetryAfter > 0 {
		secs := int64(math.Ceil(f.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	switch f.Status {
	case http.StatusTooManyRequests:
		writeBedrockError(w, f.Status, bedrockThrottling, "Too many requests, please wait before trying again. (simulated)")
	case http.StatusBadRequest:
		writeBedrockError(w, f.Status, bedrockValidation, "The model "+model+" rejected the request. (simulated)")
	case http.StatusForbidden:
		writeBedrockError(w, f.Status, bedrockAccessDenied, "You don't have access to the model with the specified model ID. (simulated)")
	case http.StatusNotFound:
		writeBedrockError(w, f.Status, bedrockNotFound, "The provided model identifier is invalid. (simulated)")
	case http.StatusRequestTimeout:
		writeBedrockError(w, f.Status, bedrockModelTimeout, "Model has timed out in processing the request. (simulated)")
	case http.StatusFailedDependency:
		writeBedrockError(w, f.Status, bedrockModelError, "The model returned an error. (simulated)")
	case http.StatusServiceUnavailable:
		writeBedrockError(w, f.Status, bedrockUnavailable, "Bedrock is unable to process your request. (simulated)")
	default:
		typ := bedrockInternal
		if f.Status < 500 {
			typ = bedrockValidation
		}
		writeBedrockError(w, f.Status, typ, http.StatusText(f.Status)+" (simulated)")
	}
}

func writeBedrockError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("X-Amzn-Errortype", typ+bedrockErrorNamespace)
	writeJSON(w, status, struct {
		Message string `json:"message"`
	}{msg})
}
