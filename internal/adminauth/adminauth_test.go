package adminauth

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/audit"
)

type events struct {
	mu  sync.Mutex
	got []audit.Event
}

func (e *events) Record(_ context.Context, ev audit.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, ev)
	return nil
}

func (e *events) all() []audit.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]audit.Event(nil), e.got...)
}

var principals = map[string]*identityv1.Principal{
	"admin-a": {OrganizationId: "org-a", Subject: "user:ada", Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER,
		Permissions: []string{"keys.read", "keys.write", "models.read", "models.write", "policies.write"}},
	"dev-a1": {OrganizationId: "org-a", Subject: "user:dev", TeamId: "team-1", Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER,
		TeamPermissions: []string{"keys.read", "keys.write", "models.read", "models.write"}},
	"dev-noteam": {OrganizationId: "org-a", Subject: "user:lone", TeamPermissions: []string{"keys.read"}},
	"viewer-a":   {OrganizationId: "org-a", Subject: "user:vic", Permissions: []string{"models.read"}},
	// Keys of admin-a's holder, narrowed by scopes.
	"admin-a-generate-only": {OrganizationId: "org-a", Subject: "user:ada", Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER,
		Permissions: []string{"keys.read", "keys.write", "models.read", "models.write", "policies.write"},
		Scopes:      &identityv1.ApiKeyScopes{Operations: []identityv1.Operation{identityv1.Operation_OPERATION_GENERATE}}},
	"admin-a-one-model": {OrganizationId: "org-a", Subject: "user:ada", Kind: identityv1.PrincipalKind_PRINCIPAL_KIND_USER,
		Permissions: []string{"keys.read", "keys.write", "models.read", "models.write", "policies.write"},
		Scopes:      &identityv1.ApiKeyScopes{Models: []string{"gpt-4o"}}},
}

func newGuard(t *testing.T) (*Guard, *events) {
	t.Helper()
	rec := &events{}
	authn := func(_ context.Context, cred string) (*identityv1.Principal, error) {
		if cred == "identity-down" {
			return nil, status.Error(codes.Unavailable, "connection refused")
		}
		p, ok := principals[cred]
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "invalid credential")
		}
		return proto.Clone(p).(*identityv1.Principal), nil
	}
	return New(authn, rec, slog.New(slog.NewTextHandler(io.Discard, nil))), rec
}

func withCred(cred string) context.Context {
	if cred == "" {
		return context.Background()
	}
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+cred))
}

// call runs req through the guard to a handler that records what it received and answers
// resp.
func call(t *testing.T, g *Guard, cred, method string, req proto.Message, resp proto.Message) (proto.Message, *identityv1.Principal, error) {
	t.Helper()
	var seen *identityv1.Principal
	var got proto.Message
	handler := func(ctx context.Context, r any) (any, error) {
		got = r.(proto.Message)
		seen, _ = PrincipalFrom(ctx)
		return resp, nil
	}
	_, err := g.Unary(withCred(cred), req, &grpc.UnaryServerInfo{FullMethod: method}, handler)
	return got, seen, err
}

const (
	getModel    = "/fmgate.registry.v1.RegistryService/GetModel"
	updateModel = "/fmgate.registry.v1.RegistryService/UpdateModel"
	transition  = "/fmgate.registry.v1.RegistryService/TransitionModel"
	listKeys    = "/fmgate.identity.v1.IdentityService/ListApiKeys"
	createKey   = "/fmgate.identity.v1.IdentityService/CreateApiKey"
)

func TestAuthentication(t *testing.T) {
	g, _ := newGuard(t)
	for _, tc := range []struct {
		name, cred string
		want       codes.Code
	}{
		{"no credential", "", codes.Unauthenticated},
		{"unknown credential", "nobody", codes.Unauthenticated},
		{"identity unavailable fails closed", "identity-down", codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := call(t, g, tc.cred, getModel, &registryv1.GetModelRequest{Name: "m"}, &registryv1.GetModelResponse{})
			if status.Code(err) != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A non-Bearer scheme is no credential.
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Basic admin-a"))
	_, err := g.Unary(ctx, &registryv1.GetModelRequest{}, &grpc.UnaryServerInfo{FullMethod: getModel}, func(context.Context, any) (any, error) {
		t.Fatal("handler called")
		return nil, nil
	})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Basic scheme: got %v", err)
	}
}

func TestMethodsWithoutAccessOptionAreRefused(t *testing.T) {
	g, _ := newGuard(t)
	for _, m := range []string{
		"/fmgate.registry.v1.RegistryService/ResolveRoute", // internal: no access option
		"/fmgate.registry.v1.RegistryService/NoSuchMethod",
		"/no.such.Service/Method",
	} {
		_, _, err := call(t, g, "admin-a", m, &registryv1.ResolveRouteRequest{}, &registryv1.ResolveRouteResponse{})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: got %v, want PermissionDenied", m, err)
		}
	}
}

