package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// Faults through the whole gateway: the simulator misbehaves for one upstream model, so each
// endpoint below has its own upstream model and a fault hits exactly one endpoint. Primary and
// fallback endpoints are of different vendors, so that a fallback also crosses dialects and
// credentials.

// dialects are the provider kinds of the resource files, by short name.
var dialects = []string{"openai", "azure", "anthropic", "bedrock", "gemini"}

// endpointYAML is a resource-file endpoint of the given dialect on the simulator, serving
// upstream, with the credential its vendor expects.
func endpointYAML(id, dialect, upstream string, priority int) string {
	var fields string
	switch dialect {
	case "openai":
		fields = `provider: openai, base_url: "{SIM}/v1", credential_ref: "env:` + vendorKeyEnv + `"`
	case "azure":
		fields = `provider: azure_openai, base_url: "{SIM}", api_version: "2024-10-21", credential_ref: "env:` + vendorKeyEnv + `"`
	case "anthropic":
		fields = `provider: anthropic, base_url: "{SIM}", credential_ref: "env:` + vendorKeyEnv + `"`
	case "bedrock":
		fields = `provider: bedrock, base_url: "{BEDROCK}", region: us-east-1, credential_ref: "env:` + awsCredEnv + `"`
	case "gemini":
		fields = `provider: gemini, base_url: "{SIM}", credential_ref: "env:` + vendorKeyEnv + `"`
	default:
		panic("unknown dialect " + dialect)
	}
	return fmt.Sprintf("  - {organization: acme, id: %s, upstream_model: %s, priority: %d, %s}\n", id, upstream, priority, fields)
}

func modelYAML(name string, endpoints []string, fallbacks ...string) string {
	s := fmt.Sprintf("  - {organization: acme, name: %s, vendor: sim, lifecycle: approved, endpoints: [%s]", name, strings.Join(endpoints, ", "))
	if len(fallbacks) > 0 {
		s += ", fallback_models: [" + strings.Join(fallbacks, ", ") + "]"
	}
	return s + "}\n"
}

// Credentials the simulator does not accept; they must not leak either.
const (
	wrongKey       = "sk-fmgate-test-wrong-key-9d8c7b6a5f4e3d2c1b"
	wrongKeyEnv    = "FMGATE_TEST_WRONG_KEY"
	wrongAWSSecret = "wrongTestSecretKey/9Zyx8Wvu7Tsr6Qpo5Nml4Kji"
	wrongAWSEnv    = "FMGATE_TEST_WRONG_AWS_CREDENTIALS"
)

