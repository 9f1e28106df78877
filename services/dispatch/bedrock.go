package dispatch

// The AWS Bedrock adapter, for PROVIDER_KIND_BEDROCK: the Converse and ConverseStream APIs
// through aws-sdk-go-v2, which signs with SigV4 and decodes the event stream.
//
// Configuration comes from the registry only. The endpoint's region is required; its base URL
// is the Bedrock Runtime endpoint (https://bedrock-runtime.<region>.amazonaws.com for AWS
// itself); its credential is "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]". The SDK's
// shared configuration (config.LoadDefaultConfig: AWS_* variables, ~/.aws files, instance
// roles) is never read, so nothing of the host's AWS setup reaches a request.
//
// What Bedrock cannot do, or does differently:
//   - Images must be sent as bytes: data URLs (png, jpeg, gif, webp) are decoded; https URLs
//     are unsupported (dispatch does not fetch images on a caller's behalf).
//   - Converse has no "none" tool choice: with MODE_NONE the tools are not sent, so the model
//     cannot call one; a conversation that already holds tool calls needs its tools sent, so
//     MODE_NONE is then unsupported.
//   - response_format, seed, frequency_penalty and presence_penalty are unsupported. The end
//     user id is not sent: Converse has no such field, and requestMetadata would copy it into
//     the account's invocation logs.
//   - Embeddings (Titan through InvokeModel) are not built yet: embed is unsupported.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"

	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

type bedrockVendor struct {
	endpointID string
	model      string
	// secrets are the parts of the credential, removed from any vendor or transport text.
	secrets []string
	client  *bedrockruntime.Client
}

// errBedrockCredential says what a Bedrock credential must look like, without its value.
var errBedrockCredential = errors.New("bedrock credential must be ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]")

func newBedrockVendor(cfg vendorConfig) (vendor, error) {
	if cfg.region == "" {
		return nil, errors.New("bedrock endpoint has no region")
	}
	creds, err := parseBedrockCredential(cfg.cred)
	if err != nil {
		return nil, err
	}
	opts := bedrockruntime.Options{
		Region: cfg.region,
		Credentials: credentials.NewStaticCredentialsProvider(
			creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken),
		HTTPClient: bedrockHTTPClient{cfg.client},
		Retryer:    aws.NopRetryer{}, // dispatch owns retries and fallback
	}
	if cfg.baseURL != nil {
		opts.BaseEndpoint = aws.String(cfg.baseURL.String())
	}
	v := &bedrockVendor{
		endpointID: cfg.endpointID,
		model:      cfg.upstreamModel,
		client:     bedrockruntime.New(opts),
	}
	for _, s := range []string{cfg.cred.Reveal(), creds.SecretAccessKey, creds.SessionToken, creds.AccessKeyID} {
		if s != "" {
			v.secrets = append(v.secrets, s)
		}
	}
	return v, nil
}

// bedrockHTTPClient sends the SDK's requests through the shared client with bodies that are
// plain io.ReadClosers. smithy-go wraps a request body in a reader whose WriteTo returns io.EOF
// once the body is closed, and closes it as soon as the response headers arrive; net/http's
// writer, finishing the request with a last WriteTo to check for extra bytes, then takes that
// io.EOF for a write error and closes the connection under the response still being read.
// A fast answer (a stream over loopback) then dies with "use of closed network connection".
// Without WriteTo, the last check reads, and a read's io.EOF is the normal end.
type bedrockHTTPClient struct{ c *http.Client }

func (h bedrockHTTPClient) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = readCloserOnly{r.Body}
	}
	c := h.c
	if c == nil {
		c = http.DefaultClient
	}
	return c.Do(r)
}

// readCloserOnly hides every method of its body but Read and Close.
type readCloserOnly struct{ io.ReadCloser }

// parseBedrockCredential splits "ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]". AWS keys and
// session tokens never contain ":".
func parseBedrockCredential(c Credential) (aws.Credentials, error) {
	parts := strings.Split(c.Reveal(), ":")
	if len(parts) < 2 || len(parts) > 3 {
		return aws.Credentials{}, errBedrockCredential
	}
	for _, p := range parts {
		if p == "" || strings.TrimSpace(p) != p {
			return aws.Credentials{}, errBedrockCredential
		}
	}
	creds := aws.Credentials{AccessKeyID: parts[0], SecretAccessKey: parts[1], Source: "fmgate registry"}
	if len(parts) == 3 {
		creds.SessionToken = parts[2]
	}
	return creds, nil
}

