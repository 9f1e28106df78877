package dispatch

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

const (
	bedrockKeyID  = "AKIADISPATCHTEST01"
	bedrockSecret = "dispatch/Secret+Access+Key0123456789"
	bedrockCred   = bedrockKeyID + ":" + bedrockSecret
)

// startBedrock serves a simulator requiring bedrockCred on loopback and returns a Bedrock
// adapter for it built as the endpoint cache builds one.
func startBedrock(t *testing.T, cfg simulator.Config, model, cred string) *bedrockVendor {
	t.Helper()
	cfg.APIKey = bedrockCred
	srv := httptest.NewServer(simulator.New(cfg))
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	v, err := newBedrockVendor(vendorConfig{
		endpointID: "bedrock-1", provider: registryv1.ProviderKind_PROVIDER_KIND_BEDROCK, baseURL: u,
		upstreamModel: model, region: "eu-west-1", cred: NewCredential(cred), client: hc,
	})
	require.NoError(t, err)
	return v.(*bedrockVendor)
}

func textPart(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

func msg(role typev1.Role, parts ...*typev1.ContentPart) *typev1.Message {
	return &typev1.Message{Role: role, Content: parts}
}

func weatherTool() *typev1.Tool {
	return &typev1.Tool{
		Name: "get_weather", Description: "Weather in a city",
		ParametersJson: `{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer","minimum":1}},"required":["city"]}`,
	}
}

// requireAttempt asserts err is an *attemptError of kind and that no part of the credential
// is in its text.
func requireAttempt(t *testing.T, err error, kind failure) *attemptError {
	t.Helper()
	var ae *attemptError
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, kind, ae.kind, ae.Error())
	for _, s := range []string{bedrockSecret, bedrockCred} {
		assert.NotContains(t, ae.Error(), s)
		assert.NotContains(t, ae.vendorMessage, s)
	}
	return ae
}

func TestBedrockGenerate(t *testing.T) {
	model := "anthropic.claude-3-haiku-20240307-v1:0"
	v := startBedrock(t, simulator.Config{}, model, bedrockCred)
	for _, tc := range []struct {
		name   string
		params *typev1.GenerationParams
		text   string
		finish typev1.FinishReason
		output int64
	}{
		{"plain", nil, "Simulated answer from " + model + ". You said: Hello there", typev1.FinishReason_FINISH_REASON_STOP, 8},
		{"max tokens", &typev1.GenerationParams{MaxOutputTokens: new(int32(2)), Temperature: new(0.3), TopP: new(0.8)},
			"Simulated answer", typev1.FinishReason_FINISH_REASON_LENGTH, 2},
		{"stop", &typev1.GenerationParams{Stop: []string{"You"}},
			"Simulated answer from " + model + ". ", typev1.FinishReason_FINISH_REASON_STOP, 4},
		{"end user id is not sent", &typev1.GenerationParams{EndUserId: "user-7"},
			"Simulated answer from " + model + ". You said: Hello there", typev1.FinishReason_FINISH_REASON_STOP, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{params: tc.params, messages: []*typev1.Message{
				msg(typev1.Role_ROLE_SYSTEM, textPart("Be brief.")),
				msg(typev1.Role_ROLE_DEVELOPER, textPart("No jokes.")),
				msg(typev1.Role_ROLE_USER, textPart("Hello"), textPart("there")),
			}})
			require.NoError(t, err)
			assert.Equal(t, typev1.Role_ROLE_ASSISTANT, res.message.GetRole())
			require.Len(t, res.message.GetContent(), 1)
			assert.Equal(t, tc.text, res.message.GetContent()[0].GetText())
			assert.Equal(t, tc.finish, res.finish)
			assert.Equal(t, model, res.model)
			// Both system prompts reach Bedrock: 2 + 2 words, and the user's 2.
			assert.Equal(t, int64(6), res.usage.GetInputTokens())
			assert.Equal(t, tc.output, res.usage.GetOutputTokens())
			assert.Equal(t, 6+tc.output, res.usage.GetTotalTokens())
		})
	}
}

