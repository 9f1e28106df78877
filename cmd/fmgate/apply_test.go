package main

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	auditv1 "github.com/fmgate/fmgate/gen/fmgate/audit/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

const (
	adminKey  = "fmg_test_admin_key_0123456789abcdefghijklmno"
	viewerKey = "fmg_test_viewer_key_0123456789abcdefghijklmn"
)

// serveResources is what the stack starts with: an administrator's key, a viewer's key and
// a demo model, which the applied file names as a fallback.
const serveResources = `
models:
  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [sim]}
endpoints:
  - {organization: acme, id: sim, provider: openai_compatible, base_url: "{SIM}/v1", upstream_model: demo, region: local}
api_keys:
  - {organization: acme, id: admin, subject: "user:admin", kind: user, roles: [org_admin], secret_env: FMGATE_TEST_ADMIN_KEY}
  - {organization: acme, id: viewer, subject: "user:viewer", kind: user, team: research, roles: [viewer], secret_env: FMGATE_TEST_VIEWER_KEY}
`

// applyResources declares every kind of resource the admin API manages.
const applyResources = `
organizations:
  - {id: acme, display_name: Acme Corp}
roles:
  - {organization: acme, id: key-auditor, display_name: Key auditor, scope: organization, permissions: [keys.read, audit.read]}
teams:
  - {organization: acme, id: research, display_name: Research, attributes: {jurisdiction: EU}}
users:
  - {organization: acme, id: alice, email: alice@example.com, display_name: Alice, team: research, roles: [developer, key-auditor], attributes: {cost_center: "42"}}
service_accounts:
  - {organization: acme, id: batch, display_name: Batch jobs, team: research, roles: [developer], disabled: false}
endpoints:
  - {organization: acme, id: eu-sim, provider: openai_compatible, base_url: "{SIM}/v1", upstream_model: demo, region: eu-west-1, weight: 2, priority: 0, covered_by_baa: true}
models:
  - organization: acme
    name: gpt-eu
    display_name: GPT EU
    vendor: sim
    lifecycle: approved
    evidence_note: evaluation ticket 42
    context_window: 8192
    input_price_per_million: 0.5
    output_price_per_million: 1.5
    endpoints: [eu-sim]
    fallback_models: [demo]
    family: gpt
    version: "2025-01"
    input_modalities: [text, image]
    output_modalities: [text]
    max_output_tokens: 4096
    capabilities: {tools: true, json_output: true}
    price_per_image: 0.01
    regions: [eu-west-1]
    intended_uses: [summarisation]
    use_case_tags: [summarise]
    limitations: [no medical advice]
    evaluation_metrics: {mmlu: 0.81}
    license: {name: Sim EULA, url: "https://example.com/eula", version: "1.0", acceptance_required: true}
    data_handling: {retention_days: 0, used_for_training: false}
    successor_model: gpt-eu-2
    vendor_model_id: sim-gpt-eu
policies:
  - organization: acme
    id: allow-gpt-eu
    description: Everyone may use the EU model
    effect: allow
    subjects: ["*"]
    models: [gpt-eu]
    moderation_profile: default
  - organization: acme
    id: eu-only
    description: EU principals stay in the EU
    effect: constrain
    subjects: ["team:research"]
    models: ["*"]
    condition: 'principal.attributes["jurisdiction"] == "EU"'
    max_output_tokens: 2048
    allowed_endpoint_regions: ["eu-*"]
    allowed_modalities: [text, image]
    log_retention: 720h
    log_group: eu
    mask_personal_data: true
    require_baa_coverage: false
license_acceptances:
  - {organization: acme, team: research, model: gpt-eu, license_name: Sim EULA, license_version: "1.0"}
api_keys:
  - {organization: acme, id: alice-cli, display_name: Alice CLI, kind: user, subject: "user:alice", scopes: {models: [gpt-eu], operations: [generate]}}
  - {organization: acme, id: alice-plain, kind: user, subject: "user:alice"}
  - {organization: acme, id: admin, subject: "user:admin", kind: user, roles: [org_admin], secret_env: FMGATE_TEST_ADMIN_KEY}
`

// adminStack is a running `fmgate serve` for the admin commands.
type adminStack struct {
	grpcAddr string
	sim      string
	conn     *grpc.ClientConn
	gateway  gatewayv1.GatewayServiceClient
	logs     *syncBuffer
}

// startAdminStack starts fmgate all in one with serveResources, on Postgres when dbURL is
// set, else on memory stores.
func startAdminStack(t *testing.T, dbURL string) *adminStack {
	return startAdminStackWith(t, dbURL, serveResources)
}

// startAdminStackWith starts fmgate with the resources doc ({SIM}: the simulator's URL).
func startAdminStackWith(t *testing.T, dbURL, doc string) *adminStack {
	t.Helper()
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	t.Cleanup(sim.Close)
	res := filepath.Join(t.TempDir(), "serve.yaml")
	require.NoError(t, os.WriteFile(res, []byte(strings.ReplaceAll(doc, "{SIM}", sim.URL)), 0o600))
	t.Setenv("FMGATE_TEST_ADMIN_KEY", adminKey)
	t.Setenv("FMGATE_TEST_VIEWER_KEY", viewerKey)

	var args []string
	if dbURL != "" {
		args = append(args, "--postgres.url="+dbURL)
	}
	var logs syncBuffer
	// Registered before the server's own cleanup, so it runs after the server stopped.
	t.Cleanup(func() {
		// The secrets apply and the commands handle never reach the server's logs.
		assert.NotContains(t, logs.String(), adminKey)
		assert.NotContains(t, logs.String(), viewerKey)
		if t.Failed() {
			t.Log(logs.String())
		}
	})
	st := serveInProcess(t, res, &logs, append(args, "--log.level=info")...)
	return &adminStack{grpcAddr: st.grpcAddr, sim: sim.URL, conn: st.grpc, gateway: st.client, logs: &logs}
}

// writeResources writes doc, with {SIM} replaced, to a file of the test and returns its path.
func (s *adminStack) writeResources(t *testing.T, doc string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resources.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.ReplaceAll(doc, "{SIM}", s.sim)), 0o600))
	return path
}