// redact removes every part of the credential from s.
func (v *bedrockVendor) redact(s string) string {
	for _, secret := range v.secrets {
		s = strings.ReplaceAll(s, secret, "[REDACTED]")
	}
	return s
}

// bedrockInput is what ConverseInput and ConverseStreamInput share.
type bedrockInput struct {
	system    []types.SystemContentBlock
	messages  []types.Message
	inference *types.InferenceConfiguration
	tools     *types.ToolConfiguration
}

func (v *bedrockVendor) input(req *vendorRequest) (*bedrockInput, error) {
	in := &bedrockInput{}
	hasToolBlocks := false
	for _, m := range req.messages {
		var role types.ConversationRole
		var blocks []types.ContentBlock
		switch m.GetRole() {
		case typev1.Role_ROLE_SYSTEM, typev1.Role_ROLE_DEVELOPER:
			for _, c := range m.GetContent() {
				if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok && t.Text != "" {
					in.system = append(in.system, &types.SystemContentBlockMemberText{Value: t.Text})
				}
			}
			continue
		case typev1.Role_ROLE_USER:
			role = types.ConversationRoleUser
			for _, c := range m.GetContent() {
				switch part := c.GetPart().(type) {
				case *typev1.ContentPart_Text:
					if part.Text != "" {
						blocks = append(blocks, &types.ContentBlockMemberText{Value: part.Text})
					}
				case *typev1.ContentPart_Image:
					img, err := v.image(part.Image.GetUrl())
					if err != nil {
						return nil, err
					}
					blocks = append(blocks, img)
				}
			}
		case typev1.Role_ROLE_ASSISTANT:
			role = types.ConversationRoleAssistant
			blocks = textBlocks(m)
			for _, tc := range m.GetToolCalls() {
				args, err := v.jsonDocument(tc.GetArgumentsJson(), "tool call arguments")
				if err != nil {
					return nil, err
				}
				blocks = append(blocks, &types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
					ToolUseId: aws.String(tc.GetId()), Name: aws.String(tc.GetName()), Input: args,
				}})
				hasToolBlocks = true
			}
		case typev1.Role_ROLE_TOOL:
			// Bedrock carries tool results in user turns.
			role = types.ConversationRoleUser
			var content []types.ToolResultContentBlock
			for _, c := range m.GetContent() {
				if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok {
					content = append(content, &types.ToolResultContentBlockMemberText{Value: t.Text})
				}
			}
			blocks = []types.ContentBlock{&types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{
				ToolUseId: aws.String(m.GetToolCallId()), Content: content,
			}}}
			hasToolBlocks = true
		default:
			return nil, v.badRequest("message with role " + m.GetRole().String())
		}
		// Bedrock wants user and assistant turns to alternate: consecutive messages of one
		// role (several tool results, a tool result then a user message) become one turn.
		if n := len(in.messages); n > 0 && in.messages[n-1].Role == role {
			in.messages[n-1].Content = append(in.messages[n-1].Content, blocks...)
			continue
		}
		in.messages = append(in.messages, types.Message{Role: role, Content: blocks})
	}

	gp := req.params
	if gp == nil {
		return in, nil
	}
	switch {
	case gp.Seed != nil:
		return nil, v.unsupported("seed")
	case gp.FrequencyPenalty != nil:
		return nil, v.unsupported("frequency_penalty")
	case gp.PresencePenalty != nil:
		return nil, v.unsupported("presence_penalty")
	case gp.GetResponseFormat().GetType() != typev1.ResponseFormat_TYPE_UNSPECIFIED:
		return nil, v.unsupported("response_format")
	}
	if gp.MaxOutputTokens != nil || gp.Temperature != nil || gp.TopP != nil || len(gp.GetStop()) > 0 {
		ic := &types.InferenceConfiguration{StopSequences: gp.GetStop()}
		if gp.MaxOutputTokens != nil {
			ic.MaxTokens = aws.Int32(gp.GetMaxOutputTokens())
		}
		if gp.Temperature != nil {
			ic.Temperature = aws.Float32(float32(gp.GetTemperature()))
		}
		if gp.TopP != nil {
			ic.TopP = aws.Float32(float32(gp.GetTopP()))
		}
		in.inference = ic
	}
	if len(gp.GetTools()) == 0 {
		return in, nil
	}
	choice := gp.GetToolChoice()
	if choice.GetMode() == typev1.ToolChoice_MODE_NONE {
		if hasToolBlocks {
			return nil, v.unsupported("tool_choice none in a conversation with tool calls")
		}
		return in, nil
	}
	tc := &types.ToolConfiguration{}
	for _, t := range gp.GetTools() {
		params := t.GetParametersJson()
		if params == "" {
			params = `{"type":"object","properties":{}}`
		}
		schema, err := v.jsonDocument(params, "parameters of tool "+t.GetName())
		if err != nil {
			return nil, err
		}
		spec := types.ToolSpecification{Name: aws.String(t.GetName()), InputSchema: &types.ToolInputSchemaMemberJson{Value: schema}}
		if t.GetDescription() != "" {
			spec.Description = aws.String(t.GetDescription())
		}
		if t.GetStrict() {
			spec.Strict = aws.Bool(true)
		}
		tc.Tools = append(tc.Tools, &types.ToolMemberToolSpec{Value: spec})
	}
	switch choice.GetMode() {
	case typev1.ToolChoice_MODE_REQUIRED:
		tc.ToolChoice = &types.ToolChoiceMemberAny{}
	case typev1.ToolChoice_MODE_TOOL:
		tc.ToolChoice = &types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: aws.String(choice.GetName())}}
	}
	// MODE_UNSPECIFIED sends no toolChoice: Bedrock's default is auto, and only some models
	// accept an explicit one.
	in.tools = tc
	return in, nil
}

func textBlocks(m *typev1.Message) []types.ContentBlock {
	blocks := make([]types.ContentBlock, 0, len(m.GetContent())+len(m.GetToolCalls()))
	for _, c := range m.GetContent() {
		if t, ok := c.GetPart().(*typev1.ContentPart_Text); ok && t.Text != "" {
			blocks = append(blocks, &types.ContentBlockMemberText{Value: t.Text})
		}
	}
	return blocks
}

// bedrockImageFormats maps the media types of data URLs to Bedrock's image formats.
var bedrockImageFormats = map[string]types.ImageFormat{
	"image/png":  types.ImageFormatPng,
	"image/jpeg": types.ImageFormatJpeg,
	"image/jpg":  types.ImageFormatJpeg,
	"image/gif":  types.ImageFormatGif,
	"image/webp": types.ImageFormatWebp,
}

// image turns a base64 data URL into an image block. Bedrock takes image bytes (or S3
// locations) only, so other URLs are unsupported.
func (v *bedrockVendor) image(u string) (types.ContentBlock, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, v.unsupported("image URLs (Bedrock takes image bytes: send a data URL)")
	}
	meta, data, ok := strings.Cut(rest, ",")
	mediaType, isBase64 := strings.CutSuffix(meta, ";base64")
	if !ok || !isBase64 {
		return nil, v.badRequest("image data URL is not base64")
	}
	format, ok := bedrockImageFormats[strings.ToLower(mediaType)]
	if !ok {
		return nil, v.unsupported("image type " + mediaType)
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, v.badRequest("image data URL is not valid base64")
	}
	return &types.ContentBlockMemberImage{Value: types.ImageBlock{Format: format, Source: &types.ImageSourceMemberBytes{Value: b}}}, nil
}

// jsonDocument decodes a JSON document for the SDK; what names it for errors. Integers stay
// integers (the SDK would send a json.Number as a string).
func (v *bedrockVendor) jsonDocument(s, what string) (document.Interface, error) {
	if strings.TrimSpace(s) == "" {
		s = "{}"
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var val any
	if err := dec.Decode(&val); err != nil || dec.More() {
		return nil, v.badRequest(what + " are not a JSON document")
	}
	return document.NewLazyDocument(plainNumbers(val)), nil
}

// plainNumbers replaces the json.Numbers in a decoded document by int64 or float64.
func plainNumbers(val any) any {
	switch x := val.(type) {
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64() // a json.Number from the decoder is a valid number
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = plainNumbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = plainNumbers(e)
		}
	}
	return val
}