func TestBedrockImages(t *testing.T) {
	v := startBedrock(t, simulator.Config{}, "demo", bedrockCred)
	image := func(u string) *vendorRequest {
		return &vendorRequest{messages: []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("look"),
			&typev1.ContentPart{Part: &typev1.ContentPart_Image{Image: &typev1.ImagePart{Url: u}}})}}
	}
	res, err := v.generate(t.Context(), image("data:image/png;base64,iVBORw0KGgo="))
	require.NoError(t, err)
	assert.Equal(t, int64(1+85), res.usage.GetInputTokens(), "the image reached Bedrock as bytes")

	for _, tc := range []struct {
		url  string
		kind failure
	}{
		{"https://example.com/cat.png", failUnsupported},
		{"data:image/bmp;base64,Qk0=", failUnsupported},
		{"data:image/png;base64,not base64!", failBadRequest},
		{"data:image/png,rawbytes", failBadRequest},
	} {
		_, err := v.generate(t.Context(), image(tc.url))
		requireAttempt(t, err, tc.kind)
	}
}

func TestBedrockToolRoundTrip(t *testing.T) {
	v := startBedrock(t, simulator.Config{}, "demo", bedrockCred)
	params := &typev1.GenerationParams{Tools: []*typev1.Tool{weatherTool()},
		ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}}
	msgs := []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("Oslo"))}
	res, err := v.generate(t.Context(), &vendorRequest{messages: msgs, params: params})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)
	require.Len(t, res.message.GetToolCalls(), 1)
	call := res.message.GetToolCalls()[0]
	assert.Equal(t, "get_weather", call.GetName())
	assert.NotEmpty(t, call.GetId())
	// The schema reached Bedrock as a document, integer minimum included.
	assert.JSONEq(t, `{"city":"Oslo","days":1}`, call.GetArgumentsJson())

	// The answer, with a second call made up by the caller: both results go back in one user
	// turn, then the user speaks again in the same turn.
	res.message.ToolCalls = append(res.message.ToolCalls, &typev1.ToolCall{Id: "call_2", Name: "get_weather", ArgumentsJson: `{"city":"Bergen"}`})
	msgs = append(msgs, res.message,
		&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: call.GetId(), Content: []*typev1.ContentPart{textPart("-3 C")}},
		&typev1.Message{Role: typev1.Role_ROLE_TOOL, ToolCallId: "call_2", Content: []*typev1.ContentPart{textPart("4 C, rain")}},
	)
	params.ToolChoice = nil
	res, err = v.generate(t.Context(), &vendorRequest{messages: msgs, params: params})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
	assert.Equal(t, "Simulated answer from demo. Tool get_weather returned: 4 C, rain", res.message.GetContent()[0].GetText())

	msgs = append(msgs, msg(typev1.Role_ROLE_ASSISTANT, textPart("Cold.")), msg(typev1.Role_ROLE_USER, textPart("thanks")))
	res, err = v.generate(t.Context(), &vendorRequest{messages: msgs, params: params})
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from demo. You said: thanks", res.message.GetContent()[0].GetText())
}

