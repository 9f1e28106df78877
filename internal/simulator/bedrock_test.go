package simulator_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/eventstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/simulator"
)

const (
	awsKeyID  = "AKIASIMULATOR0001"
	awsSecret = "sim/secret+key0001"
	awsToken  = "FwoGZXIvYXdzEBYaDsimtoken"
	// awsCreds is the simulator's APIKey for Bedrock: ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN.
	awsCreds = awsKeyID + ":" + awsSecret + ":" + awsToken
)

// newBedrockClient starts sim on loopback and returns the official SDK client for it, signing
// with the given credentials and without retries, so that faults are seen as they are.
func newBedrockClient(t *testing.T, cfg simulator.Config, keyID, secret, token string) (*bedrockruntime.Client, *simulator.Simulator) {
	t.Helper()
	sim := simulator.New(cfg)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	c := bedrockruntime.New(bedrockruntime.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider(keyID, secret, token),
		HTTPClient:   plainBodies{hc},
		Retryer:      aws.NopRetryer{},
	})
	return c, sim
}

// plainBodies hides io.WriterTo on request bodies. smithy-go's request body returns io.EOF from
// WriteTo once closed, which it does when the response headers arrive; net/http, finishing
// the request with one more WriteTo, takes that for a write error and closes the connection
// under the response. Over loopback the simulator answers fast enough to hit this, so the
// client does what dispatch's Bedrock adapter does.
type plainBodies struct{ c *http.Client }

func (p plainBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = struct{ io.ReadCloser }{r.Body}
	}
	return p.c.Do(r)
}

func userText(text string) types.Message {
	return types.Message{Role: types.ConversationRoleUser, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: text}}}
}

func outputText(t *testing.T, out *bedrockruntime.ConverseOutput) string {
	t.Helper()
	msg, ok := out.Output.(*types.ConverseOutputMemberMessage)
	require.True(t, ok, "output is %T", out.Output)
	assert.Equal(t, types.ConversationRoleAssistant, msg.Value.Role)
	var b strings.Builder
	for _, c := range msg.Value.Content {
		if tb, ok := c.(*types.ContentBlockMemberText); ok {
			b.WriteString(tb.Value)
		}
	}
	return b.String()
}

func TestBedrockConverse(t *testing.T) {
	c, sim := newBedrockClient(t, simulator.Config{APIKey: awsCreds}, awsKeyID, awsSecret, awsToken)
	model := "anthropic.claude-3-haiku-20240307-v1:0" // the colon is URL-escaped in the path
	out, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId:  aws.String(model),
		System:   []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "You are terse."}},
		Messages: []types.Message{userText("Hello   there\nfriend")},
	})
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from "+model+". You said: Hello there friend", outputText(t, out))
	assert.Equal(t, types.StopReasonEndTurn, out.StopReason)
	// 3 system words + 3 user words; 9 answer words.
	assert.Equal(t, int32(6), aws.ToInt32(out.Usage.InputTokens))
	assert.Equal(t, int32(9), aws.ToInt32(out.Usage.OutputTokens))
	assert.Equal(t, int32(15), aws.ToInt32(out.Usage.TotalTokens))
	require.NotNil(t, out.Metrics)
	assert.GreaterOrEqual(t, aws.ToInt64(out.Metrics.LatencyMs), int64(0))
	assert.Equal(t, int64(1), sim.Stats().Requests)
}

func TestBedrockConverseModelARN(t *testing.T) {
	c, _ := newBedrockClient(t, simulator.Config{}, awsKeyID, awsSecret, "")
	arn := "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0"
	out, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId: aws.String(arn), Messages: []types.Message{userText("hi")},
	})
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from "+arn+". You said: hi", outputText(t, out))
}

