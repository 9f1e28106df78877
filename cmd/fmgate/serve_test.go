package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

const (
	mainKey    = "fmg_test_main_key_0123456789abcdefghijklmnop"
	limitedKey = "fmg_test_limited_key_0123456789abcdefghijklm"
	wait       = 10 * time.Second
	tick       = 10 * time.Millisecond
)

// stack is a running `fmgate serve`, all in one, in this test process.
type stack struct {
	http     string // base URL
	grpcAddr string
	grpc     *grpc.ClientConn
	client   gatewayv1.GatewayServiceClient
	// stop stops fmgate and waits for it to end; it is also called when the test ends.
	stop func()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

const testResources = `
models:
  - {organization: acme, name: demo, display_name: Demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
  - {organization: acme, name: restricted, vendor: sim, lifecycle: approved, endpoints: [sim]}
  - {organization: acme, name: proposed-model, vendor: sim, lifecycle: proposed, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "%s/v1", upstream_model: demo, region: local}
api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
  - {organization: acme, id: limited, subject: "svc:batch", kind: service_account, team: ops, secret_env: FMGATE_TEST_LIMITED_KEY}
policies:
  - {organization: acme, id: allow-demo, effect: allow, subjects: ["*"], models: [demo], moderation_profile: default}
limits:
  - {name: limited-rpm, organization: acme, api_key: limited, scope: api_key, kind: requests, amount: 2, window: 1m}
`

func startStack(t *testing.T) *stack {
	t.Helper()
	sim := httptest.NewServer(simulator.New(simulator.Config{ChunkDelay: vendorPace}))
	t.Cleanup(sim.Close)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(testResources, sim.URL)), 0o600))
	t.Setenv("FMGATE_TEST_MAIN_KEY", mainKey)
	t.Setenv("FMGATE_TEST_LIMITED_KEY", limitedKey)
	return serveInProcess(t, res, io.Discard)
}

// serveInProcess runs `fmgate serve --resources=res` all in one in this test process on free
// loopback ports, with args added after its own flags (so they override them), until the
// test ends or stack.stop; waits until it is ready; and returns it with a gRPC connection.
// Its logs (errors only unless args say otherwise) go to logs.
func serveInProcess(t *testing.T, res string, logs io.Writer, args ...string) *stack {
	t.Helper()
	// A port freeAddr found free can be taken before fmgate listens on it (by another test
	// process, or as the local port of an outgoing connection); then fmgate exits at once
	// and is started again on other ports.
	for attempt := 1; ; attempt++ {
		httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"serve", "--http.addr=" + httpAddr, "--grpc.addr=" + grpcAddr, "--resources=" + res,
				"--log.level=error", "--audit.spool-dir=" + t.TempDir()}, args...), io.Discard, logs)
		}()
		s := &stack{http: "http://" + httpAddr, grpcAddr: grpcAddr}
		exited, err := waitReady(s.http, done)
		if exited && attempt < 3 && err != nil && strings.Contains(err.Error(), "address already in use") {
			cancel()
			continue
		}
		stopped := false
		s.stop = func() {
			if stopped {
				return
			}
			stopped = true
			cancel()
			if exited {
				return
			}
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(wait):
				t.Error("fmgate did not stop")
			}
		}
		t.Cleanup(s.stop)
		require.False(t, exited, "fmgate exited before it was ready: %v: %s", err, logs)
		require.NoError(t, err, "fmgate did not become ready: %s", logs)
		return s.connect(t)
	}
}

// waitReady polls /readyz at httpURL until it answers 200 (nil), run's result arrives on
// done first (exited), or wait passes.
func waitReady(httpURL string, done <-chan error) (exited bool, err error) {
	deadline := time.Now().Add(wait)
	for {
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("fmgate stopped")
			}
			return true, err
		default:
		}
		if resp, err := http.Get(httpURL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return false, nil
			}
		}
		if time.Now().After(deadline) {
			return false, errors.New("not ready within " + wait.String())
		}
		time.Sleep(tick) // polling for start-up in a test harness
	}
}