func TestBedrockToolChoice(t *testing.T) {
	v := startBedrock(t, simulator.Config{}, "demo", bedrockCred)
	ask := []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("use get_weather for Rome"))}
	for _, tc := range []struct {
		name   string
		choice *typev1.ToolChoice
		finish typev1.FinishReason
	}{
		{"auto", nil, typev1.FinishReason_FINISH_REASON_TOOL_CALLS},
		{"named", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "get_weather"}, typev1.FinishReason_FINISH_REASON_TOOL_CALLS},
		{"none omits the tools", &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}, typev1.FinishReason_FINISH_REASON_STOP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := v.generate(t.Context(), &vendorRequest{messages: ask, params: &typev1.GenerationParams{
				Tools: []*typev1.Tool{weatherTool()}, ToolChoice: tc.choice,
			}})
			require.NoError(t, err)
			assert.Equal(t, tc.finish, res.finish)
		})
	}

	history := []*typev1.Message{
		msg(typev1.Role_ROLE_USER, textPart("Rome")),
		{Role: typev1.Role_ROLE_ASSISTANT, ToolCalls: []*typev1.ToolCall{{Id: "c1", Name: "get_weather", ArgumentsJson: `{"city":"Rome"}`}}},
		{Role: typev1.Role_ROLE_TOOL, ToolCallId: "c1", Content: []*typev1.ContentPart{textPart("20 C")}},
	}
	_, err := v.generate(t.Context(), &vendorRequest{messages: history, params: &typev1.GenerationParams{
		Tools: []*typev1.Tool{weatherTool()}, ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE},
	}})
	requireAttempt(t, err, failUnsupported)

	_, err = v.generate(t.Context(), &vendorRequest{messages: ask, params: &typev1.GenerationParams{
		Tools: []*typev1.Tool{{Name: "broken", ParametersJson: `{"type":`}},
	}})
	requireAttempt(t, err, failBadRequest)
}

func TestBedrockStream(t *testing.T) {
	v := startBedrock(t, simulator.Config{ChunkDelay: time.Millisecond}, "demo", bedrockCred)

	t.Run("text", func(t *testing.T) {
		var text []string
		res, err := v.stream(t.Context(), &vendorRequest{messages: []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("stream me"))}},
			func(d delta) error {
				assert.Equal(t, "demo", d.model)
				assert.Empty(t, d.toolCalls)
				text = append(text, d.text)
				return nil
			})
		require.NoError(t, err)
		assert.Equal(t, "Simulated answer from demo. You said: stream me", strings.Join(text, ""))
		assert.Len(t, text, 8)
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
		assert.Equal(t, int64(2), res.usage.GetInputTokens())
		assert.Equal(t, int64(8), res.usage.GetOutputTokens())
		assert.Nil(t, res.message)
	})

	t.Run("tool call", func(t *testing.T) {
		var pieces []*typev1.ToolCallDelta
		res, err := v.stream(t.Context(), &vendorRequest{
			messages: []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("weather in Lyon"))},
			params: &typev1.GenerationParams{Tools: []*typev1.Tool{weatherTool()},
				ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "get_weather"}},
		}, func(d delta) error {
			assert.Empty(t, d.text)
			pieces = append(pieces, d.toolCalls...)
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)
		require.Greater(t, len(pieces), 2, "the arguments come in pieces")
		assert.Equal(t, "get_weather", pieces[0].GetName())
		assert.NotEmpty(t, pieces[0].GetId())
		var args strings.Builder
		for i, p := range pieces {
			assert.Equal(t, int32(0), p.GetIndex())
			if i > 0 {
				assert.Empty(t, p.GetId())
				assert.Empty(t, p.GetName())
			}
			args.WriteString(p.GetArgumentsDelta())
		}
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(args.String()), &got))
		assert.Equal(t, "weather in Lyon", got["city"])
		assert.NotNil(t, res.usage)
	})

	t.Run("streams back to back on one connection", func(t *testing.T) {
		// Over loopback the answer is fast enough to race the SDK closing the request body
		// (see bedrockHTTPClient); every stream must still end well.
		for range 50 {
			res, err := v.stream(t.Context(), &vendorRequest{messages: []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("x"))}},
				func(delta) error { return nil })
			require.NoError(t, err)
			require.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, res.finish)
		}
	})

	t.Run("onDelta error stops the stream", func(t *testing.T) {
		stop := context.Canceled
		_, err := v.stream(t.Context(), &vendorRequest{messages: []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("x"))}},
			func(delta) error { return stop })
		require.ErrorIs(t, err, stop)
	})
}