func TestBedrockConverseLimits(t *testing.T) {
	c, _ := newBedrockClient(t, simulator.Config{APIKey: awsCreds}, awsKeyID, awsSecret, awsToken)
	for _, tc := range []struct {
		name   string
		config types.InferenceConfiguration
		text   string
		stop   types.StopReason
		tokens int32
	}{
		{"max tokens", types.InferenceConfiguration{MaxTokens: aws.Int32(3), Temperature: aws.Float32(0.2), TopP: aws.Float32(0.9)},
			"Simulated answer from", types.StopReasonMaxTokens, 3},
		{"stop sequence", types.InferenceConfiguration{StopSequences: []string{"You said", "from"}},
			"Simulated answer ", types.StopReasonStopSequence, 2},
		{"limit above the answer", types.InferenceConfiguration{MaxTokens: aws.Int32(100)},
			"Simulated answer from demo. You said: count me", types.StopReasonEndTurn, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{
				ModelId: aws.String("demo"), Messages: []types.Message{userText("count me")}, InferenceConfig: &tc.config,
			})
			require.NoError(t, err)
			assert.Equal(t, tc.text, outputText(t, out))
			assert.Equal(t, tc.stop, out.StopReason)
			assert.Equal(t, tc.tokens, aws.ToInt32(out.Usage.OutputTokens))
		})
	}
}

func weatherTools(choice types.ToolChoice) *types.ToolConfiguration {
	schema := map[string]any{
		"type":       "object",
		"properties": map[string]any{"city": map[string]any{"type": "string"}},
		"required":   []any{"city"},
	}
	return &types.ToolConfiguration{
		Tools: []types.Tool{&types.ToolMemberToolSpec{Value: types.ToolSpecification{
			Name: aws.String("get_weather"), Description: aws.String("Weather in a city"),
			InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(schema)},
		}}},
		ToolChoice: choice,
	}
}

func TestBedrockToolRoundTrip(t *testing.T) {
	c, _ := newBedrockClient(t, simulator.Config{APIKey: awsCreds}, awsKeyID, awsSecret, awsToken)
	tools := weatherTools(&types.ToolChoiceMemberAny{})
	msgs := []types.Message{userText("Paris please")}
	out, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String("demo"), Messages: msgs, ToolConfig: tools})
	require.NoError(t, err)
	assert.Equal(t, types.StopReasonToolUse, out.StopReason)
	msg := out.Output.(*types.ConverseOutputMemberMessage).Value
	require.Len(t, msg.Content, 1)
	use, ok := msg.Content[0].(*types.ContentBlockMemberToolUse)
	require.True(t, ok, "content is %T", msg.Content[0])
	assert.Equal(t, "get_weather", aws.ToString(use.Value.Name))
	assert.True(t, strings.HasPrefix(aws.ToString(use.Value.ToolUseId), "tooluse_"), aws.ToString(use.Value.ToolUseId))
	var input map[string]any
	require.NoError(t, use.Value.Input.UnmarshalSmithyDocument(&input))
	assert.Equal(t, map[string]any{"city": "Paris please"}, input)
	// The tokens of the name and of {"city":"Paris please"}.
	assert.Equal(t, int32(3), aws.ToInt32(out.Usage.OutputTokens))

	msgs = append(msgs, msg, types.Message{Role: types.ConversationRoleUser, Content: []types.ContentBlock{
		&types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{
			ToolUseId: use.Value.ToolUseId,
			Content:   []types.ToolResultContentBlock{&types.ToolResultContentBlockMemberText{Value: "21 C and sunny"}},
			Status:    types.ToolResultStatusSuccess,
		}},
	}})
	out, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String("demo"), Messages: msgs, ToolConfig: weatherTools(nil)})
	require.NoError(t, err)
	assert.Equal(t, types.StopReasonEndTurn, out.StopReason)
	assert.Equal(t, "Simulated answer from demo. Tool get_weather returned: 21 C and sunny", outputText(t, out))

	// Auto: a call only when the user names the tool.
	out, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId: aws.String("demo"), Messages: []types.Message{userText("use get_weather for Oslo")}, ToolConfig: weatherTools(nil),
	})
	require.NoError(t, err)
	assert.Equal(t, types.StopReasonToolUse, out.StopReason)
	out, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId: aws.String("demo"), Messages: []types.Message{userText("just chat")}, ToolConfig: weatherTools(&types.ToolChoiceMemberAuto{}),
	})
	require.NoError(t, err)
	assert.Equal(t, types.StopReasonEndTurn, out.StopReason)
}