// faultResources and faults describe the fault suite's models:
//
//	fb-500, fb-429, fb-503   primary endpoint fails with the status; a lower-priority endpoint answers
//	fb-cut                   primary drops a stream before its first chunk; the next endpoint answers
//	fb-model                 its only endpoint fails; the fallback model fb-model-backup answers
//	no-500, no-503, no-429   one failing endpoint, no fallback
//	hang-<dialect>           one endpoint that never answers
//	cut-<dialect>            one endpoint that drops the stream after three chunks
//	bad-credential           one endpoint whose credential the vendor rejects
func faultResources() (string, map[string]simulator.Fault) {
	var models, endpoints strings.Builder
	faults := map[string]simulator.Fault{}
	fallback := func(model, primaryDialect, backupDialect string, fault simulator.Fault) {
		endpoints.WriteString(endpointYAML(model+"-primary", primaryDialect, "up-"+model+"-primary", 0))
		endpoints.WriteString(endpointYAML(model+"-backup", backupDialect, "up-"+model+"-backup", 1))
		models.WriteString(modelYAML(model, []string{model + "-primary", model + "-backup"}))
		faults["up-"+model+"-primary"] = fault
	}
	fallback("fb-500", "openai", "anthropic", simulator.FailWith(http.StatusInternalServerError, 0))
	fallback("fb-429", "gemini", "openai", simulator.FailWith(http.StatusTooManyRequests, 0))
	fallback("fb-503", "bedrock", "gemini", simulator.FailWith(http.StatusServiceUnavailable, 0))
	fallback("fb-cut", "anthropic", "bedrock", simulator.CutAfter(0))
	fallback("fb-hang", "openai", "gemini", simulator.Hang()) // the primary times out

	endpoints.WriteString(endpointYAML("fb-model", "azure", "up-fb-model", 0))
	endpoints.WriteString(endpointYAML("fb-model-backup", "gemini", "up-fb-model-backup", 0))
	models.WriteString(modelYAML("fb-model", []string{"fb-model"}, "fb-model-backup"))
	models.WriteString(modelYAML("fb-model-backup", []string{"fb-model-backup"}))
	faults["up-fb-model"] = simulator.FailWith(http.StatusInternalServerError, 0)

	single := func(model, dialect string, fault simulator.Fault) {
		endpoints.WriteString(endpointYAML(model, dialect, "up-"+model, 0))
		models.WriteString(modelYAML(model, []string{model}))
		faults["up-"+model] = fault
	}
	single("no-500", "gemini", simulator.FailWith(http.StatusInternalServerError, 0))
	single("no-503", "anthropic", simulator.FailWith(http.StatusServiceUnavailable, 0))
	single("no-429", "openai", simulator.FailWith(http.StatusTooManyRequests, 30*time.Second))
	for _, d := range dialects {
		single("hang-"+d, d, simulator.Hang())
		single("cut-"+d, d, simulator.CutAfter(3))
	}
	// Each vendor rejects a wrong credential; Bedrock's has the right access key id and a
	// wrong secret, so its signature does not match.
	for _, d := range dialects {
		ep := endpointYAML("bad-credential-"+d, d, "up-bad-credential-"+d, 0)
		ep = strings.Replace(ep, "env:"+vendorKeyEnv, "env:"+wrongKeyEnv, 1)
		ep = strings.Replace(ep, "env:"+awsCredEnv, "env:"+wrongAWSEnv, 1)
		endpoints.WriteString(ep)
		models.WriteString(modelYAML("bad-credential-"+d, []string{"bad-credential-" + d}))
	}

	return "models:\n" + models.String() + "endpoints:\n" + endpoints.String() + `api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
policies:
  - {organization: acme, id: allow-all, effect: allow, subjects: ["*"], models: ["*"], moderation_profile: default}
`, faults
}

func startFaultStack(t *testing.T, extraArgs ...string) *vendorStack {
	t.Helper()
	t.Setenv(wrongKeyEnv, wrongKey)
	t.Setenv(wrongAWSEnv, awsAccessKeyID+":"+wrongAWSSecret)
	res, faults := faultResources()
	return startVendorStack(t, res, simulator.Config{Faults: faults}, extraArgs...)
}

// simFor is the simulator serving dialect.
func (s *vendorStack) simFor(dialect string) *simulator.Simulator {
	if dialect == "bedrock" {
		return s.bedrock
	}
	return s.sim
}

func TestFaultsFallBack(t *testing.T) {
	// Short vendor timeouts, so that a hanging primary (fb-hang) gives way to its fallback
	// quickly.
	s := startFaultStack(t, "--dispatch.timeout=400ms", "--dispatch.first-token-timeout=400ms", "--dispatch.max-attempts-per-endpoint=1")
	client := openAIClient(s)
	const prompt = "hello there"
	cases := []struct {
		model    string
		answerer string // the upstream model that answers
	}{
		{"fb-500", "up-fb-500-backup"},
		{"fb-429", "up-fb-429-backup"},
		{"fb-503", "up-fb-503-backup"},
		{"fb-cut", "up-fb-cut-backup"},
		{"fb-hang", "up-fb-hang-backup"},
		{"fb-model", "up-fb-model-backup"},
	}
	for _, tc := range cases {
		t.Run(tc.model+"/openai", func(t *testing.T) {
			comp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model: tc.model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			})
			require.NoError(t, err)
			assert.Equal(t, tc.model, comp.Model)
			assert.Equal(t, answerOf(tc.answerer, prompt), comp.Choices[0].Message.Content)
			assert.Equal(t, "stop", comp.Choices[0].FinishReason)
			assert.Equal(t, words(answerOf(tc.answerer, prompt)), comp.Usage.CompletionTokens)
		})
		t.Run(tc.model+"/openai stream", func(t *testing.T) {
			params := openai.ChatCompletionNewParams{Model: tc.model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
			params.StreamOptions.IncludeUsage = openai.Bool(true)
			stream := client.Chat.Completions.NewStreaming(t.Context(), params)
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			require.NoError(t, stream.Err())
			require.NoError(t, stream.Close())
			require.Len(t, acc.Choices, 1)
			assert.Equal(t, answerOf(tc.answerer, prompt), acc.Choices[0].Message.Content, "only the fallback's answer, nothing of the primary's")
			assert.Equal(t, "stop", acc.Choices[0].FinishReason)
			assert.Equal(t, words(answerOf(tc.answerer, prompt)), acc.Usage.CompletionTokens)
		})
		t.Run(tc.model+"/grpc stream", func(t *testing.T) {
			stream, err := s.client.StreamGenerate(withKey(t.Context(), mainKey), &gatewayv1.StreamGenerateRequest{Model: tc.model, Messages: userMessage(prompt)})
			require.NoError(t, err)
			text, last, err := drain(stream)
			require.NoError(t, err)
			assert.Equal(t, answerOf(tc.answerer, prompt), text)
			assert.Equal(t, "FINISH_REASON_STOP", last.GetFinishReason().String())
		})
	}
}

// drain reads a gateway stream to its end and returns its text, its last event and the error
// that ended it (nil for a clean end).
func drain(stream interface {
	Recv() (*gatewayv1.StreamGenerateResponse, error)
}) (string, *gatewayv1.StreamGenerateResponse, error) {
	var text strings.Builder
	var last *gatewayv1.StreamGenerateResponse
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return text.String(), last, nil
		}
		if err != nil {
			return text.String(), last, err
		}
		text.WriteString(ev.GetTextDelta())
		last = ev
	}
}