// connect gives s a gRPC connection, closed when the test ends.
func (s *stack) connect(t *testing.T) *stack {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	s.grpc, s.client = conn, gatewayv1.NewGatewayServiceClient(conn)
	return s
}

func withKey(ctx context.Context, key string) context.Context {
	if key == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

func userMessage(text string) []*typev1.Message {
	return []*typev1.Message{{Role: typev1.Role_ROLE_USER, Content: []*typev1.ContentPart{{Part: &typev1.ContentPart_Text{Text: text}}}}}
}

func post(t *testing.T, url, key, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func TestGenerate(t *testing.T) {
	s := startStack(t)
	const prompt = "Write to bob@example.com about the budget"

	t.Run("rest", func(t *testing.T) {
		resp, body := post(t, s.http+"/api/v1/generate", mainKey,
			`{"model":"demo","messages":[{"role":"ROLE_USER","content":[{"text":"`+prompt+`"}]}]}`)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var out struct {
			ID      string `json:"id"`
			Model   string `json:"model"`
			Message struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
			Usage        struct {
				InputTokens  string `json:"input_tokens"`
				OutputTokens string `json:"output_tokens"`
			} `json:"usage"`
			Moderation []struct{ Stage, Detector, Action string } `json:"moderation"`
		}
		require.NoError(t, json.Unmarshal(body, &out))
		assert.Equal(t, "demo", out.Model)
		assert.True(t, strings.HasPrefix(out.ID, "gen-"))
		require.Len(t, out.Message.Content, 1)
		text := out.Message.Content[0].Text
		// The simulator echoes what reached it: the address was masked before dispatch.
		assert.Contains(t, text, "[EMAIL]")
		assert.NotContains(t, text, "bob@example.com")
		assert.Equal(t, "FINISH_REASON_STOP", out.FinishReason)
		assert.NotEmpty(t, out.Usage.InputTokens)
		assert.Contains(t, out.Moderation, struct{ Stage, Detector, Action string }{"input", "pii.email", "mask"})
	})

	t.Run("grpc", func(t *testing.T) {
		resp, err := s.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage(prompt)})
		require.NoError(t, err)
		text := resp.GetMessage().GetContent()[0].GetText()
		assert.Contains(t, text, "You said: Write to [EMAIL] about the budget")
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, resp.GetFinishReason())
		assert.Positive(t, resp.GetUsage().GetOutputTokens())
	})

	t.Run("grpc stream", func(t *testing.T) {
		full, err := s.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage(prompt)})
		require.NoError(t, err)
		stream, err := s.client.StreamGenerate(withKey(t.Context(), mainKey), &gatewayv1.StreamGenerateRequest{Model: "demo", Messages: userMessage(prompt)})
		require.NoError(t, err)
		var text strings.Builder
		var events int
		var last *gatewayv1.StreamGenerateResponse
		for {
			ev, err := stream.Recv()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			events++
			text.WriteString(ev.GetTextDelta())
			last = ev
		}
		assert.Greater(t, events, 2, "the answer arrives in several events")
		assert.Equal(t, full.GetMessage().GetContent()[0].GetText(), text.String())
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, last.GetFinishReason())
		assert.Equal(t, full.GetUsage().GetTotalTokens(), last.GetUsage().GetTotalTokens())
	})

	t.Run("rest stream", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, s.http+"/api/v1/generate:stream",
			strings.NewReader(`{"model":"demo","messages":[{"role":"ROLE_USER","content":[{"text":"hello there"}]}]}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+mainKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var text strings.Builder
		var lines int
		finish := ""
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var ev struct {
				Result struct {
					TextDelta    string `json:"text_delta"`
					FinishReason string `json:"finish_reason"`
				} `json:"result"`
				Error any `json:"error"`
			}
			require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), sc.Text())
			require.Nil(t, ev.Error)
			lines++
			text.WriteString(ev.Result.TextDelta)
			if ev.Result.FinishReason != "" {
				finish = ev.Result.FinishReason
			}
		}
		assert.Greater(t, lines, 2)
		assert.Contains(t, text.String(), "You said: hello there")
		assert.Equal(t, "FINISH_REASON_STOP", finish)
	})

	t.Run("list models shows only granted ones", func(t *testing.T) {
		resp, err := s.client.ListModels(withKey(t.Context(), mainKey), &gatewayv1.ListModelsRequest{})
		require.NoError(t, err)
		var names []string
		for _, m := range resp.GetModels() {
			names = append(names, m.GetName())
		}
		assert.Equal(t, []string{"demo"}, names)

		req, _ := http.NewRequest(http.MethodGet, s.http+"/api/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+mainKey)
		hr, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		assert.Equal(t, http.StatusOK, hr.StatusCode)
		assert.JSONEq(t, `{"models":[{"name":"demo","display_name":"Demo","vendor":"sim"}]}`, string(body))
	})
}

// Each refusal has its own code, over gRPC and over REST.
func TestRefusals(t *testing.T) {
	s := startStack(t)
	demo := `"messages":[{"role":"ROLE_USER","content":[{"text":"hi"}]}]`
	cases := []struct {
		name     string
		key      string
		body     string // REST body
		req      *gatewayv1.GenerateRequest
		code     codes.Code
		httpCode int
		field    string // for INVALID_ARGUMENT: the field named
		reason   string // ErrorInfo reason, when one is set
	}{
		{name: "no key", body: `{"model":"demo",` + demo + `}`, req: &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("hi")},
			code: codes.Unauthenticated, httpCode: 401},
		{name: "bad key", key: "fmg_not_a_key_0123456789abcdefghijklmnopqr", body: `{"model":"demo",` + demo + `}`,
			req: &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("hi")}, code: codes.Unauthenticated, httpCode: 401},
		{name: "model not granted", key: mainKey, body: `{"model":"restricted",` + demo + `}`,
			req: &gatewayv1.GenerateRequest{Model: "restricted", Messages: userMessage("hi")}, code: codes.PermissionDenied, httpCode: 403, reason: "MODEL_NOT_GRANTED"},
		{name: "unknown model", key: mainKey, body: `{"model":"nope",` + demo + `}`,
			req: &gatewayv1.GenerateRequest{Model: "nope", Messages: userMessage("hi")}, code: codes.NotFound, httpCode: 404},
		{name: "unapproved model", key: mainKey, body: `{"model":"proposed-model",` + demo + `}`,
			req: &gatewayv1.GenerateRequest{Model: "proposed-model", Messages: userMessage("hi")}, code: codes.FailedPrecondition, httpCode: 400},
		{name: "no messages", key: mainKey, body: `{"model":"demo"}`,
			req: &gatewayv1.GenerateRequest{Model: "demo"}, code: codes.InvalidArgument, httpCode: 400, field: "messages"},
		{name: "no role", key: mainKey, body: `{"model":"demo","messages":[{"content":[{"text":"hi"}]}]}`,
			req:  &gatewayv1.GenerateRequest{Model: "demo", Messages: []*typev1.Message{{Content: userMessage("hi")[0].Content}}},
			code: codes.InvalidArgument, httpCode: 400, field: "messages[0].role"},
		{name: "bad temperature", key: mainKey, body: `{"model":"demo",` + demo + `,"params":{"temperature":7}}`,
			req:  &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("hi"), Params: &typev1.GenerationParams{Temperature: ptr(7.0)}},
			code: codes.InvalidArgument, httpCode: 400, field: "params.temperature"},
		{name: "blocked prompt", key: mainKey, body: `{"model":"demo","messages":[{"role":"ROLE_USER","content":[{"text":"key AKIAABCDEFGHIJKLMNOP"}]}]}`,
			req: &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("key AKIAABCDEFGHIJKLMNOP")}, code: codes.InvalidArgument, httpCode: 400, reason: "INPUT_BLOCKED"},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/grpc", func(t *testing.T) {
			_, err := s.client.Generate(withKey(t.Context(), tc.key), tc.req)
			st := status.Convert(err)
			require.Equal(t, tc.code, st.Code(), st.Message())
			if tc.field != "" {
				assert.Contains(t, violations(st), tc.field)
				assert.Contains(t, st.Message(), tc.field)
			}
			if tc.reason != "" {
				assert.Equal(t, tc.reason, reason(st))
			}
		})
		t.Run(tc.name+"/rest", func(t *testing.T) {
			resp, body := post(t, s.http+"/api/v1/generate", tc.key, tc.body)
			require.Equal(t, tc.httpCode, resp.StatusCode, string(body))
			var e struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			require.NoError(t, json.Unmarshal(body, &e))
			assert.Equal(t, int(tc.code), e.Code)
			if tc.field != "" {
				assert.Contains(t, e.Message, tc.field)
			}
			if tc.reason != "" {
				assert.Contains(t, string(body), tc.reason)
			}
			if tc.httpCode == http.StatusUnauthorized {
				assert.Equal(t, `Bearer realm="fmgate"`, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("unknown field that would route/rest", func(t *testing.T) {
		resp, body := post(t, s.http+"/api/v1/generate", mainKey, `{"model":"demo",`+demo+`,"api_base":"http://169.254.169.254"}`)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		assert.Contains(t, string(body), "api_base")
	})
	t.Run("malformed json/rest", func(t *testing.T) {
		resp, _ := post(t, s.http+"/api/v1/generate", mainKey, `{"model":`)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})

	t.Run("over the limit/grpc", func(t *testing.T) {
		ctx := withKey(t.Context(), limitedKey)
		var err error
		for range 3 {
			_, err = s.client.ListModels(ctx, &gatewayv1.ListModelsRequest{}) // not rate limited
			require.NoError(t, err)
		}
		req := &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("hi")}
		// The limited key may make two requests a minute; both transports share them.
		for range 2 {
			_, err = s.client.Generate(ctx, req)
			require.NoError(t, err)
		}
		_, err = s.client.Generate(ctx, req)
		st := status.Convert(err)
		require.Equal(t, codes.ResourceExhausted, st.Code())
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if r, ok := d.(*errdetails.RetryInfo); ok {
				retry = r
			}
		}
		require.NotNil(t, retry, "RESOURCE_EXHAUSTED carries RetryInfo")
		assert.Positive(t, retry.GetRetryDelay().AsDuration())
	})
	t.Run("over the limit/rest", func(t *testing.T) {
		resp, body := post(t, s.http+"/api/v1/generate", limitedKey, `{"model":"demo",`+demo+`}`)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, string(body))
		assert.NotEmpty(t, resp.Header.Get("Retry-After"))
		assert.Contains(t, string(body), "limited-rpm")
	})
}

// The gateway's port serves the internal services to in-process callers only: a client cannot
// call dispatch or identity directly and so skip authentication, policy, quota and
// moderation, nor an administrative RPC without a credential that grants it.
func TestInternalServicesAreNotReachable(t *testing.T) {
	s := startStack(t)
	_, err := dispatchv1.NewDispatchServiceClient(s.grpc).Generate(t.Context(), &dispatchv1.GenerateRequest{
		OrganizationId: "acme", EndpointIds: []string{"sim"}, Messages: userMessage("hi"),
	})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	// Administrative RPCs answer only callers with a credential granting the permission.
	_, err = identityv1.NewIdentityServiceClient(s.grpc).CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{OrganizationId: "acme"})
	assert.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	_, err = registryv1.NewRegistryServiceClient(s.grpc).CreateModel(withKey(t.Context(), mainKey), &registryv1.CreateModelRequest{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
	assert.Contains(t, status.Convert(err).Message(), "models.write")
}

func TestHealthAndOpenAPI(t *testing.T) {
	s := startStack(t)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/api/v1/openapi.json": `"/api/v1/generate"`} {
		resp, err := http.Get(s.http + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, string(body), want, path)
	}
}

func TestConfigErrorsAreReportedTogether(t *testing.T) {
	err := run(t.Context(), []string{"serve", "--services=edge,bogus"}, io.Discard, io.Discard)
	require.Error(t, err)
	for _, want := range []string{`unknown service "bogus"`, "--identity.addr is required", "--dispatch.addr is required"} {
		assert.Contains(t, err.Error(), want)
	}
}

func violations(st *status.Status) []string {
	var out []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	return out
}

func reason(st *status.Status) string {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }
