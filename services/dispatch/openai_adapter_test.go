package dispatch

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/openai/openai-go/v3"
)

const oaiKey = "sk-openai-adapter-test-0123456789"

// wireRecorder passes requests to the simulator and keeps what reached it.
type wireRecorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	path, query string
	header      http.Header
	body        map[string]any
}

func (r *wireRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	r.mu.Lock()
	r.reqs = append(r.reqs, recordedRequest{path: req.URL.Path, query: req.URL.RawQuery, header: req.Header.Clone(), body: body})
	r.mu.Unlock()
	req.Body = io.NopCloser(bytes.NewReader(b))
	r.next.ServeHTTP(w, req)
}

func (r *wireRecorder) last(t *testing.T) recordedRequest {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NotEmpty(t, r.reqs)
	return r.reqs[len(r.reqs)-1]
}

// startWire serves a simulator requiring oaiKey behind a recorder, over TLS when tls is set.
func startWire(t *testing.T, tls bool) (*url.URL, *http.Client, *wireRecorder) {
	t.Helper()
	rec := &wireRecorder{next: simulator.New(simulator.Config{APIKey: oaiKey})}
	srv := httptest.NewUnstartedServer(rec)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	return u, hc, rec
}

func oaiText(s string) *typev1.ContentPart {
	return &typev1.ContentPart{Part: &typev1.ContentPart_Text{Text: s}}
}

func oaiUser(s string) []*typev1.Message {
	return []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{oaiText(s)}}}
}

func TestOpenAIParamsOnTheWire(t *testing.T) {
	u, hc, rec := startWire(t, false)
	v := newOpenAIVendor("ep", u.String()+"/v1", "gpt-sim", NewCredential(oaiKey), hc, false)
	params := &typev1.GenerationParams{
		MaxOutputTokens: proto.Int32(50), Temperature: proto.Float64(0.5), TopP: proto.Float64(0.9),
		Stop: []string{"END", "STOP"}, Seed: proto.Int64(7), EndUserId: "user-42",
		FrequencyPenalty: proto.Float64(0.25), PresencePenalty: proto.Float64(-0.5),
		Tools: []*typev1.Tool{{
			Name: "lookup", Description: "Look it up", Strict: true,
			ParametersJson: `{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}`,
		}, {Name: "noargs"}},
		ToolChoice:     &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL, Name: "lookup"},
		ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaName: "answer", SchemaJson: `{"type":"object"}`, Strict: true},
	}
	res, err := v.generate(t.Context(), &vendorRequest{messages: oaiUser("find cats"), params: params})
	require.NoError(t, err)
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_TOOL_CALLS, res.finish)

	got := rec.last(t)
	assert.Equal(t, "/v1/chat/completions", got.path)
	assert.Equal(t, "Bearer "+oaiKey, got.header.Get("Authorization"))
	b, err := json.Marshal(got.body)
	require.NoError(t, err)
	assert.JSONEq(t, `{
		"model": "gpt-sim",
		"messages": [{"role":"user","content":"find cats"}],
		"max_completion_tokens": 50, "temperature": 0.5, "top_p": 0.9, "stop": ["END","STOP"], "seed": 7,
		"user": "user-42", "frequency_penalty": 0.25, "presence_penalty": -0.5,
		"tools": [
			{"type":"function","function":{"name":"lookup","description":"Look it up","strict":true,
				"parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"],"additionalProperties":false}}},
			{"type":"function","function":{"name":"noargs"}}
		],
		"tool_choice": {"type":"function","function":{"name":"lookup"}},
		"response_format": {"type":"json_schema","json_schema":{"name":"answer","schema":{"type":"object"},"strict":true}}
	}`, string(b))

	for name, tc := range map[string]struct {
		mode typev1.ToolChoice_Mode
		want any
	}{
		"none": {typev1.ToolChoice_MODE_NONE, "none"}, "required": {typev1.ToolChoice_MODE_REQUIRED, "required"},
	} {
		t.Run(name, func(t *testing.T) {
			p := proto.Clone(params).(*typev1.GenerationParams)
			p.ToolChoice = &typev1.ToolChoice{Mode: tc.mode}
			p.ResponseFormat = &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_OBJECT}
			_, err := v.generate(t.Context(), &vendorRequest{messages: oaiUser("json please"), params: p})
			require.NoError(t, err)
			body := rec.last(t).body
			assert.Equal(t, tc.want, body["tool_choice"])
			assert.Equal(t, map[string]any{"type": "json_object"}, body["response_format"])
		})
	}
}