func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			return r.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// With no endpoint left, the caller gets the vendor's failure in its own terms.
func TestFaultsWithoutFallback(t *testing.T) {
	s := startFaultStack(t)
	client := openAIClient(s)
	ctx := withKey(t.Context(), mainKey)
	hi := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}

	type failure struct {
		model      string
		httpStatus int
		code       string // OpenAI error code
		grpcCode   codes.Code
		reason     string // ErrorInfo reason, when the gateway sets one
		message    string // in the error's message
	}
	cases := []failure{
		{model: "no-500", httpStatus: http.StatusServiceUnavailable, code: "service_unavailable", grpcCode: codes.Unavailable, message: "unavailable"},
		{model: "no-503", httpStatus: http.StatusServiceUnavailable, code: "service_unavailable", grpcCode: codes.Unavailable, message: "unavailable"},
		{model: "no-429", httpStatus: http.StatusTooManyRequests, code: "rate_limit_exceeded", grpcCode: codes.ResourceExhausted, message: "rate"},
	}
	for _, d := range dialects {
		cases = append(cases, failure{model: "bad-credential-" + d, httpStatus: http.StatusServiceUnavailable, code: "endpoint_credential_rejected",
			grpcCode: codes.Unavailable, reason: "ENDPOINT_CREDENTIAL_REJECTED", message: "credential rejected"})
	}
	for _, tc := range cases {
		t.Run(tc.model+"/openai", func(t *testing.T) {
			_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: tc.model, Messages: hi})
			var apiErr *openai.Error
			require.True(t, errors.As(err, &apiErr), "%v", err)
			require.Equal(t, tc.httpStatus, apiErr.StatusCode, apiErr.RawJSON())
			assert.Equal(t, tc.code, apiErr.Code, apiErr.RawJSON())
			assert.Contains(t, apiErr.Message, tc.message, apiErr.RawJSON())
			if tc.httpStatus == http.StatusTooManyRequests {
				// The vendor asked for 30 s, longer than dispatch waits: the caller is told.
				assert.Equal(t, "30", apiErr.Response.Header.Get("Retry-After"))
			}
		})
		t.Run(tc.model+"/openai stream", func(t *testing.T) {
			stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: tc.model, Messages: hi})
			assert.False(t, stream.Next(), "no chunk before the failure")
			var apiErr *openai.Error
			require.True(t, errors.As(stream.Err(), &apiErr), "%v", stream.Err())
			assert.Equal(t, tc.httpStatus, apiErr.StatusCode, apiErr.RawJSON())
		})
		t.Run(tc.model+"/grpc", func(t *testing.T) {
			_, err := s.client.Generate(ctx, &gatewayv1.GenerateRequest{Model: tc.model, Messages: userMessage("hi")})
			st := status.Convert(err)
			require.Equal(t, tc.grpcCode, st.Code(), st.Message())
			if tc.reason != "" {
				assert.Equal(t, tc.reason, reason(st))
			}
			if tc.grpcCode == codes.ResourceExhausted {
				assert.Equal(t, 30*time.Second, retryDelay(st))
			}
		})
	}

	// Dispatch's own timeouts (60 s per call, 30 s to the first chunk) are not configurable
	// from `fmgate serve`, so a hung vendor is met here with the caller's deadline, which
	// reaches the vendor call: the caller gets DEADLINE_EXCEEDED / 504 and the upstream
	// request is abandoned.
	for _, d := range dialects {
		model := "hang-" + d
		sim := s.simFor(d)
		t.Run(model+"/grpc deadline", func(t *testing.T) {
			before := sim.Stats().Canceled
			dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			_, err := s.client.Generate(dctx, &gatewayv1.GenerateRequest{Model: model, Messages: userMessage("hi")})
			assert.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
			require.Eventually(t, func() bool { return sim.Stats().Canceled > before }, time.Second, time.Millisecond,
				"the vendor request is abandoned")
		})
	}
	t.Run("hang-openai/rest deadline", func(t *testing.T) {
		before := s.sim.Stats().Canceled
		resp, body := postRaw(t, t.Context(), s.http+"/api/v1/generate",
			`{"model":"hang-openai","messages":[{"role":"ROLE_USER","content":[{"text":"hi"}]}]}`,
			http.Header{"Grpc-Timeout": {"300m"}})
		assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, string(body))
		require.Eventually(t, func() bool { return s.sim.Stats().Canceled > before }, time.Second, time.Millisecond)
	})
}