func TestBedrockUnsupported(t *testing.T) {
	v := startBedrock(t, simulator.Config{}, "demo", bedrockCred)
	user := []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("hi"))}
	for name, p := range map[string]*typev1.GenerationParams{
		"seed":              {Seed: new(int64(7))},
		"frequency_penalty": {FrequencyPenalty: new(0.5)},
		"presence_penalty":  {PresencePenalty: new(0.5)},
		"response_format":   {ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_OBJECT}},
	} {
		_, err := v.generate(t.Context(), &vendorRequest{messages: user, params: p})
		ae := requireAttempt(t, err, failUnsupported)
		assert.Contains(t, ae.detail, name)
		_, err = v.stream(t.Context(), &vendorRequest{messages: user, params: p}, func(delta) error { return nil })
		requireAttempt(t, err, failUnsupported)
	}
	_, err := v.embed(t.Context(), &embedRequest{inputs: []string{"x"}})
	requireAttempt(t, err, failUnsupported)
}

func TestBedrockErrors(t *testing.T) {
	faults := map[string]simulator.Fault{
		"throttled":   simulator.FailWith(http.StatusTooManyRequests, 2*time.Second),
		"unavailable": simulator.FailWith(http.StatusServiceUnavailable, 0),
		"broken":      simulator.FailWith(http.StatusInternalServerError, 0),
		"denied":      simulator.FailWith(http.StatusForbidden, 0),
		"invalid":     simulator.FailWith(http.StatusBadRequest, 0),
		"timeout":     simulator.FailWith(http.StatusRequestTimeout, 0),
		"missing":     simulator.FailWith(http.StatusNotFound, 0),
		"cut":         simulator.CutAfter(2),
	}
	user := []*typev1.Message{msg(typev1.Role_ROLE_USER, textPart("hi"))}
	for _, tc := range []struct {
		model, cred string
		msgs        []*typev1.Message
		kind        failure
		status      int
	}{
		{"throttled", bedrockCred, user, failRateLimited, 429},
		{"unavailable", bedrockCred, user, failUnavailable, 503},
		{"broken", bedrockCred, user, failUnavailable, 500},
		{"denied", bedrockCred, user, failCredential, 403},
		{"invalid", bedrockCred, user, failBadRequest, 400},
		{"timeout", bedrockCred, user, failTimeout, 408},
		{"missing", bedrockCred, user, failRejected, 404},
		{"demo", bedrockKeyID + ":wrong/Secret+Key", user, failCredential, 403},
		{"demo", "AKIAUNKNOWN:" + bedrockSecret, user, failCredential, 403},
		{"demo", bedrockCred, []*typev1.Message{msg(typev1.Role_ROLE_ASSISTANT, textPart("hi"))}, failBadRequest, 400},
	} {
		t.Run(tc.model+"/"+tc.kind.String(), func(t *testing.T) {
			v := startBedrock(t, simulator.Config{Faults: faults}, tc.model, tc.cred)
			_, err := v.generate(t.Context(), &vendorRequest{messages: tc.msgs})
			ae := requireAttempt(t, err, tc.kind)
			assert.Equal(t, tc.status, ae.httpStatus)
			assert.NotContains(t, ae.Error(), "wrong/Secret+Key")
			switch tc.kind {
			case failRateLimited:
				assert.Equal(t, 2*time.Second, ae.retryAfter)
			case failBadRequest:
				assert.NotEmpty(t, ae.vendorMessage)
			case failCredential:
				assert.Empty(t, ae.vendorMessage)
			}
			_, err = v.stream(t.Context(), &vendorRequest{messages: tc.msgs}, func(delta) error { return nil })
			requireAttempt(t, err, tc.kind)
		})
	}

	t.Run("validation message", func(t *testing.T) {
		v := startBedrock(t, simulator.Config{}, "demo", bedrockCred)
		_, err := v.generate(t.Context(), &vendorRequest{messages: []*typev1.Message{msg(typev1.Role_ROLE_ASSISTANT, textPart("hi"))}})
		ae := requireAttempt(t, err, failBadRequest)
		assert.Contains(t, ae.vendorMessage, "must start with a user message")
	})

	t.Run("cut stream", func(t *testing.T) {
		v := startBedrock(t, simulator.Config{Faults: faults}, "cut", bedrockCred)
		var got []string
		_, err := v.stream(t.Context(), &vendorRequest{messages: user}, func(d delta) error {
			got = append(got, d.text)
			return nil
		})
		requireAttempt(t, err, failInterrupted)
		assert.Equal(t, []string{"Simulated ", "answer "}, got)
		_, err = v.generate(t.Context(), &vendorRequest{messages: user})
		requireAttempt(t, err, failUnavailable)
	})

	t.Run("hang until the caller gives up", func(t *testing.T) {
		v := startBedrock(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}}, "stuck", bedrockCred)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := v.generate(ctx, &vendorRequest{messages: user})
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("transport timeout", func(t *testing.T) {
		v := startBedrock(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}}, "stuck", bedrockCred)
		v2, err := newBedrockVendor(vendorConfig{
			endpointID: "bedrock-1", baseURL: mustURL(t, v), upstreamModel: "stuck", region: "eu-west-1",
			cred: NewCredential(bedrockCred), client: &http.Client{Timeout: 50 * time.Millisecond},
		})
		require.NoError(t, err)
		_, err = v2.generate(t.Context(), &vendorRequest{messages: user})
		requireAttempt(t, err, failTimeout)
	})

	t.Run("connection refused", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u, err := url.Parse(srv.URL)
		require.NoError(t, err)
		srv.Close()
		v, err := newBedrockVendor(vendorConfig{
			endpointID: "bedrock-1", baseURL: u, upstreamModel: "demo", region: "eu-west-1",
			cred: NewCredential(bedrockCred), client: &http.Client{},
		})
		require.NoError(t, err)
		_, err = v.generate(t.Context(), &vendorRequest{messages: user})
		requireAttempt(t, err, failUnavailable)
	})
}

// mustURL returns the base URL v calls.
func mustURL(t *testing.T, v *bedrockVendor) *url.URL {
	t.Helper()
	u, err := url.Parse(aws.ToString(v.client.Options().BaseEndpoint))
	require.NoError(t, err)
	return u
}

func TestNewBedrockVendorConfig(t *testing.T) {
	u, err := url.Parse("https://bedrock-runtime.eu-west-1.amazonaws.com")
	require.NoError(t, err)
	base := vendorConfig{endpointID: "bedrock-1", baseURL: u, upstreamModel: "m", region: "eu-west-1", client: http.DefaultClient}

	for _, cred := range []string{
		bedrockSecret, // no key id
		":" + bedrockSecret,
		bedrockKeyID + ":",
		bedrockKeyID + ":" + bedrockSecret + ":",
		bedrockKeyID + ":" + bedrockSecret + ":token:extra",
		" " + bedrockKeyID + ":" + bedrockSecret,
		"",
	} {
		cfg := base
		cfg.cred = NewCredential(cred)
		_, err := newBedrockVendor(cfg)
		require.ErrorIs(t, err, errBedrockCredential, "%q", len(cred))
		assert.NotContains(t, err.Error(), bedrockSecret)
	}

	cfg := base
	cfg.cred = NewCredential(bedrockCred + ":session-token")
	_, err = newBedrockVendor(cfg)
	require.NoError(t, err)

	cfg.region = ""
	_, err = newBedrockVendor(cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "region")
}

func TestFromBedrockStop(t *testing.T) {
	for in, want := range map[string]typev1.FinishReason{
		"end_turn": typev1.FinishReason_FINISH_REASON_STOP, "stop_sequence": typev1.FinishReason_FINISH_REASON_STOP,
		"max_tokens": typev1.FinishReason_FINISH_REASON_LENGTH, "model_context_window_exceeded": typev1.FinishReason_FINISH_REASON_LENGTH,
		"tool_use": typev1.FinishReason_FINISH_REASON_TOOL_CALLS, "content_filtered": typev1.FinishReason_FINISH_REASON_CONTENT_FILTER,
		"guardrail_intervened": typev1.FinishReason_FINISH_REASON_CONTENT_FILTER, "malformed_tool_use": typev1.FinishReason_FINISH_REASON_UNSPECIFIED,
	} {
		assert.Equal(t, want, fromBedrockStop(types.StopReason(in)), in)
	}
}