func (v *bedrockVendor) unsupported(what string) error {
	return &attemptError{kind: failUnsupported, endpointID: v.endpointID, detail: what}
}

func (v *bedrockVendor) badRequest(msg string) error {
	return &attemptError{kind: failBadRequest, endpointID: v.endpointID, detail: msg, vendorMessage: msg}
}

func (v *bedrockVendor) generate(ctx context.Context, req *vendorRequest) (*vendorResult, error) {
	in, err := v.input(req)
	if err != nil {
		return nil, err
	}
	out, err := v.client.Converse(ctx, &bedrockruntime.ConverseInput{
		ModelId: aws.String(v.model), Messages: in.messages, System: in.system,
		InferenceConfig: in.inference, ToolConfig: in.tools,
	})
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	output, ok := out.Output.(*types.ConverseOutputMemberMessage)
	if !ok {
		return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "vendor answered without a message"}
	}
	msg := &typev1.Message{Role: typev1.Role_ROLE_ASSISTANT}
	for _, b := range output.Value.Content {
		switch b := b.(type) {
		case *types.ContentBlockMemberText:
			msg.Content = append(msg.Content, &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: b.Value}})
		case *types.ContentBlockMemberToolUse:
			args := "{}"
			if b.Value.Input != nil {
				raw, err := b.Value.Input.MarshalSmithyDocument()
				if err != nil {
					return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "vendor sent a malformed tool input"}
				}
				args = string(raw)
			}
			msg.ToolCalls = append(msg.ToolCalls, &typev1.ToolCall{
				Id: aws.ToString(b.Value.ToolUseId), Name: aws.ToString(b.Value.Name), ArgumentsJson: args,
			})
		}
		// Reasoning, citations and other blocks have no place in the neutral message.
	}
	return &vendorResult{
		message: msg,
		finish:  fromBedrockStop(out.StopReason),
		usage:   fromBedrockUsage(out.Usage),
		model:   v.model,
	}, nil
}

func (v *bedrockVendor) stream(ctx context.Context, req *vendorRequest, onDelta func(delta) error) (*vendorResult, error) {
	in, err := v.input(req)
	if err != nil {
		return nil, err
	}
	out, err := v.client.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
		ModelId: aws.String(v.model), Messages: in.messages, System: in.system,
		InferenceConfig: in.inference, ToolConfig: in.tools,
	})
	if err != nil {
		return nil, v.classify(ctx, err)
	}
	s := out.GetStream()
	defer s.Close()
	res := &vendorResult{model: v.model}
	finished := false
	// toolIndex maps the content block of each tool call to the call's index in the answer.
	toolIndex := map[int32]int32{}
	for ev := range s.Events() {
		switch e := ev.(type) {
		case *types.ConverseStreamOutputMemberContentBlockStart:
			tu, ok := e.Value.Start.(*types.ContentBlockStartMemberToolUse)
			if !ok {
				continue
			}
			idx := int32(len(toolIndex))
			toolIndex[aws.ToInt32(e.Value.ContentBlockIndex)] = idx
			if err := onDelta(delta{model: v.model, toolCalls: []*typev1.ToolCallDelta{{
				Index: idx, Id: aws.ToString(tu.Value.ToolUseId), Name: aws.ToString(tu.Value.Name),
			}}}); err != nil {
				return nil, err
			}
		case *types.ConverseStreamOutputMemberContentBlockDelta:
			switch d := e.Value.Delta.(type) {
			case *types.ContentBlockDeltaMemberText:
				if d.Value == "" {
					continue
				}
				if err := onDelta(delta{model: v.model, text: d.Value}); err != nil {
					return nil, err
				}
			case *types.ContentBlockDeltaMemberToolUse:
				idx, ok := toolIndex[aws.ToInt32(e.Value.ContentBlockIndex)]
				if !ok {
					return nil, &attemptError{kind: failUnavailable, endpointID: v.endpointID, detail: "vendor sent tool input before the tool call"}
				}
				if err := onDelta(delta{model: v.model, toolCalls: []*typev1.ToolCallDelta{{
					Index: idx, ArgumentsDelta: aws.ToString(d.Value.Input),
				}}}); err != nil {
					return nil, err
				}
			}
		case *types.ConverseStreamOutputMemberMessageStop:
			res.finish = fromBedrockStop(e.Value.StopReason)
			finished = true
		case *types.ConverseStreamOutputMemberMetadata:
			res.usage = fromBedrockUsage(e.Value.Usage)
		}
	}
	if err := s.Err(); err != nil {
		return nil, v.classify(ctx, err)
	}
	if !finished {
		// The SDK ends the event channel quietly when the body ends, even mid-message; without
		// messageStop the answer is incomplete.
		return nil, &attemptError{kind: failInterrupted, endpointID: v.endpointID, detail: "stream ended without messageStop"}
	}
	return res, nil
}

