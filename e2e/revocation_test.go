package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two fmgate processes, each running every service, on one Postgres: a key revoked through
// the admin API of one is refused by the other within one second. The second process learns
// of the revocation through identity's WatchRevocations (Postgres LISTEN/NOTIFY), and its
// edge's principal cache never serves a principal longer than 500 ms in any case.
func TestRevocationReachesTheOtherProcessWithinOneSecond(t *testing.T) {
	pgURL := freshDatabase(t)
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

	const (
		adminKey = "fmg_e2e_admin_key_0123456789abcdefghijklmnopqrst"
		userKey  = "fmg_e2e_user_key_0123456789abcdefghijklmnopqrstu"
	)
	res := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(res, []byte(fmt.Sprintf(`
models:
  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "http://%s/v1", upstream_model: demo}
api_keys:
  - {organization: acme, id: admin, subject: "user:ada", kind: user, roles: [org_admin], secret_env: FMGATE_E2E_ADMIN_KEY}
  - {organization: acme, id: user, subject: "user:bob", kind: user, team: red, roles: [developer], secret_env: FMGATE_E2E_USER_KEY}
policies:
  - {organization: acme, id: allow-demo, effect: allow, subjects: ["*"], models: [demo]}
`, simAddr)), 0o600))
	env := []string{
		"FMGATE_POSTGRES_URL=" + pgURL,
		"FMGATE_RESOURCES=" + res,
		"FMGATE_E2E_ADMIN_KEY=" + adminKey,
		"FMGATE_E2E_USER_KEY=" + userKey,
		"FMGATE_LOG_LEVEL=warn",
	}
	var urls []string
	var procs []*proc
	for _, name := range []string{"fmgate-a", "fmgate-b"} {
		httpAddr := freeAddr(t)
		procs = append(procs, start(t, name, bin.fmgate, env, "serve", "--http.addr="+httpAddr,
			"--grpc.addr="+freeAddr(t), "--audit.spool-dir="+t.TempDir()))
		urls = append(urls, "http://"+httpAddr)
	}
	for i, u := range urls {
		waitHTTP(t, u+"/readyz", procs[i])
	}
	a, b := urls[0], urls[1]

	generate := func(base string) int {
		resp, body, err := postJSON(t.Context(), base+"/v1/chat/completions", userKey,
			`{"model":"demo","messages":[{"role":"user","content":"hi"}]}`)
		require.NoError(t, err)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("unexpected answer %d: %s", resp.StatusCode, body)
		}
		return resp.StatusCode
	}
	// Both processes serve the key, and the second has it cached.
	require.Equal(t, http.StatusOK, generate(a))
	require.Equal(t, http.StatusOK, generate(b))
	require.Equal(t, http.StatusOK, generate(b))

	// The user cannot revoke through the admin API what it does not own...
	resp, body, err := postJSON(t.Context(), a+"/api/v1/orgs/acme/apiKeys/admin:revoke", userKey, `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "a developer of team red revoking the admin's key: %s", body)
	// ...the admin revokes the user's key through process A.
	resp, body, err = postJSON(t.Context(), a+"/api/v1/orgs/acme/apiKeys/user:revoke", adminKey, `{}`)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	revoked := time.Now()

	deadline := revoked.Add(time.Second)
	for generate(b) != http.StatusUnauthorized {
		require.True(t, time.Now().Before(deadline), "process B still serves the revoked key after %v", time.Since(revoked))
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(revoked)
	t.Logf("process B refused the revoked key %v after process A revoked it", took.Round(time.Millisecond))
	assert.Less(t, took, time.Second)
	// And it stays refused, everywhere.
	assert.Equal(t, http.StatusUnauthorized, generate(b))
	assert.Equal(t, http.StatusUnauthorized, generate(a))
}