func TestOpenAIUntranslatableParams(t *testing.T) {
	u, hc, rec := startWire(t, false)
	v := newOpenAIVendor("ep", u.String()+"/v1", "gpt-sim", NewCredential(oaiKey), hc, false)
	for name, p := range map[string]*typev1.GenerationParams{
		"parameters not JSON":      {Tools: []*typev1.Tool{{Name: "f", ParametersJson: `{"type":`}}},
		"parameters not an object": {Tools: []*typev1.Tool{{Name: "f", ParametersJson: `[1]`}}},
		"tool without a name":      {Tools: []*typev1.Tool{{ParametersJson: `{}`}}},
		"named choice without name": {Tools: []*typev1.Tool{{Name: "f"}},
			ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_TOOL}},
		"required without tools": {ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_REQUIRED}},
		"schema not JSON":        {ResponseFormat: &typev1.ResponseFormat{Type: typev1.ResponseFormat_TYPE_JSON_SCHEMA, SchemaJson: "nope"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.generate(t.Context(), &vendorRequest{messages: oaiUser("hi"), params: p})
			ae := requireAttemptKind(t, err, failBadRequest)
			assert.NotEmpty(t, ae.vendorMessage, "the caller learns what is wrong")
			_, err = v.stream(t.Context(), &vendorRequest{messages: oaiUser("hi"), params: p}, func(delta) error { return nil })
			requireAttemptKind(t, err, failBadRequest)
		})
	}
	rec.mu.Lock()
	n := len(rec.reqs)
	rec.mu.Unlock()
	assert.Zero(t, n, "nothing untranslatable reaches the vendor")

	// "none" without tools means no tool call, which needs no tool_choice.
	_, err := v.generate(t.Context(), &vendorRequest{messages: oaiUser("hi"),
		params: &typev1.GenerationParams{ToolChoice: &typev1.ToolChoice{Mode: typev1.ToolChoice_MODE_NONE}}})
	require.NoError(t, err)
}

func requireAttemptKind(t *testing.T, err error, kind failure) *attemptError {
	t.Helper()
	var ae *attemptError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, kind, ae.kind, ae.Error())
	return ae
}

func TestOpenAIEmbed(t *testing.T) {
	u, hc, rec := startWire(t, false)
	for _, tc := range []struct {
		name       string
		compatible bool
		encoding   any
	}{
		{"openai asks for base64", false, "base64"},
		{"compatible hosts get floats", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newOpenAIVendor("ep", u.String()+"/v1", "embed-sim", NewCredential(oaiKey), hc, tc.compatible)
			res, err := v.embed(t.Context(), &embedRequest{inputs: []string{"first input", "second one here"}, dimensions: 5, endUserID: "u-9"})
			require.NoError(t, err)
			assert.Equal(t, "embed-sim", res.model)
			require.Len(t, res.embeddings, 2)
			for i, e := range res.embeddings {
				assert.Equal(t, int32(i), e.GetIndex())
				assert.Len(t, e.GetValues(), 5)
				var sum float64
				for _, x := range e.GetValues() {
					sum += float64(x) * float64(x)
				}
				assert.InDelta(t, 1, sum, 1e-5, "unit vectors")
			}
			assert.NotEqual(t, res.embeddings[0].GetValues(), res.embeddings[1].GetValues())
			assert.Equal(t, int64(5), res.usage.GetInputTokens())
			assert.Equal(t, int64(5), res.usage.GetTotalTokens())

			body := rec.last(t).body
			assert.Equal(t, "/v1/embeddings", rec.last(t).path)
			assert.Equal(t, []any{"first input", "second one here"}, body["input"])
			assert.Equal(t, float64(5), body["dimensions"])
			assert.Equal(t, "u-9", body["user"])
			assert.Equal(t, tc.encoding, body["encoding_format"])
		})
	}

	// The same text gives the same vector whichever encoding carried it.
	a := newOpenAIVendor("ep", u.String()+"/v1", "m", NewCredential(oaiKey), hc, false)
	b := newOpenAIVendor("ep", u.String()+"/v1", "m", NewCredential(oaiKey), hc, true)
	ra, err := a.embed(t.Context(), &embedRequest{inputs: []string{"same"}})
	require.NoError(t, err)
	rb, err := b.embed(t.Context(), &embedRequest{inputs: []string{"same"}})
	require.NoError(t, err)
	assert.Equal(t, ra.embeddings[0].GetValues(), rb.embeddings[0].GetValues())
	assert.Len(t, ra.embeddings[0].GetValues(), simulator.DefaultEmbeddingDimensions)
}