func TestPermissionAndTenant(t *testing.T) {
	g, rec := newGuard(t)

	// The organisation is filled in when empty, and the principal reaches the handler.
	got, p, err := call(t, g, "viewer-a", getModel, &registryv1.GetModelRequest{Name: "m"}, &registryv1.GetModelResponse{})
	if err != nil {
		t.Fatal(err)
	}
	if org := got.(*registryv1.GetModelRequest).GetOrganizationId(); org != "org-a" {
		t.Fatalf("organization_id = %q, want org-a", org)
	}
	if p.GetSubject() != "user:vic" {
		t.Fatalf("principal in context = %v", p)
	}

	// Another organisation, top level or nested, is refused and the refusal audited.
	_, _, err = call(t, g, "admin-a", getModel, &registryv1.GetModelRequest{OrganizationId: "org-b", Name: "m"}, &registryv1.GetModelResponse{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "organization_id") {
		t.Fatalf("other org: got %v", err)
	}
	_, _, err = call(t, g, "admin-a", updateModel, &registryv1.UpdateModelRequest{Model: &registryv1.Model{OrganizationId: "org-b", Name: "m"}}, &registryv1.UpdateModelResponse{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "model.organization_id") {
		t.Fatalf("other org nested: got %v", err)
	}

	// A missing permission is refused, naming it.
	_, _, err = call(t, g, "viewer-a", updateModel, &registryv1.UpdateModelRequest{Model: &registryv1.Model{Name: "m"}}, &registryv1.UpdateModelResponse{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "models.write") {
		t.Fatalf("missing permission: got %v", err)
	}
	denied := 0
	for _, e := range rec.all() {
		if e.Action == "access.denied" {
			denied++
			if e.OrganizationID != "org-a" || e.Actor.Subject == "" {
				t.Errorf("denial event %+v", e)
			}
		}
	}
	if denied != 3 {
		t.Fatalf("access.denied events = %d, want 3", denied)
	}
}

// TestScopedKeysAreRefused checks that a key narrowed by scopes (which name only gateway
// calls) cannot use its holder's administrative permissions.
func TestScopedKeysAreRefused(t *testing.T) {
	g, _ := newGuard(t)
	calls := []struct {
		method    string
		req, resp proto.Message
	}{
		{getModel, &registryv1.GetModelRequest{Name: "m"}, &registryv1.GetModelResponse{}},
		{updateModel, &registryv1.UpdateModelRequest{Model: &registryv1.Model{Name: "m"}}, &registryv1.UpdateModelResponse{}},
	}
	for _, cred := range []string{"admin-a-generate-only", "admin-a-one-model"} {
		for _, c := range calls {
			_, _, err := call(t, g, cred, c.method, c.req, c.resp)
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "scoped") {
				t.Errorf("%s %s: got %v, want PERMISSION_DENIED naming the scope", cred, c.method, err)
			}
		}
	}
	// The same holder's unscoped key may.
	if _, _, err := call(t, g, "admin-a", getModel, &registryv1.GetModelRequest{Name: "m"}, &registryv1.GetModelResponse{}); err != nil {
		t.Fatalf("unscoped key: %v", err)
	}
}

func TestActorFields(t *testing.T) {
	g, _ := newGuard(t)
	got, _, err := call(t, g, "admin-a", transition, &registryv1.TransitionModelRequest{Name: "m", EvidenceNote: "eval"}, &registryv1.TransitionModelResponse{})
	if err != nil {
		t.Fatal(err)
	}
	if a := got.(*registryv1.TransitionModelRequest).GetActor(); a != "user:ada" {
		t.Fatalf("actor = %q, want the caller", a)
	}
	_, _, err = call(t, g, "admin-a", transition, &registryv1.TransitionModelRequest{Name: "m", Actor: "user:someone-else"}, &registryv1.TransitionModelResponse{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "actor") {
		t.Fatalf("claimed actor: got %v", err)
	}
	// Policy's updated_by is an actor field too.
	got, _, err = call(t, g, "admin-a", "/fmgate.policy.v1.PolicyService/DeletePolicy", &policyv1.DeletePolicyRequest{Id: "p"}, &policyv1.DeletePolicyResponse{})
	if err != nil {
		t.Fatal(err)
	}
	if u := got.(*policyv1.DeletePolicyRequest).GetUpdatedBy(); u != "user:ada" {
		t.Fatalf("updated_by = %q", u)
	}
}

func TestTeamConfinement(t *testing.T) {
	g, _ := newGuard(t)
	// A team-only holder is confined to its team: filled when empty...
	got, _, err := call(t, g, "dev-a1", listKeys, &identityv1.ListApiKeysRequest{}, &identityv1.ListApiKeysResponse{})
	if err != nil {
		t.Fatal(err)
	}
	if team := got.(*identityv1.ListApiKeysRequest).GetTeamId(); team != "team-1" {
		t.Fatalf("team_id = %q, want team-1", team)
	}
	// ...refused for another team...
	_, _, err = call(t, g, "dev-a1", listKeys, &identityv1.ListApiKeysRequest{TeamId: "team-2"}, &identityv1.ListApiKeysResponse{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "team_id") {
		t.Fatalf("other team: got %v", err)
	}
	// ...may read organisation-wide resources...
	if _, _, err := call(t, g, "dev-a1", getModel, &registryv1.GetModelRequest{Name: "m"}, &registryv1.GetModelResponse{}); err != nil {
		t.Fatalf("team read of a model: %v", err)
	}
	// ...but not change them, even holding the permission through the team.
	_, _, err = call(t, g, "dev-a1", updateModel, &registryv1.UpdateModelRequest{Model: &registryv1.Model{Name: "m"}}, &registryv1.UpdateModelResponse{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("team write of an org resource: got %v", err)
	}
	// A team-only holder without a team is refused.
	_, _, err = call(t, g, "dev-noteam", listKeys, &identityv1.ListApiKeysRequest{}, &identityv1.ListApiKeysResponse{})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("no team: got %v", err)
	}
	// An organisation-wide holder may name any team of its organisation, or none.
	got, _, err = call(t, g, "admin-a", listKeys, &identityv1.ListApiKeysRequest{TeamId: "team-2"}, &identityv1.ListApiKeysResponse{})
	if err != nil || got.(*identityv1.ListApiKeysRequest).GetTeamId() != "team-2" {
		t.Fatalf("org admin, other team: %v %v", got, err)
	}
	got, _, err = call(t, g, "admin-a", listKeys, &identityv1.ListApiKeysRequest{}, &identityv1.ListApiKeysResponse{})
	if err != nil || got.(*identityv1.ListApiKeysRequest).GetTeamId() != "" {
		t.Fatalf("org admin, no team: %v %v", got, err)
	}
}

func TestChangesAreAudited(t *testing.T) {
	g, rec := newGuard(t)
	before := &registryv1.Model{OrganizationId: "org-a", Name: "m", ContextWindow: 1000}
	after := &registryv1.Model{OrganizationId: "org-a", Name: "m", ContextWindow: 2000}
	_, _, err := call(t, g, "admin-a", updateModel, &registryv1.UpdateModelRequest{Model: &registryv1.Model{Name: "m", ContextWindow: 2000}},
		&registryv1.UpdateModelResponse{Before: before, After: after})
	if err != nil {
		t.Fatal(err)
	}
	// Reads are not recorded.
	if _, _, err := call(t, g, "admin-a", getModel, &registryv1.GetModelRequest{Name: "m"}, &registryv1.GetModelResponse{Model: after}); err != nil {
		t.Fatal(err)
	}
	evs := rec.all()
	if len(evs) != 1 {
		t.Fatalf("events = %d, want 1: %+v", len(evs), evs)
	}
	e := evs[0]
	if e.Action != "model.update" || e.Service != "registry" || e.OrganizationID != "org-a" ||
		e.Resource != (audit.Resource{Type: "model", ID: "m"}) || e.Actor != (audit.Actor{Subject: "user:ada", Kind: "user"}) {
		t.Fatalf("event %+v", e)
	}
	var b, a map[string]any
	if err := json.Unmarshal(e.Before, &b); err != nil || b["context_window"] != float64(1000) {
		t.Fatalf("before = %s (%v)", e.Before, err)
	}
	if err := json.Unmarshal(e.After, &a); err != nil || a["context_window"] != float64(2000) {
		t.Fatalf("after = %s (%v)", e.After, err)
	}
}

func TestSecretsNeverReachTheTrail(t *testing.T) {
	g, rec := newGuard(t)
	const secret = "fmg_this-is-the-secret-value-of-a-new-key-0123456789"
	resp := &identityv1.CreateApiKeyResponse{
		ApiKey: &identityv1.ApiKey{ApiKeyId: "k1", OrganizationId: "org-a"},
		After:  &identityv1.ApiKey{ApiKeyId: "k1", OrganizationId: "org-a"},
		Secret: secret,
	}
	if _, _, err := call(t, g, "admin-a", createKey, &identityv1.CreateApiKeyRequest{OwnerId: "u"}, resp); err != nil {
		t.Fatal(err)
	}
	evs := rec.all()
	if len(evs) != 1 {
		t.Fatalf("events = %d", len(evs))
	}
	raw, _ := json.Marshal(evs[0])
	if strings.Contains(string(raw), secret) {
		t.Fatalf("secret in audit event: %s", raw)
	}
	if evs[0].Resource.ID != "k1" || len(evs[0].After) == 0 {
		t.Fatalf("event %+v", evs[0])
	}
	// A response without before/after that holds a secret field is not recorded whole.
	if !holdsSecret((&identityv1.CreateApiKeyResponse{}).ProtoReflect().Descriptor()) {
		t.Fatal("CreateApiKeyResponse not seen as holding a secret")
	}
}

// A response without before and after, and without a secret, is recorded whole: maps and
// nested records included.
func TestResponsesWithoutBeforeAfterAreRecordedWhole(t *testing.T) {
	g, rec := newGuard(t)
	resp := &registryv1.ImportVendorModelsResponse{Created: []*registryv1.Model{
		{OrganizationId: "org-a", Name: "gpt-x", EvaluationMetrics: map[string]float64{"mmlu": 0.8}},
	}}
	if _, _, err := call(t, g, "admin-a", "/fmgate.registry.v1.RegistryService/ImportVendorModels",
		&registryv1.ImportVendorModelsRequest{EndpointId: "ep"}, resp); err != nil {
		t.Fatal(err)
	}
	evs := rec.all()
	if len(evs) != 1 {
		t.Fatalf("events = %d", len(evs))
	}
	if e := evs[0]; e.Action != "model.import" || e.Resource.ID != "ep" || !strings.Contains(string(e.After), `"gpt-x"`) || !strings.Contains(string(e.After), "mmlu") {
		t.Fatalf("event %+v after %s", e, e.After)
	}
}

func TestEtagIsNotAFieldToChange(t *testing.T) {
	g, _ := newGuard(t)
	got, _, err := call(t, g, "admin-a", updateModel, &registryv1.UpdateModelRequest{
		Model: &registryv1.Model{Name: "m", DisplayName: "x", Etag: "e1"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name", "etag"}},
	}, &registryv1.UpdateModelResponse{})
	if err != nil {
		t.Fatal(err)
	}
	req := got.(*registryv1.UpdateModelRequest)
	if paths := req.GetUpdateMask().GetPaths(); len(paths) != 1 || paths[0] != "display_name" {
		t.Fatalf("update_mask = %v, want [display_name]", paths)
	}
	if req.GetModel().GetEtag() != "e1" {
		t.Fatal("the etag itself must stay, as the precondition")
	}
	_, _, err = call(t, g, "admin-a", updateModel, &registryv1.UpdateModelRequest{
		Model: &registryv1.Model{Name: "m", Etag: "e1"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"etag"}},
	}, &registryv1.UpdateModelResponse{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a mask of only the etag: got %v, want InvalidArgument", err)
	}
}