// cli runs `fmgate <args> --server <stack>` with token as FMGATE_TOKEN and returns stdout,
// stderr and the error.
func (s *adminStack) cli(t *testing.T, token string, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv(TokenEnv, token)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), append(args, "--server", s.grpcAddr), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// changeEvents counts the organisation's audit records of admin changes.
func (s *adminStack) changeEvents(t *testing.T) []*auditv1.AuditEvent {
	t.Helper()
	client := auditv1.NewAuditServiceClient(s.conn)
	var out []*auditv1.AuditEvent
	token := ""
	for {
		resp, err := client.ListAuditEvents(withKey(t.Context(), adminKey), &auditv1.ListAuditEventsRequest{PageSize: 1000, PageToken: token})
		require.NoError(t, err)
		for _, e := range resp.GetAuditEvents() {
			if !strings.HasPrefix(e.GetAction(), "generation") {
				out = append(out, e)
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// eventually waits for the audit recorder to have written n change events, and returns them.
func (s *adminStack) eventually(t *testing.T, n int) []*auditv1.AuditEvent {
	t.Helper()
	var events []*auditv1.AuditEvent
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		events = s.changeEvents(t)
		assert.GreaterOrEqual(c, len(events), n)
	}, wait, tick, "want %d change events", n)
	return events
}

// snapshot returns every resource applyResources declares, as stored, etags and times
// included.
func (s *adminStack) snapshot(t *testing.T) string {
	t.Helper()
	ctx := withKey(t.Context(), adminKey)
	id := identityv1.NewIdentityServiceClient(s.conn)
	reg := registryv1.NewRegistryServiceClient(s.conn)
	pol := policyv1.NewPolicyServiceClient(s.conn)
	var msgs []proto.Message
	add := func(m proto.Message, err error) {
		require.NoError(t, err)
		msgs = append(msgs, m)
	}
	add(id.GetOrganization(ctx, &identityv1.GetOrganizationRequest{OrganizationId: "acme"}))
	add(id.GetRole(ctx, &identityv1.GetRoleRequest{OrganizationId: "acme", Id: "key-auditor"}))
	add(id.GetTeam(ctx, &identityv1.GetTeamRequest{OrganizationId: "acme", Id: "research"}))
	add(id.GetUser(ctx, &identityv1.GetUserRequest{OrganizationId: "acme", Id: "alice"}))
	add(id.GetServiceAccount(ctx, &identityv1.GetServiceAccountRequest{OrganizationId: "acme", Id: "batch"}))
	add(id.ListApiKeys(ctx, &identityv1.ListApiKeysRequest{OrganizationId: "acme"}))
	add(id.ListLicenseAcceptances(ctx, &identityv1.ListLicenseAcceptancesRequest{OrganizationId: "acme"}))
	add(reg.ListEndpoints(ctx, &registryv1.ListEndpointsRequest{OrganizationId: "acme"}))
	add(reg.GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: "acme", Name: "gpt-eu"}))
	add(reg.ListModelTransitions(ctx, &registryv1.ListModelTransitionsRequest{OrganizationId: "acme", Name: "gpt-eu"}))
	add(pol.ListPolicies(ctx, &policyv1.ListPoliciesRequest{OrganizationId: "acme"}))
	var b strings.Builder
	for _, m := range msgs {
		j, err := protojson.Marshal(m)
		require.NoError(t, err)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func lines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

// testApplyTwice applies applyResources, then again, then with one field changed, on st.
func testApplyTwice(t *testing.T, st *adminStack) {
	file := st.writeResources(t, applyResources)

	out, stderr, err := st.cli(t, adminKey, "apply", "-f", file)
	require.NoError(t, err, "%s%s", out, stderr)
	assert.NotContains(t, out, "!", out)
	for _, want := range []string{
		"+ organization acme created",
		"+ role acme/key-auditor created",
		"+ team acme/research created",
		"+ user acme/alice created",
		"+ service account acme/batch created",
		"+ endpoint acme/eu-sim created",
		"+ model acme/gpt-eu created (lifecycle_state proposed → evaluating → approved)",
		"+ policy acme/allow-gpt-eu created",
		"+ policy acme/eu-only created",
		"+ license acceptance acme/research/gpt-eu/Sim EULA@1.0 created",
		"+ api key acme/alice-cli created for user:alice",
		"+ api key acme/alice-plain created for user:alice",
		"- api key acme/admin skipped",
		"apply: 12 created, 0 updated, 0 unchanged, 1 skipped, 0 failed",
	} {
		assert.Contains(t, out, want)
	}
	assert.Regexp(t, `secret: fmg_\S+\n    warning: this secret is shown once`, out)
	assert.NotContains(t, out, adminKey, "the caller's credential is never printed")

	// Every field the file declares is stored as declared.
	ctx := withKey(t.Context(), adminKey)
	model, err := registryv1.NewRegistryServiceClient(st.conn).GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: "acme", Name: "gpt-eu"})
	require.NoError(t, err)
	m := model.GetModel()
	assert.Equal(t, registryv1.LifecycleState_LIFECYCLE_STATE_APPROVED, m.GetLifecycleState())
	assert.Equal(t, []registryv1.Modality{registryv1.Modality_MODALITY_TEXT, registryv1.Modality_MODALITY_IMAGE}, m.GetInputModalities())
	assert.Equal(t, &registryv1.License{Name: "Sim EULA", Url: "https://example.com/eula", Version: "1.0", AcceptanceRequired: true}, m.GetLicense())
	require.NotNil(t, m.GetDataHandling().RetentionDays)
	assert.Zero(t, m.GetDataHandling().GetRetentionDays())
	assert.Equal(t, map[string]float64{"mmlu": 0.81}, m.GetEvaluationMetrics())
	assert.Equal(t, "gpt-eu-2", m.GetSuccessorModel())
	transitions, err := registryv1.NewRegistryServiceClient(st.conn).ListModelTransitions(ctx,
		&registryv1.ListModelTransitionsRequest{OrganizationId: "acme", Name: "gpt-eu"})
	require.NoError(t, err)
	require.Len(t, transitions.GetTransitions(), 2)
	assert.Equal(t, "evaluation ticket 42", transitions.GetTransitions()[1].GetEvidenceNote())
	assert.Equal(t, "user:admin", transitions.GetTransitions()[1].GetActor())
	pol, err := policyv1.NewPolicyServiceClient(st.conn).GetPolicy(ctx, &policyv1.GetPolicyRequest{OrganizationId: "acme", Id: "eu-only"})
	require.NoError(t, err)
	assert.Equal(t, policyv1.Effect_EFFECT_CONSTRAIN, pol.GetPolicy().GetEffect())
	assert.Equal(t, 720*time.Hour, pol.GetPolicy().GetObligations().GetLogRetention().AsDuration())
	assert.Equal(t, []string{"eu-*"}, pol.GetPolicy().GetObligations().GetAllowedEndpointRegions())
	user, err := identityv1.NewIdentityServiceClient(st.conn).GetUser(ctx, &identityv1.GetUserRequest{OrganizationId: "acme", Id: "alice"})
	require.NoError(t, err)
	assert.Equal(t, []string{"developer", "key-auditor"}, user.GetUser().GetRoles())

	// 12 creations and 2 transitions, each recorded.
	before := st.eventually(t, 14)
	assert.Len(t, before, 14)

	// The second apply changes nothing, and records nothing.
	stored := st.snapshot(t)
	out, stderr, err = st.cli(t, adminKey, "apply", "-f", file)
	require.NoError(t, err, "%s%s", out, stderr)
	for _, l := range lines(out) {
		if !strings.HasPrefix(l, "apply:") {
			assert.Regexp(t, `^(= .* unchanged|- api key acme/admin skipped: .*)$`, l)
		}
	}
	assert.Contains(t, out, "apply: 0 created, 0 updated, 12 unchanged, 1 skipped, 0 failed")
	assert.NotContains(t, out, "secret:")
	assert.Equal(t, stored, st.snapshot(t), "an idempotent apply writes nothing: etags, revisions and times stay")
	assert.Len(t, st.changeEvents(t), len(before), "an idempotent apply records no change")

	// One field changed in the file: exactly that field is updated.
	changed := strings.Replace(applyResources, "display_name: GPT EU\n", "display_name: GPT Europe\n", 1)
	changed = strings.Replace(changed, "max_output_tokens: 2048", "max_output_tokens: 1024", 1)
	file = st.writeResources(t, changed)
	out, stderr, err = st.cli(t, adminKey, "apply", "-f", file)
	require.NoError(t, err, "%s%s", out, stderr)
	assert.Contains(t, out, "~ model acme/gpt-eu updated display_name\n")
	assert.Contains(t, out, "~ policy acme/eu-only updated obligations.max_output_tokens\n")
	assert.Contains(t, out, "apply: 0 created, 2 updated, 10 unchanged, 1 skipped, 0 failed")
	after := st.eventually(t, len(before)+2)
	require.Len(t, after, len(before)+2)
	assert.Equal(t, "model.update", after[len(before)].GetAction())
	assert.Equal(t, "policy.update", after[len(before)+1].GetAction())
	assert.NotContains(t, st.logs.String(), "not audited", "every admin change reaches the audit trail")
	model, err = registryv1.NewRegistryServiceClient(st.conn).GetModel(ctx, &registryv1.GetModelRequest{OrganizationId: "acme", Name: "gpt-eu"})
	require.NoError(t, err)
	assert.Equal(t, "GPT Europe", model.GetModel().GetDisplayName())
	assert.Equal(t, "Sim EULA", model.GetModel().GetLicense().GetName(), "fields not changed stay")
}

func TestApplyCreatesThenChangesNothing(t *testing.T) {
	st := startAdminStack(t, "")
	testApplyTwice(t, st)

	// --dry-run prints the diff and changes nothing.
	changed := strings.Replace(applyResources, "display_name: GPT EU\n", "display_name: GPT Dry\n", 1)
	changed = strings.Replace(changed, "lifecycle: approved", "lifecycle: retired", 1)
	changed = strings.Replace(changed, "  - {organization: acme, id: batch,", "  - {organization: acme, id: nightly,", 1)
	file := st.writeResources(t, changed)
	stored := st.snapshot(t)
	n := len(st.changeEvents(t))
	out, stderr, err := st.cli(t, adminKey, "apply", "--dry-run", "-f", file)
	require.NoError(t, err, "%s%s", out, stderr)
	assert.Contains(t, out, "~ model acme/gpt-eu would be updated: display_name, lifecycle_state\n"+
		`    display_name: "GPT Europe" → "GPT Dry"`+"\n"+
		"    lifecycle_state: approved → deprecated → retired\n")
	assert.Contains(t, out, "+ service account acme/nightly would be created\n    display_name: \"Batch jobs\"\n")
	assert.Contains(t, out, "apply: dry run, would be 1 created, 2 updated")
	model, err := registryv1.NewRegistryServiceClient(st.conn).GetModel(withKey(t.Context(), adminKey),
		&registryv1.GetModelRequest{OrganizationId: "acme", Name: "gpt-eu"})
	require.NoError(t, err)
	assert.Equal(t, "GPT Europe", model.GetModel().GetDisplayName())
	assert.Equal(t, registryv1.LifecycleState_LIFECYCLE_STATE_APPROVED, model.GetModel().GetLifecycleState())
	assert.Equal(t, stored, st.snapshot(t), "a dry run writes nothing")
	assert.Len(t, st.changeEvents(t), n, "a dry run records nothing")

	// A lifecycle the model cannot reach is reported, and apply fails after reporting
	// everything else.
	back := strings.Replace(applyResources, "lifecycle: approved", "lifecycle: proposed", 1)
	out, _, err = st.cli(t, adminKey, "apply", "-f", st.writeResources(t, back))
	require.ErrorIs(t, err, errApplyFailed)
	assert.Contains(t, out, "! model acme/gpt-eu: lifecycle: a model cannot go from approved to proposed")
	assert.Contains(t, out, "= policy acme/allow-gpt-eu unchanged")
}

func TestApplyWithoutPermissionIsRefused(t *testing.T) {
	st := startAdminStack(t, "")
	out, _, err := st.cli(t, viewerKey, "apply", "-f", st.writeResources(t, applyResources))
	require.ErrorIs(t, err, errApplyFailed)
	assert.Contains(t, out, "! organization acme: PERMISSION_DENIED")
	assert.Regexp(t, `! model acme/gpt-eu: PERMISSION_DENIED: .*models\.write`, out)
	assert.Contains(t, out, "0 created, 0 updated")
	assert.NotContains(t, out, viewerKey)

	out, _, err = st.cli(t, "fmg_not_a_key_0123456789abcdefghijklmnopqrstu", "apply", "-f", st.writeResources(t, applyResources))
	require.ErrorIs(t, err, errApplyFailed)
	assert.Contains(t, out, "UNAUTHENTICATED")

	t.Setenv(TokenEnv, "")
	err = run(t.Context(), []string{"apply", "-f", st.writeResources(t, applyResources), "--server", st.grpcAddr}, io.Discard, io.Discard)
	require.ErrorContains(t, err, "no credential: set FMGATE_TOKEN")
}

// The admin commands, end to end: a key is created, listed, used, revoked and then refused.
func TestAdminCommands(t *testing.T) {
	st := startAdminStack(t, "")
	out, stderr, err := st.cli(t, adminKey, "apply", "-f", st.writeResources(t, applyResources))
	require.NoError(t, err, "%s%s", out, stderr)

	out, stderr, err = st.cli(t, adminKey, "keys", "create", "--owner", "user:alice", "--id", "alice-2", "--display-name", "Alice two")
	require.NoError(t, err, stderr)
	secret := regexp.MustCompile(`secret: (fmg_\S+)`).FindStringSubmatch(out)
	require.Len(t, secret, 2, out)
	assert.Contains(t, out, "shown once")

	out, _, err = st.cli(t, adminKey, "keys", "list")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^alice-2\s+user:alice\s+research\s+fmg_`, out)
	assert.NotContains(t, out, secret[1])
	out, _, err = st.cli(t, adminKey, "keys", "get", "alice-2", "-o", "json")
	require.NoError(t, err)
	assert.Contains(t, out, `"apiKeyId":"alice-2"`)

	gen := func(key string) error {
		_, err := st.gateway.Generate(withKey(t.Context(), key), &gatewayv1.GenerateRequest{Model: "gpt-eu", Messages: userMessage("hello")})
		return err
	}
	require.NoError(t, gen(secret[1]), "the new key works: alice's team accepted the licence and the policies allow it")

	out, stderr, err = st.cli(t, adminKey, "keys", "revoke", "alice-2")
	require.NoError(t, err, stderr)
	assert.Regexp(t, `(?m)^alice-2\s+user:alice.*\d{4}-\d\d-\d\dT`, out)
	require.Eventually(t, func() bool { return status.Code(gen(secret[1])) == codes.Unauthenticated }, 2*time.Second, tick,
		"the revoked key is refused by the gateway")

	out, _, err = st.cli(t, adminKey, "models", "list")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^gpt-eu\s+approved\s+sim\s+GPT EU\s+eu-sim\s+Sim EULA$`, out)
	out, _, err = st.cli(t, adminKey, "models", "get", "gpt-eu")
	require.NoError(t, err)
	assert.Contains(t, out, `successor_model:`)
	out, stderr, err = st.cli(t, adminKey, "models", "transition", "demo", "--to", "deprecated", "--note", "replaced by gpt-eu")
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "model demo: approved → deprecated by user:admin")
	_, stderr, err = st.cli(t, adminKey, "models", "transition", "demo", "--to", "evaluating", "--note", "x")
	require.ErrorIs(t, err, errAdminCall)
	assert.Contains(t, stderr, "FAILED_PRECONDITION")

	out, _, err = st.cli(t, adminKey, "policies", "list")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^eu-only\s+constrain\s+1\s+team:research\s+\*\s+principal`, out)
	out, _, err = st.cli(t, adminKey, "policies", "get", "eu-only", "-o", "json")
	require.NoError(t, err)
	assert.Contains(t, out, `"logRetention":"2592000s"`)

	out, stderr, err = st.cli(t, adminKey, "explain", "--principal", "user:alice", "--model", "gpt-eu")
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "decision: allow")
	assert.Regexp(t, `(?m)^allow-gpt-eu\s+allow\s+1\s+yes\s+yes\s+absent\s+yes$`, out)
	assert.Regexp(t, `(?m)^eu-only\s+constrain\s+1\s+yes\s+yes\s+true\s+yes$`, out)
	assert.Contains(t, out, "allowed_endpoint_regions:")
	out, _, err = st.cli(t, adminKey, "explain", "--principal", "user:alice", "--model", "gpt-eu", "--attr", "jurisdiction=US")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^eu-only\s+constrain\s+1\s+yes\s+yes\s+false\s+no$`, out)
	// A principal not stored is explained as its subject alone; an account explain may not
	// read (a viewer lacks identity.read) is an error, not an explanation without it.
	out, stderr, err = st.cli(t, adminKey, "explain", "--principal", "user:nobody", "--model", "gpt-eu")
	require.NoError(t, err, stderr)
	assert.Contains(t, out, "decision: allow")
	_, stderr, err = st.cli(t, viewerKey, "explain", "--principal", "user:alice", "--model", "gpt-eu")
	require.ErrorIs(t, err, errAdminCall)
	assert.Contains(t, stderr, "PERMISSION_DENIED")
	assert.Contains(t, stderr, "identity.read")

	out, _, err = st.cli(t, adminKey, "licenses", "list", "--team", "research")
	require.NoError(t, err)
	assert.Regexp(t, `(?m)^research\s+gpt-eu\s+Sim EULA\s+1\.0\s+user:admin\s+`, out)

	// A viewer may read models but not change keys: the refusal says which permission.
	_, stderr, err = st.cli(t, viewerKey, "keys", "revoke", "alice-cli")
	require.ErrorIs(t, err, errAdminCall)
	assert.Contains(t, stderr, "PERMISSION_DENIED")
	assert.Contains(t, stderr, "keys.write")
	_, stderr, err = st.cli(t, adminKey, "keys", "get", "nope")
	require.ErrorIs(t, err, errAdminCall)
	assert.Contains(t, stderr, "NOT_FOUND")
	_, stderr, err = st.cli(t, adminKey, "keys", "create", "--owner", "user:nobody")
	require.ErrorIs(t, err, errAdminCall)
	assert.Contains(t, stderr, "owner_id")
}

// apply against the Postgres stores: the same file twice changes nothing the second time.
func TestApplyOnPostgres(t *testing.T) {
	dbURL := auditDatabase(t)
	require.NoError(t, run(t.Context(), []string{"migrate", "--postgres.url", dbURL}, io.Discard, io.Discard))
	st := startAdminStack(t, dbURL)
	testApplyTwice(t, st)
}

// `fmgate serve --resources` seeds every kind too, and what it seeds is what apply would
// make: applying the same file then changes nothing.
func TestServeSeedsWhatApplyDeclares(t *testing.T) {
	doc := strings.Replace(applyResources, "models:\n", "models:\n  - {organization: acme, name: demo, vendor: sim, lifecycle: approved, endpoints: [eu-sim]}\n", 1)
	doc = strings.Replace(doc, "api_keys:\n", "api_keys:\n  - {organization: acme, id: viewer, subject: \"user:viewer\", kind: user, roles: [viewer], secret_env: FMGATE_TEST_VIEWER_KEY}\n", 1)
	st := startAdminStackWith(t, "", doc)
	out, stderr, err := st.cli(t, adminKey, "apply", "-f", st.writeResources(t, doc))
	require.NoError(t, err, "%s%s", out, stderr)
	assert.Contains(t, out, "+ api key acme/alice-cli created", "keys without a secret are left to apply")
	assert.Contains(t, out, "apply: 2 created, 0 updated, 11 unchanged, 2 skipped, 0 failed", out)
}

// allPages asks for each page with the token the one before gave, until a page gives none,
// and stops at the first error.
func TestAllPages(t *testing.T) {
	pages := map[string]struct {
		items []int
		next  string
	}{"": {[]int{1, 2}, "b"}, "b": {[]int{3}, "c"}, "c": {nil, ""}}
	var asked []string
	got, err := allPages(func(token string) ([]int, string, error) {
		asked = append(asked, token)
		return pages[token].items, pages[token].next, nil
	})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2, 3}, got)
	assert.Equal(t, []string{"", "b", "c"}, asked)

	refused := errors.New("refused")
	_, err = allPages(func(token string) ([]int, string, error) {
		if token == "b" {
			return nil, "", refused
		}
		return []int{1}, "b", nil
	})
	require.ErrorIs(t, err, refused)
}
