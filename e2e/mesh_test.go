package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var meshServices = []string{"registry", "identity", "policy", "quota", "moderation", "dispatch", "edge"}

// freshDatabase creates an empty database on the test Postgres server and returns its URL.
func freshDatabase(t *testing.T) string {
	t.Helper()
	base := requireEnv(t, "FMGATE_TEST_POSTGRES_URL")
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, base)
	require.NoError(t, err)
	defer conn.Close(ctx)
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	name := "fmgate_e2e_" + hex.EncodeToString(b)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + name
	return u.String()
}

// startJaeger runs Jaeger v2 with in-memory storage, an OTLP gRPC receiver and the query
// API on free loopback ports.
func startJaeger(t *testing.T) (otlpAddr, queryURL string) {
	t.Helper()
	otlpAddr, queryAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: %q
    grpc:
      endpoint: %q
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %q
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`, queryAddr, freeAddr(t), otlpAddr)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	p := start(t, "jaeger", bin.jaeger, nil, "--config=file:"+path)
	queryURL = "http://" + queryAddr
	waitHTTP(t, queryURL+"/api/services", p)
	return otlpAddr, queryURL
}

// The mesh as seven processes on real Postgres and Redis: one generation yields one trace
// in Jaeger holding spans from every service.
func TestMeshTraceReachesJaegerFromEveryService(t *testing.T) {
	pgURL := freshDatabase(t)
	redisURL := requireEnv(t, "FMGATE_TEST_REDIS_URL")
	otlpAddr, queryURL := startJaeger(t)

	simAddr := freeAddr(t)
	sim := start(t, "simulator", bin.fmgate, nil, "simulate", "--addr="+simAddr)
	waitHTTP(t, "http://"+simAddr+"/v1/models", sim)

	migrate := start(t, "migrate", bin.fmgate, nil, "migrate", "--postgres.url="+pgURL)
	select {
	case <-migrate.done:
		require.Equal(t, 0, migrate.cmd.ProcessState.ExitCode(), migrate.output())
	case <-time.After(wait):
		t.Fatal("migrate did not finish")
	}

	const key = "fmg_e2e_mesh_key_0123456789abcdefghijklmnopqrstuv"
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(`
models:
  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "http://%s/v1", upstream_model: demo}
api_keys:
  - {organization: acme, id: e2e, subject: "user:e2e", kind: user, secret_env: FMGATE_E2E_KEY}
policies:
  - {organization: acme, id: allow-demo, effect: allow, subjects: ["*"], models: [demo]}
limits:
  - {name: e2e-rpm, organization: acme, scope: api_key, kind: requests, amount: 100, window: 1m}
`, simAddr)), 0o600))

	addrs := map[string]string{}
	for _, svc := range meshServices {
		addrs[svc] = freeAddr(t)
	}
	env := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + otlpAddr,
		"OTEL_EXPORTER_OTLP_INSECURE=true",
		"OTEL_BSP_SCHEDULE_DELAY=100",
		"FMGATE_POSTGRES_URL=" + pgURL,
		"FMGATE_REDIS_URL=" + redisURL,
		"FMGATE_RESOURCES=" + res,
		"FMGATE_E2E_KEY=" + key,
		"FMGATE_LOG_LEVEL=warn",
		"FMGATE_MESH_TOKEN=e2e-mesh-token-0123456789abcdefghijkl",
	}
	for _, svc := range meshServices {
		if svc != "edge" {
			env = append(env, "FMGATE_"+strings.ToUpper(svc)+"_ADDR="+addrs[svc])
		}
	}
	var procs []*proc
	httpAddr := freeAddr(t)
	for _, svc := range meshServices {
		procs = append(procs, start(t, svc, bin.fmgate, env,
			"serve", "--services="+svc, "--grpc.addr="+addrs[svc], "--http.addr="+httpAddr))
	}
	// The edge is ready only when every peer it calls reports SERVING.
	waitHTTP(t, "http://"+httpAddr+"/readyz", procs...)

	traceID := newTraceID()
	resp, body, err := postJSON(t.Context(), "http://"+httpAddr+"/api/v1/generate", key, helloBody,
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Contains(t, string(body), "You said: Hello, fmgate")

	want := []string{}
	for _, svc := range meshServices {
		want = append(want, "fmgate-"+svc)
	}
	sort.Strings(want)
	var got []string
	require.Eventually(t, func() bool {
		got = traceServices(t, queryURL, traceID)
		return len(got) == len(want)
	}, wait, 200*time.Millisecond, "trace %s in Jaeger has spans from %v, want %v", traceID, got, want)
	assert.Equal(t, want, got)
}

// traceServices returns, sorted, the fmgate services that reported spans of the trace.
func traceServices(t *testing.T, queryURL, traceID string) []string {
	resp, err := http.Get(queryURL + "/api/traces/" + traceID)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var out struct {
		Data []struct {
			Spans []struct {
				ProcessID string `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out.Data) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, tr := range out.Data {
		for _, sp := range tr.Spans {
			if name := tr.Processes[sp.ProcessID].ServiceName; strings.HasPrefix(name, "fmgate-") {
				seen[name] = true
			}
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func newTraceID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// requireEnv returns a server URL from the environment: unset, the test skips, except in CI
// (CI=true), where the mesh test must run.
func requireEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s must be set in CI", name)
		}
		t.Skipf("%s is not set", name)
	}
	return v
}