// A stream that breaks after output has reached the client ends in an explicit error, never
// in a clean end: not on OpenAI's SSE (an error event, no [DONE]), not on Anthropic's (an error
// event, no message_stop), not over gRPC (an error status).
func TestFaultsStreamCut(t *testing.T) {
	s := startFaultStack(t)
	anthropicSDK := anthropic.NewClient(anthropicoption.WithBaseURL(s.http), anthropicoption.WithAPIKey(mainKey), anthropicoption.WithMaxRetries(0))
	const prompt = "tell me a long story please"
	for _, d := range dialects {
		model := "cut-" + d
		t.Run(model+"/openai sse", func(t *testing.T) {
			body := `{"model":"` + model + `","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"` + prompt + `"}]}`
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.http+"/v1/chat/completions", strings.NewReader(body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+mainKey)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, "output had started: the stream was open")
			var content strings.Builder
			var events []string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				data, ok := strings.CutPrefix(sc.Text(), "data: ")
				if !ok {
					continue
				}
				events = append(events, data)
				var chunk struct {
					Choices []struct {
						Delta        struct{ Content string }
						FinishReason *string `json:"finish_reason"`
					}
				}
				if json.Unmarshal([]byte(data), &chunk) == nil {
					for _, c := range chunk.Choices {
						content.WriteString(c.Delta.Content)
						assert.Nil(t, c.FinishReason, "no finish reason for a broken answer")
					}
				}
			}
			require.NoError(t, sc.Err())
			require.NotEmpty(t, events)
			assert.NotContains(t, events, "[DONE]")
			assert.NotEmpty(t, content.String(), "some output reached the client before the cut")
			assert.True(t, strings.HasPrefix(answerOf("up-"+model, prompt), content.String()), "%q", content.String())
			var last struct {
				Error struct {
					Message, Type string
					Code          *string
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal([]byte(events[len(events)-1]), &last), events[len(events)-1])
			assert.Equal(t, "server_error", last.Error.Type, events[len(events)-1])
			assert.Contains(t, last.Error.Message, "interrupted")
		})
		t.Run(model+"/openai sdk", func(t *testing.T) {
			client := openAIClient(s)
			stream := client.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
				Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)},
			})
			for stream.Next() {
			}
			require.Error(t, stream.Err(), "the SDK raises the error event")
			assert.Contains(t, stream.Err().Error(), "interrupted")
		})
		t.Run(model+"/anthropic sdk", func(t *testing.T) {
			stream := anthropicSDK.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 256,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))},
			})
			var types []string
			for stream.Next() {
				types = append(types, stream.Current().Type)
			}
			require.Error(t, stream.Err(), "the SDK raises the error event")
			assert.Contains(t, types, "content_block_delta", "output had started")
			assert.NotContains(t, types, "message_stop")
		})
		t.Run(model+"/grpc", func(t *testing.T) {
			stream, err := s.client.StreamGenerate(withKey(t.Context(), mainKey), &gatewayv1.StreamGenerateRequest{Model: model, Messages: userMessage(prompt)})
			require.NoError(t, err)
			text, last, err := drain(stream)
			st := status.Convert(err)
			require.Equal(t, codes.Unavailable, st.Code(), "a broken stream ends in an error status, not io.EOF: %v", err)
			assert.Equal(t, "UPSTREAM_STREAM_INTERRUPTED", reason(st))
			assert.NotEmpty(t, text)
			assert.True(t, strings.HasPrefix(answerOf("up-"+model, prompt), text), "%q", text)
			if last != nil {
				assert.Equal(t, "FINISH_REASON_UNSPECIFIED", last.GetFinishReason().String())
			}
		})
	}
}

// A client that goes away cancels the vendor request: the simulator sees its connection
// close within 100 ms of the cancel.
func TestFaultsCancelReachesVendor(t *testing.T) {
	s := startFaultStack(t)
	const budget = 100 * time.Millisecond
	oc := openAIClient(s)
	type call func(ctx context.Context, model string) error
	calls := map[string]call{
		"openai": func(ctx context.Context, model string) error {
			_, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
				Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			return err
		},
		"openai stream": func(ctx context.Context, model string) error {
			stream := oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
				Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
			})
			for stream.Next() {
			}
			return stream.Err()
		},
		"anthropic stream": func(ctx context.Context, model string) error {
			c := anthropic.NewClient(anthropicoption.WithBaseURL(s.http), anthropicoption.WithAPIKey(mainKey), anthropicoption.WithMaxRetries(0))
			stream := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 64,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
			})
			for stream.Next() {
			}
			return stream.Err()
		},
		"grpc stream": func(ctx context.Context, model string) error {
			stream, err := s.client.StreamGenerate(withKey(ctx, mainKey), &gatewayv1.StreamGenerateRequest{Model: model, Messages: userMessage("hi")})
			if err != nil {
				return err
			}
			_, _, err = drain(stream)
			return err
		},
	}
	for _, d := range dialects {
		for name, call := range calls {
			t.Run("hang-"+d+"/"+name, func(t *testing.T) {
				sim := s.simFor(d)
				requests, canceled := sim.Stats().Requests, sim.Stats().Canceled
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				done := make(chan error, 1)
				go func() { done <- call(ctx, "hang-"+d) }()
				require.Eventually(t, func() bool { return sim.Stats().Requests > requests }, wait, time.Millisecond,
					"the request reached the vendor")
				cancelled := time.Now()
				cancel()
				require.Eventually(t, func() bool { return sim.Stats().Canceled > canceled }, budget, time.Millisecond,
					"the vendor saw the cancel within %v", budget)
				t.Logf("the vendor saw the cancel after %v", time.Since(cancelled))
				select {
				case err := <-done:
					assert.Error(t, err)
				case <-time.After(wait):
					t.Fatal("the client call did not return")
				}
			})
		}
	}
}