type streamResult struct {
	role      types.ConversationRole
	text      []string
	toolID    string
	toolName  string
	toolInput []string
	stops     int
	stop      types.StopReason
	usage     *types.TokenUsage
	metrics   bool
}

func readStream(t *testing.T, out *bedrockruntime.ConverseStreamOutput) (streamResult, error) {
	t.Helper()
	stream := out.GetStream()
	defer stream.Close()
	var r streamResult
	for ev := range stream.Events() {
		switch v := ev.(type) {
		case *types.ConverseStreamOutputMemberMessageStart:
			r.role = v.Value.Role
		case *types.ConverseStreamOutputMemberContentBlockStart:
			if tu, ok := v.Value.Start.(*types.ContentBlockStartMemberToolUse); ok {
				r.toolID, r.toolName = aws.ToString(tu.Value.ToolUseId), aws.ToString(tu.Value.Name)
			}
		case *types.ConverseStreamOutputMemberContentBlockDelta:
			switch d := v.Value.Delta.(type) {
			case *types.ContentBlockDeltaMemberText:
				r.text = append(r.text, d.Value)
			case *types.ContentBlockDeltaMemberToolUse:
				r.toolInput = append(r.toolInput, aws.ToString(d.Value.Input))
			}
		case *types.ConverseStreamOutputMemberContentBlockStop:
			r.stops++
		case *types.ConverseStreamOutputMemberMessageStop:
			r.stop = v.Value.StopReason
		case *types.ConverseStreamOutputMemberMetadata:
			r.usage = v.Value.Usage
			r.metrics = v.Value.Metrics != nil
		default:
			t.Errorf("unexpected event %T", ev)
		}
	}
	return r, stream.Err()
}

func TestBedrockConverseStream(t *testing.T) {
	c, _ := newBedrockClient(t, simulator.Config{APIKey: awsCreds, ChunkDelay: time.Millisecond}, awsKeyID, awsSecret, awsToken)

	t.Run("text", func(t *testing.T) {
		out, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{
			ModelId:  aws.String("demo"),
			System:   []types.SystemContentBlock{&types.SystemContentBlockMemberText{Value: "Be brief."}},
			Messages: []types.Message{userText("stream me")},
		})
		require.NoError(t, err)
		r, err := readStream(t, out)
		require.NoError(t, err)
		assert.Equal(t, types.ConversationRoleAssistant, r.role)
		assert.Equal(t, "Simulated answer from demo. You said: stream me", strings.Join(r.text, ""))
		assert.Len(t, r.text, 8, "one token per delta")
		assert.Equal(t, 1, r.stops)
		assert.Equal(t, types.StopReasonEndTurn, r.stop)
		require.NotNil(t, r.usage)
		assert.Equal(t, int32(4), aws.ToInt32(r.usage.InputTokens))
		assert.Equal(t, int32(8), aws.ToInt32(r.usage.OutputTokens))
		assert.Equal(t, int32(12), aws.ToInt32(r.usage.TotalTokens))
		assert.True(t, r.metrics)
	})
	t.Run("tool use", func(t *testing.T) {
		out, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{
			ModelId:    aws.String("demo"),
			Messages:   []types.Message{userText("weather in Lyon")},
			ToolConfig: weatherTools(&types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: aws.String("get_weather")}}),
		})
		require.NoError(t, err)
		r, err := readStream(t, out)
		require.NoError(t, err)
		assert.Equal(t, "get_weather", r.toolName)
		assert.NotEmpty(t, r.toolID)
		assert.Greater(t, len(r.toolInput), 1, "the input comes in pieces")
		assert.JSONEq(t, `{"city":"weather in Lyon"}`, strings.Join(r.toolInput, ""))
		assert.Empty(t, r.text)
		assert.Equal(t, types.StopReasonToolUse, r.stop)
		require.NotNil(t, r.usage)
		assert.Equal(t, int32(4), aws.ToInt32(r.usage.OutputTokens))
	})
	t.Run("max tokens", func(t *testing.T) {
		out, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{
			ModelId: aws.String("demo"), Messages: []types.Message{userText("x")},
			InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(2)},
		})
		require.NoError(t, err)
		r, err := readStream(t, out)
		require.NoError(t, err)
		assert.Equal(t, "Simulated answer", strings.Join(r.text, ""))
		assert.Equal(t, types.StopReasonMaxTokens, r.stop)
	})
}

