package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/audit"
	"github.com/fmgate/fmgate/internal/pg/pgtest"
	"github.com/fmgate/fmgate/internal/simulator"
)

const auditResources = `
models:
  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [sim], input_price_per_million: 3, output_price_per_million: 15}
  - {organization: acme, name: restricted, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "%s/v1", upstream_model: demo, region: local}
api_keys:
  - {organization: acme, id: main, subject: "user:alice", kind: user, team: research, secret_env: FMGATE_TEST_MAIN_KEY}
policies:
  - {organization: acme, id: allow-demo, effect: allow, subjects: ["*"], models: [demo], moderation_profile: default}
`

// auditDatabase creates an empty database on the test server, dropped when the test ends:
// the services' schemas have fixed names, so a stack on Postgres needs a database of its own.
func auditDatabase(t *testing.T) string {
	t.Helper()
	base := pgtest.URL(t)
	conn, err := pgx.Connect(t.Context(), base)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	name := "fmgate_audit_" + hex.EncodeToString(b)
	_, err = conn.Exec(t.Context(), "CREATE DATABASE "+name)
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

// auditStack is a running `fmgate serve` on Postgres with its own audit spool.
type auditStack struct {
	client gatewayv1.GatewayServiceClient
	logs   *syncBuffer // stack_test.go
	stop   func()      // stops the process and waits for it; idempotent
}

func startAuditStack(t *testing.T, dbURL, spool string) *auditStack {
	t.Helper()
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	t.Cleanup(sim.Close)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(auditResources, sim.URL)), 0o600))
	t.Setenv("FMGATE_TEST_MAIN_KEY", mainKey)

	s := &auditStack{logs: &syncBuffer{}}
	st := serveInProcess(t, res, s.logs, "--postgres.url="+dbURL, "--audit.spool-dir="+spool, "--log.level=info")
	s.client, s.stop = st.client, st.stop
	return s
}

// auditCLI runs `fmgate audit <command> --organization acme` on dbURL and returns stdout.
func auditCLI(t *testing.T, dbURL string, args ...string) string {
	t.Helper()
	var stdout bytes.Buffer
	args = append([]string{"audit", args[0], "--postgres.url", dbURL, "--organization", "acme"}, args[1:]...)
	require.NoError(t, run(t.Context(), args, &stdout, io.Discard))
	return stdout.String()
}

// Every generation and every refusal after authentication leaves an event in the edge's
// chain in Postgres, written by the recorder while the process runs and flushed at shutdown
// at the latest, readable and verifiable with `fmgate audit`.
func TestAuditGenerationEvents(t *testing.T) {
	dbURL := auditDatabase(t)
	var migrated bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"migrate", "--postgres.url", dbURL}, &migrated, io.Discard))
	require.Contains(t, migrated.String(), `migrated audit (schema "audit")`)
	spool := t.TempDir()
	st := startAuditStack(t, dbURL, spool)
	client, logs, stop := st.client, st.logs, st.stop

	const prompt = "Write to bob@example.com about the budget"
	resp, err := client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage(prompt)})
	require.NoError(t, err)
	usage := resp.GetUsage()
	require.Positive(t, usage.GetInputTokens())
	_, err = client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "restricted", Messages: userMessage(prompt)})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	auditRun := func(args ...string) string { t.Helper(); return auditCLI(t, dbURL, args...) }
	// The recorder's loop writes while the process runs.
	require.Eventually(t, func() bool {
		return strings.Count(auditRun("list", "--service", "edge"), "\n") == 2
	}, wait, tick)
	// An event recorded just before shutdown is flushed, not lost.
	_, err = client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("hello")})
	require.NoError(t, err)
	stop()
	assert.NotContains(t, logs.String(), "bob@example.com", "no prompt text in logs")
	assert.NotContains(t, logs.String(), mainKey)
	spooled, err := os.ReadDir(spool)
	require.NoError(t, err)
	assert.Empty(t, spooled, "nothing was spooled: the store took every event")

	list := strings.Split(strings.TrimSpace(auditRun("list")), "\n")
	require.Len(t, list, 3, list)
	assert.Regexp(t, `  edge #1  generation  user:user:alice  model/demo  trace=[0-9a-f]{32}$`, list[0])
	assert.Regexp(t, `  edge #2  generation.refused  user:user:alice  model/restricted  trace=[0-9a-f]{32}$`, list[1])

	assert.Regexp(t, `  edge #3  generation  user:user:alice  model/demo  `, list[2])
	assert.Regexp(t, `^chain ok \(3 records, head 3 sha256:[0-9a-f]{64}\)\n$`, auditRun("verify", "--service", "edge"))

	var events []audit.Event
	dec := json.NewDecoder(strings.NewReader(auditRun("export", "--service", "edge")))
	for dec.More() {
		var e audit.Event
		require.NoError(t, dec.Decode(&e))
		events = append(events, e)
	}
	require.Len(t, events, 3)
	for _, e := range events {
		assert.NotContains(t, string(e.Details), "bob@example.com")
		assert.NotContains(t, string(e.Details), "budget")
	}
	type details struct {
		audit.Generation
		PolicyIDs []string `json:"policy_ids"`
	}
	var g details
	require.NoError(t, json.Unmarshal(events[0].Details, &g))
	assert.Equal(t, "demo", g.Model)
	assert.Equal(t, "sim", g.Endpoint)
	assert.Equal(t, "allow", g.PolicyVerdict)
	assert.NotEmpty(t, g.PolicyVersion)
	assert.Equal(t, []string{"allow-demo"}, g.PolicyIDs)
	assert.Contains(t, g.Obligations, "moderation_profile=default")
	assert.Contains(t, g.Findings, audit.Finding{Detector: "pii.email", Stage: "input", Action: "mask", Count: 1})
	assert.Equal(t, usage.GetInputTokens(), g.InputTokens)
	assert.Equal(t, usage.GetOutputTokens(), g.OutputTokens)
	assert.Equal(t, 3*usage.GetInputTokens()+15*usage.GetOutputTokens(), g.CostMicros, "prices per million tokens, in micro-dollars")
	assert.Equal(t, "USD", g.Currency)
	assert.Equal(t, "ok", g.Outcome)
	assert.Equal(t, "stop", g.FinishedReason)

	var r details
	require.NoError(t, json.Unmarshal(events[1].Details, &r))
	assert.Equal(t, "deny", r.PolicyVerdict)
	assert.Equal(t, "policy_denied", r.Outcome)
	assert.Zero(t, r.InputTokens)
}

// While the audit store refuses writes, the edge's events go to the spool, and the next
// start replays them into the store in order: none is lost.
func TestAuditGenerationEventsSpoolWhileStoreIsDown(t *testing.T) {
	dbURL := auditDatabase(t)
	// Every schema but the audit one: the audit store fails every write.
	require.NoError(t, run(t.Context(), []string{"migrate", "--postgres.url", dbURL, "--services", "registry,identity,policy,dispatch"}, io.Discard, io.Discard))
	spool := t.TempDir()
	st := startAuditStack(t, dbURL, spool)
	resp, err := st.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage("Write to bob@example.com")})
	require.NoError(t, err, "a failing audit store does not fail generations")
	_, err = st.client.Generate(withKey(t.Context(), mainKey), &gatewayv1.GenerateRequest{Model: "restricted", Messages: userMessage("hi")})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	st.stop()
	b, err := os.ReadFile(filepath.Join(spool, "audit-edge.jsonl"))
	require.NoError(t, err, "the events were spooled at shutdown")
	assert.Equal(t, 2, bytes.Count(b, []byte("\n")))
	assert.NotContains(t, string(b), "bob@example.com")

	require.NoError(t, run(t.Context(), []string{"migrate", "--postgres.url", dbURL, "--services", "audit"}, io.Discard, io.Discard))
	st = startAuditStack(t, dbURL, spool)
	require.Eventually(t, func() bool {
		return strings.Count(auditCLI(t, dbURL, "list", "--service", "edge"), "\n") == 2
	}, wait, tick, "the next start replays the spool")
	list := auditCLI(t, dbURL, "list", "--service", "edge")
	assert.Contains(t, list, "edge #1  generation  user:user:alice  model/demo")
	assert.Contains(t, list, "edge #2  generation.refused  user:user:alice  model/restricted")
	assert.Regexp(t, `^chain ok \(2 records`, auditCLI(t, dbURL, "verify", "--service", "edge"))
	var events []audit.Event
	dec := json.NewDecoder(strings.NewReader(auditCLI(t, dbURL, "export", "--service", "edge")))
	for dec.More() {
		var e audit.Event
		require.NoError(t, dec.Decode(&e))
		events = append(events, e)
	}
	require.Len(t, events, 2)
	var g audit.Generation
	require.NoError(t, json.Unmarshal(events[0].Details, &g))
	assert.Equal(t, resp.GetUsage().GetInputTokens(), g.InputTokens)
	st.stop()
	_, err = os.Stat(filepath.Join(spool, "audit-edge.jsonl"))
	assert.ErrorIs(t, err, os.ErrNotExist, "the replayed spool is removed")
}