// Fields and headers that would pick an upstream or a credential are refused with 400 and
// never reach a vendor.
func TestFaultsRoutingOverridesRefused(t *testing.T) {
	s := startFaultStack(t)
	chat := func(extra string) string {
		return `{"model":"no-500","messages":[{"role":"user","content":"hi"` + extra + `}]`
	}
	msgs := func(extra string) string {
		return `{"model":"no-500","max_tokens":16,"messages":[{"role":"user","content":"hi"` + extra + `}]`
	}
	cases := []struct {
		name   string
		path   string
		body   string
		header http.Header
		param  string // the key or header named in the answer
	}{
		{name: "api_base", path: "/v1/chat/completions", body: chat("") + `,"api_base":"http://169.254.169.254/v1"}`, param: "api_base"},
		{name: "base_url in a message", path: "/v1/chat/completions", body: chat(`,"base_url":"http://169.254.169.254"`) + `}`, param: "messages[0].base_url"},
		{name: "api_key", path: "/v1/chat/completions", body: chat("") + `,"api_key":"sk-attacker"}`, param: "api_key"},
		{name: "nested credentials", path: "/v1/chat/completions", body: chat("") + `,"metadata":{"x":{"aws_secret_access_key":"x"}}}`, param: "metadata.x.aws_secret_access_key"},
		{name: "extra_headers", path: "/v1/chat/completions", body: chat("") + `,"extra_headers":{"Authorization":"Bearer x"}}`, param: "extra_headers"},
		{name: "x-api-base header", path: "/v1/chat/completions", body: chat("") + `}`, header: http.Header{"X-Api-Base": {"http://169.254.169.254"}}, param: "X-Api-Base"},
		{name: "api_base", path: "/v1/messages", body: msgs("") + `,"api_base":"http://169.254.169.254"}`, param: "api_base"},
		{name: "base_url in a message", path: "/v1/messages", body: msgs(`,"base_url":"http://169.254.169.254"`) + `}`, param: "messages[0].base_url"},
		{name: "credential in metadata", path: "/v1/messages", body: msgs("") + `,"metadata":{"user_id":"u","api_key":"sk-attacker"}}`, param: "metadata.api_key"},
		{name: "x-api-base header", path: "/v1/messages", body: msgs("") + `}`, header: http.Header{"X-Api-Base": {"http://169.254.169.254"}}, param: "X-Api-Base"},
		{name: "anthropic-base-url header", path: "/v1/messages", body: msgs("") + `}`, header: http.Header{"Anthropic-Base-Url": {"http://169.254.169.254"}}, param: "Anthropic-Base-Url"},
	}
	for _, tc := range cases {
		t.Run(tc.path+"/"+tc.name, func(t *testing.T) {
			h := http.Header{"Anthropic-Version": {"2023-06-01"}}
			for k, v := range tc.header {
				h[k] = v
			}
			before := s.sim.Stats().Requests + s.bedrock.Stats().Requests
			resp, body := postRaw(t, t.Context(), s.http+tc.path, tc.body, h)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(body))
			assert.Contains(t, string(body), tc.param)
			var e struct {
				Type  string `json:"type"` // Anthropic: "error"
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(body, &e), string(body))
			assert.Equal(t, "invalid_request_error", e.Error.Type)
			assert.Equal(t, before, s.sim.Stats().Requests+s.bedrock.Stats().Requests, "nothing reached a vendor")
		})
	}
	// The same request without the override goes through (to the failing endpoint): the 400s
	// above are the overrides', not the request's.
	resp, body := postRaw(t, t.Context(), s.http+"/v1/chat/completions", chat("")+`}`, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
}