func TestBedrockStreamCut(t *testing.T) {
	c, _ := newBedrockClient(t, simulator.Config{Faults: map[string]simulator.Fault{"cut": simulator.CutAfter(2)}}, awsKeyID, awsSecret, "")
	out, err := c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{
		ModelId: aws.String("cut"), Messages: []types.Message{userText("hello")},
	})
	require.NoError(t, err)
	r, _ := readStream(t, out)
	// The SDK's event stream reader ends quietly on a truncated body: what a client sees is a
	// stream without messageStop and metadata.
	assert.Equal(t, []string{"Simulated ", "answer "}, r.text)
	assert.Empty(t, r.stop)
	assert.Nil(t, r.usage)

	_, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String("cut"), Messages: []types.Message{userText("hello")}})
	require.Error(t, err, "a non-streamed request is dropped before any response")
}

func TestBedrockErrors(t *testing.T) {
	faults := map[string]simulator.Fault{
		"throttled":   simulator.FailWith(http.StatusTooManyRequests, 2*time.Second),
		"invalid":     simulator.FailWith(http.StatusBadRequest, 0),
		"denied":      simulator.FailWith(http.StatusForbidden, 0),
		"broken":      simulator.FailWith(http.StatusInternalServerError, 0),
		"unavailable": simulator.FailWith(http.StatusServiceUnavailable, 0),
	}
	c, _ := newBedrockClient(t, simulator.Config{APIKey: awsCreds, Faults: faults}, awsKeyID, awsSecret, awsToken)
	for _, tc := range []struct {
		model  string
		status int
		check  func(error) bool
	}{
		{"throttled", 429, func(err error) bool { var e *types.ThrottlingException; return errors.As(err, &e) }},
		{"invalid", 400, func(err error) bool { var e *types.ValidationException; return errors.As(err, &e) }},
		{"denied", 403, func(err error) bool { var e *types.AccessDeniedException; return errors.As(err, &e) }},
		{"broken", 500, func(err error) bool { var e *types.InternalServerException; return errors.As(err, &e) }},
		{"unavailable", 503, func(err error) bool { var e *types.ServiceUnavailableException; return errors.As(err, &e) }},
	} {
		t.Run(tc.model, func(t *testing.T) {
			_, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String(tc.model), Messages: []types.Message{userText("hi")}})
			require.Error(t, err)
			assert.True(t, tc.check(err), "%T: %v", errors.Unwrap(err), err)
			var re interface{ HTTPStatusCode() int }
			require.ErrorAs(t, err, &re)
			assert.Equal(t, tc.status, re.HTTPStatusCode())

			_, err = c.ConverseStream(t.Context(), &bedrockruntime.ConverseStreamInput{ModelId: aws.String(tc.model), Messages: []types.Message{userText("hi")}})
			assert.True(t, tc.check(err), "stream: %v", err)
		})
	}

	var ve *types.ValidationException
	_, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String("demo"), Messages: []types.Message{
		{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{&types.ContentBlockMemberText{Value: "hi"}}},
	}})
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.ErrorMessage(), "must start with a user message")

	_, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{
		ModelId: aws.String("demo"), Messages: []types.Message{userText("hi")},
		InferenceConfig: &types.InferenceConfiguration{MaxTokens: aws.Int32(0)},
	})
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.ErrorMessage(), "inferenceConfig.maxTokens")

	_, err = c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String("demo"), Messages: []types.Message{
		userText("hi"),
		{Role: types.ConversationRoleAssistant, Content: []types.ContentBlock{&types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
			ToolUseId: aws.String("tooluse_1"), Name: aws.String("get_weather"), Input: document.NewLazyDocument(map[string]any{}),
		}}}},
		userText("and?"),
	}, ToolConfig: weatherTools(nil)})
	require.ErrorAs(t, err, &ve)
	assert.Contains(t, ve.ErrorMessage(), "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_1")
}

func TestBedrockAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		keyID, secret, token string
		code                 string
	}{
		{"valid", awsKeyID, awsSecret, awsToken, ""},
		{"unknown key id", "AKIAOTHER", awsSecret, awsToken, "UnrecognizedClientException"},
		{"wrong secret", awsKeyID, "not-the-secret", awsToken, "InvalidSignatureException"},
		{"missing session token", awsKeyID, awsSecret, "", "UnrecognizedClientException"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sim := newBedrockClient(t, simulator.Config{APIKey: awsCreds}, tc.keyID, tc.secret, tc.token)
			_, err := c.Converse(t.Context(), &bedrockruntime.ConverseInput{ModelId: aws.String("demo"), Messages: []types.Message{userText("hi")}})
			if tc.code == "" {
				require.NoError(t, err)
				return
			}
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tc.code, apiErr.ErrorCode())
			assert.NotContains(t, err.Error(), tc.secret)
			assert.Zero(t, sim.Stats().Requests)
		})
	}

	srv := httptest.NewServer(simulator.New(simulator.Config{APIKey: awsCreds}))
	defer srv.Close()
	res, err := srv.Client().Post(srv.URL+"/model/demo/converse", "application/json", strings.NewReader(`{"messages":[]}`))
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, http.StatusForbidden, res.StatusCode)
	assert.True(t, strings.HasPrefix(res.Header.Get("X-Amzn-Errortype"), "MissingAuthenticationTokenException"))
}

// TestBedrockEventStreamFraming reads a stream with a plain HTTP client and the event stream
// decoder, which checks both CRCs, to see the frames as AWS sends them.
func TestBedrockEventStreamFraming(t *testing.T) {
	srv := httptest.NewServer(simulator.New(simulator.Config{}))
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/model/demo/converse-stream",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"two words"}]}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDX/20240101/eu-west-1/bedrock/aws4_request, SignedHeaders=host, Signature=00")
	res, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "application/vnd.amazon.eventstream", res.Header.Get("Content-Type"))

	dec := eventstream.NewDecoder()
	var events []string
	for {
		msg, err := dec.Decode(res.Body, nil)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		assert.Equal(t, "event", msg.Headers.Get(":message-type").String())
		assert.Equal(t, "application/json", msg.Headers.Get(":content-type").String())
		events = append(events, msg.Headers.Get(":event-type").String())
		assert.True(t, bytes.HasPrefix(msg.Payload, []byte("{")), string(msg.Payload))
	}
	want := []string{"messageStart"}
	for range 8 { // Simulated answer from demo. You said: two words
		want = append(want, "contentBlockDelta")
	}
	want = append(want, "contentBlockStop", "messageStop", "metadata")
	assert.Equal(t, want, events)
}

func TestBedrockHang(t *testing.T) {
	c, sim := newBedrockClient(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}}, awsKeyID, awsSecret, "")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String("stuck"), Messages: []types.Message{userText("hi")}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Eventually(t, func() bool { return sim.Stats().Canceled == 1 }, 2*time.Second, 5*time.Millisecond)
}