func TestOpenAIEmbedErrors(t *testing.T) {
	sim := simulator.New(simulator.Config{APIKey: oaiKey, Faults: map[string]simulator.Fault{
		"limited": simulator.FailWith(http.StatusTooManyRequests, 0),
	}})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	for _, tc := range []struct {
		name, model, key string
		dims             int32
		kind             failure
	}{
		{"rate limited", "limited", oaiKey, 0, failRateLimited},
		{"bad dimensions", "m", oaiKey, 99999, failBadRequest},
		{"wrong key", "m", "sk-wrong", 0, failCredential},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newOpenAIVendor("ep", srv.URL+"/v1", tc.model, NewCredential(tc.key), hc, false)
			_, err := v.embed(t.Context(), &embedRequest{inputs: []string{"x"}, dimensions: tc.dims})
			ae := requireAttemptKind(t, err, tc.kind)
			assert.NotContains(t, ae.Error(), tc.key)
		})
	}
}

func azureConfig(u *url.URL, hc *http.Client, apiVersion, deployment, key string) vendorConfig {
	return vendorConfig{
		endpointID: "az", provider: registryv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI, baseURL: u,
		upstreamModel: deployment, apiVersion: apiVersion, cred: NewCredential(key), client: hc,
	}
}

func TestAzureOpenAIVendor(t *testing.T) {
	for _, tls := range []bool{true, false} {
		name := map[bool]string{true: "https", false: "loopback http"}[tls]
		t.Run(name, func(t *testing.T) {
			u, hc, rec := startWire(t, tls)
			vv, err := newAzureOpenAIVendor(azureConfig(u, hc, "2024-10-21", "chat-deploy", oaiKey))
			require.NoError(t, err)
			v := vv.(*openAIVendor)

			res, err := v.generate(t.Context(), &vendorRequest{messages: oaiUser("hello azure"),
				params: &typev1.GenerationParams{MaxOutputTokens: proto.Int32(100)}})
			require.NoError(t, err)
			assert.Equal(t, "Simulated answer from chat-deploy. You said: hello azure", res.message.GetContent()[0].GetText())
			got := rec.last(t)
			assert.Equal(t, "/openai/deployments/chat-deploy/chat/completions", got.path)
			assert.Equal(t, "api-version=2024-10-21", got.query)
			assert.Equal(t, oaiKey, got.header.Get("Api-Key"))
			assert.Empty(t, got.header.Get("Authorization"), "the key goes in api-key only")
			assert.Equal(t, float64(100), got.body["max_completion_tokens"])

			emb, err := v.embed(t.Context(), &embedRequest{inputs: []string{"a", "b", "c"}})
			require.NoError(t, err)
			assert.Len(t, emb.embeddings, 3)
			assert.Equal(t, "/openai/deployments/chat-deploy/embeddings", rec.last(t).path)
		})
	}
}