// classify turns an SDK error into an *attemptError, passing context errors through.
func (v *bedrockVendor) classify(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	ae := &attemptError{kind: failUnavailable, endpointID: v.endpointID}
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		ae.httpStatus = respErr.HTTPStatusCode()
		if respErr.Response != nil {
			ae.retryAfter = parseRetryAfter(respErr.Response.Header, time.Now())
		}
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		code := apiErr.ErrorCode()
		ae.kind = bedrockFailure(code, ae.httpStatus)
		ae.detail = code
		if ae.kind != failCredential {
			// Credential errors may quote the presented key id or token: keep none of it.
			ae.vendorMessage = v.redact(apiErr.ErrorMessage())
			if ae.vendorMessage != "" {
				ae.detail += ": " + ae.vendorMessage
			}
		}
		return ae
	}
	switch {
	case isNetTimeout(err):
		ae.kind = failTimeout
	case ae.httpStatus != 0:
		ae.kind = classifyHTTP(ae.httpStatus)
	}
	ae.detail = v.redact(err.Error())
	return ae
}

// bedrockFailure classifies a Bedrock error code, falling back on the HTTP status.
func bedrockFailure(code string, httpStatus int) failure {
	switch code {
	case "ThrottlingException", "ServiceQuotaExceededException":
		return failRateLimited
	case "ServiceUnavailableException", "InternalServerException", "ModelNotReadyException", "ModelErrorException":
		return failUnavailable
	case "ModelStreamErrorException":
		return failInterrupted
	case "ModelTimeoutException":
		return failTimeout
	case "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException",
		"IncompleteSignatureException", "MissingAuthenticationTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch":
		return failCredential
	case "ValidationException":
		return failBadRequest
	}
	if httpStatus != 0 {
		return classifyHTTP(httpStatus)
	}
	return failUnavailable
}

func fromBedrockStop(r types.StopReason) typev1.FinishReason {
	switch r {
	case types.StopReasonEndTurn, types.StopReasonStopSequence:
		return typev1.FinishReason_FINISH_REASON_STOP
	case types.StopReasonMaxTokens, types.StopReasonModelContextWindowExceeded:
		return typev1.FinishReason_FINISH_REASON_LENGTH
	case types.StopReasonToolUse:
		return typev1.FinishReason_FINISH_REASON_TOOL_CALLS
	case types.StopReasonContentFiltered, types.StopReasonGuardrailIntervened:
		return typev1.FinishReason_FINISH_REASON_CONTENT_FILTER
	default:
		return typev1.FinishReason_FINISH_REASON_UNSPECIFIED
	}
}

func fromBedrockUsage(u *types.TokenUsage) *typev1.Usage {
	if u == nil {
		return nil
	}
	return &typev1.Usage{
		InputTokens:  int64(aws.ToInt32(u.InputTokens)),
		OutputTokens: int64(aws.ToInt32(u.OutputTokens)),
		TotalTokens:  int64(aws.ToInt32(u.TotalTokens)),
	}
}

// embed is unsupported until Titan embeddings (InvokeModel) are built.
func (v *bedrockVendor) embed(context.Context, *embedRequest) (*embedResult, error) {
	return nil, v.unsupported("embeddings")
}