func TestAzureOpenAIVendorConfig(t *testing.T) {
	https, _ := url.Parse("https://res.openai.azure.com")
	plain, _ := url.Parse("http://res.openai.azure.com")
	hc := &http.Client{}
	for _, tc := range []struct {
		name string
		cfg  vendorConfig
		ok   bool
	}{
		{"complete", azureConfig(https, hc, "2024-10-21", "d", "k"), true},
		{"no api version", azureConfig(https, hc, "", "d", "k"), false},
		{"no deployment", azureConfig(https, hc, "2024-10-21", "", "k"), false},
		{"no key", azureConfig(https, hc, "2024-10-21", "d", ""), false},
		{"plain http off loopback", azureConfig(plain, hc, "2024-10-21", "d", "k"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := newAzureOpenAIVendor(tc.cfg)
			if tc.ok {
				require.NoError(t, err)
				assert.NotNil(t, v)
				return
			}
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "k\"", "no secret in the message")
		})
	}

	// Azure API versions before 2024-09-01 know only max_tokens.
	u, hc2, rec := startWire(t, false)
	for version, field := range map[string]string{
		"2024-06-01": "max_tokens", "2024-08-01-preview": "max_tokens",
		"2024-09-01-preview": "max_completion_tokens", "2025-04-01-preview": "max_completion_tokens", "preview": "max_completion_tokens",
	} {
		vv, err := newAzureOpenAIVendor(azureConfig(u, hc2, version, "d", oaiKey))
		require.NoError(t, err)
		_, err = vv.generate(t.Context(), &vendorRequest{messages: oaiUser("hi"), params: &typev1.GenerationParams{MaxOutputTokens: proto.Int32(3)}})
		require.NoError(t, err, version)
		body := rec.last(t).body
		assert.Equal(t, float64(3), body[field], version)
		assert.Len(t, body, 3, "model, messages and one length field: %s", version)
	}
}

// BenchmarkOpenAIChunkDecode compares the SDK's chunk type, openAIChunk through json.Unmarshal
// and decodeOpenAIChunk on one streamed chunk: the reason the stream path decodes chunks itself.
func BenchmarkOpenAIChunkDecode(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1764252000,"model":"demo","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":"growth "},"logprobs":null,"finish_reason":null}]}`)
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c openai.ChatCompletionChunk
			if err := json.Unmarshal(chunk, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lean-struct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c openAIChunk
			if err := json.Unmarshal(chunk, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dispatch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c openAIChunk
			if err := decodeOpenAIChunk(chunk, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpenAICompletionDecode compares the SDK's completion type with openAICompletion on
// one short answer: the reason the non-streaming path decodes the answer itself.
func BenchmarkOpenAICompletionDecode(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1764252000,"model":"demo","system_fingerprint":"fp","choices":[{"index":0,"message":{"role":"assistant","content":"Summarise the quarterly report in three sentences for the finance team.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":14,"total_tokens":28,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default"}`)
	b.Run("sdk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c openai.ChatCompletion
			if err := json.Unmarshal(body, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("dispatch", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c openAICompletion
			if err := json.Unmarshal(body, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sdkPath returns v sending chat completions through the SDK's request path, as Azure does.
func sdkPath(v *openAIVendor) *openAIVendor {
	s := *v
	s.chatURL = ""
	return &s
}

// TestOpenAILeanPathMatchesSDK checks that the lean request path sends what the SDK sent and
// turns vendor errors into the same attemptError.
func TestOpenAILeanPathMatchesSDK(t *testing.T) {
	sim := simulator.New(simulator.Config{APIKey: oaiKey, Faults: map[string]simulator.Fault{
		"limited":     simulator.FailWith(http.StatusTooManyRequests, 2*time.Second),
		"unavailable": simulator.FailWith(http.StatusServiceUnavailable, 0),
		"rejected":    simulator.FailWith(http.StatusNotFound, 0),
	}})
	rec := &wireRecorder{next: sim}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	hc := srv.Client()
	t.Cleanup(hc.CloseIdleConnections)
	req := &vendorRequest{messages: oaiUser("hello"), params: &typev1.GenerationParams{MaxOutputTokens: proto.Int32(20)}}
	noop := func(delta) error { return nil }

	for _, stream := range []bool{false, true} {
		lean := newOpenAIVendor("ep", srv.URL+"/v1", "gpt-sim", NewCredential(oaiKey), hc, false)
		require.NotEmpty(t, lean.chatURL)
		call := func(v *openAIVendor) (*vendorResult, error) {
			if stream {
				return v.stream(t.Context(), req, noop)
			}
			return v.generate(t.Context(), req)
		}
		_, err := call(lean)
		require.NoError(t, err)
		got := rec.last(t)
		_, err = call(sdkPath(lean))
		require.NoError(t, err)
		want := rec.last(t)
		assert.Equal(t, want.path, got.path)
		assert.Equal(t, want.body, got.body, "stream=%v", stream)
		for _, h := range []string{"Authorization", "Content-Type"} {
			assert.Equal(t, want.header.Get(h), got.header.Get(h), h)
		}
		if stream {
			assert.Equal(t, true, got.body["stream"])
			assert.Equal(t, "text/event-stream", got.header.Get("Accept"))
		}

		for _, tc := range []struct{ model, key string }{
			{"limited", oaiKey}, {"unavailable", oaiKey}, {"rejected", oaiKey}, {"gpt-sim", "sk-wrong-key-abcdef"},
		} {
			lean := newOpenAIVendor("ep", srv.URL+"/v1", tc.model, NewCredential(tc.key), hc, false)
			_, leanErr := call(lean)
			_, sdkErr := call(sdkPath(lean))
			var l, s *attemptError
			require.ErrorAs(t, leanErr, &l, tc.model)
			require.ErrorAs(t, sdkErr, &s, tc.model)
			assert.Equal(t, s.kind, l.kind, tc.model)
			assert.Equal(t, s.httpStatus, l.httpStatus, tc.model)
			assert.Equal(t, s.retryAfter, l.retryAfter, tc.model)
			assert.Equal(t, s.vendorMessage, l.vendorMessage, tc.model)
			assert.Equal(t, s.detail, l.detail, tc.model)
			assert.NotContains(t, l.Error(), tc.key)
		}
	}
	// Without a credential no Authorization header goes out.
	open := newOpenAIVendor("ep", srv.URL+"/v1", "gpt-sim", Credential{}, hc, true)
	_, _ = open.generate(t.Context(), req)
	assert.Empty(t, rec.last(t).header.Values("Authorization"))
}

// BenchmarkOpenAIRequestPath compares the SDK's request path with the lean one (send), each
// sending one chat completion to the simulator on loopback and reading the answer: the
// reason OpenAI requests do not go through the SDK.
func BenchmarkOpenAIRequestPath(b *testing.B) {
	srv := httptest.NewServer(simulator.New(simulator.Config{APIKey: oaiKey}))
	b.Cleanup(srv.Close)
	hc := srv.Client()
	b.Cleanup(hc.CloseIdleConnections)
	lean := newOpenAIVendor("ep", srv.URL+"/v1", "gpt-sim", NewCredential(oaiKey), hc, false)
	req := &vendorRequest{messages: oaiUser("a short question for the benchmark"),
		params: &typev1.GenerationParams{MaxOutputTokens: proto.Int32(64), Temperature: proto.Float64(0.2)}}
	noop := func(delta) error { return nil }
	for _, path := range []struct {
		name string
		v    *openAIVendor
	}{{"sdk", sdkPath(lean)}, {"lean", lean}} {
		b.Run("generate/"+path.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := path.v.generate(b.Context(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("stream/"+path.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := path.v.stream(b.Context(), req, noop); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
