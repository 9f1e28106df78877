package identity_test

import (
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/fmgate/fmgate/gen/fmgate/admin/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/services/identity"
	"github.com/fmgate/fmgate/services/identity/identitymem"
)

// badFields returns the fields an INVALID_ARGUMENT error names, failing on another code.
func badFields(t *testing.T, err error) []string {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
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

func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func TestOrganizations(t *testing.T) {
	c := serve(t, identitymem.New()).client
	_, err := c.GetOrganization(t.Context(), &identityv1.GetOrganizationRequest{OrganizationId: "acme"})
	assert.Equal(t, codes.NotFound, status.Code(err), "an organisation without a record is not found")

	created, err := c.CreateOrganization(t.Context(), &identityv1.CreateOrganizationRequest{
		Organization: &identityv1.Organization{OrganizationId: "acme", DisplayName: "Acme"}})
	require.NoError(t, err)
	assert.Nil(t, created.GetBefore())
	assert.Equal(t, now, created.GetAfter().GetCreateTime().AsTime())
	_, err = c.CreateOrganization(t.Context(), &identityv1.CreateOrganizationRequest{
		Organization: &identityv1.Organization{OrganizationId: "acme"}})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))
	assert.Equal(t, []string{"organization.organization_id"}, badFields(t, func() error {
		_, err := c.CreateOrganization(t.Context(), &identityv1.CreateOrganizationRequest{Organization: &identityv1.Organization{OrganizationId: "A C"}})
		return err
	}()))

	got, err := c.GetOrganization(t.Context(), &identityv1.GetOrganizationRequest{OrganizationId: "acme"})
	require.NoError(t, err)
	assert.True(t, proto.Equal(created.GetAfter(), got.GetOrganization()))

	upd, err := c.UpdateOrganization(t.Context(), &identityv1.UpdateOrganizationRequest{
		Organization: &identityv1.Organization{OrganizationId: "acme", DisplayName: "Acme Bank", Etag: got.GetOrganization().GetEtag()},
		UpdateMask:   mask("display_name"),
	})
	require.NoError(t, err)
	assert.Equal(t, "Acme", upd.GetBefore().GetDisplayName())
	assert.Equal(t, "Acme Bank", upd.GetAfter().GetDisplayName())
	_, err = c.UpdateOrganization(t.Context(), &identityv1.UpdateOrganizationRequest{
		Organization: &identityv1.Organization{OrganizationId: "acme", DisplayName: "Stale", Etag: got.GetOrganization().GetEtag()},
	})
	assert.Equal(t, codes.Aborted, status.Code(err), "the etag read before the update is stale")
}

func TestTeamsAdmin(t *testing.T) {
	f := serve(t, identitymem.New())
	c := f.client
	for _, id := range []string{"risk", "ml", "ops"} {
		resp, err := c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{Team: &identityv1.Team{
			OrganizationId: "acme", Id: id, DisplayName: "Team " + id, Attributes: map[string]string{"jurisdiction": "eu"}}})
		require.NoError(t, err)
		assert.NotEmpty(t, resp.GetAfter().GetEtag())
	}
	_, err := c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{Team: &identityv1.Team{OrganizationId: "acme", Id: "ml"}})
	assert.Equal(t, codes.AlreadyExists, status.Code(err))
	_, err = c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{})
	assert.Equal(t, []string{"team"}, badFields(t, err))
	_, err = c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{Team: &identityv1.Team{Id: "Bad Id", Attributes: map[string]string{"": "x"}}})
	assert.ElementsMatch(t, []string{"team.organization_id", "team.id", "team.attributes"}, badFields(t, err))

	var ids []string
	token := ""
	for range 4 {
		resp, err := c.ListTeams(t.Context(), &identityv1.ListTeamsRequest{OrganizationId: "acme", PageSize: 2, PageToken: token})
		require.NoError(t, err)
		for _, tm := range resp.GetTeams() {
			ids = append(ids, tm.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	assert.Equal(t, []string{"ml", "ops", "risk"}, ids)

	_, err = c.GetTeam(t.Context(), &identityv1.GetTeamRequest{OrganizationId: "other", Id: "ml"})
	assert.Equal(t, codes.NotFound, status.Code(err), "another organisation's team")
	got, err := c.GetTeam(t.Context(), &identityv1.GetTeamRequest{OrganizationId: "acme", Id: "ml"})
	require.NoError(t, err)

	_, err = c.UpdateTeam(t.Context(), &identityv1.UpdateTeamRequest{
		Team: &identityv1.Team{OrganizationId: "acme", Id: "ml"}, UpdateMask: mask("display_name", "id", "nonsense")})
	assert.Equal(t, []string{"update_mask.paths[1]", "update_mask.paths[2]"}, badFields(t, err))
	upd, err := c.UpdateTeam(t.Context(), &identityv1.UpdateTeamRequest{
		Team:       &identityv1.Team{OrganizationId: "acme", Id: "ml", DisplayName: "ignored", Attributes: map[string]string{"handles_phi": "true"}, Etag: got.GetTeam().GetEtag()},
		UpdateMask: mask("attributes"),
	})
	require.NoError(t, err)
	assert.Equal(t, "Team ml", upd.GetAfter().GetDisplayName(), "only the masked field changes")
	assert.Equal(t, map[string]string{"handles_phi": "true"}, upd.GetAfter().GetAttributes())
	assert.Equal(t, map[string]string{"jurisdiction": "eu"}, upd.GetBefore().GetAttributes())
	assert.NotEqual(t, upd.GetBefore().GetEtag(), upd.GetAfter().GetEtag())

	owners(t, f.store, "acme", "user:alice")
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice", TeamId: "ml"},
		UpdateMask: mask("team_id")})
	require.NoError(t, err)
	_, err = c.DeleteTeam(t.Context(), &identityv1.DeleteTeamRequest{OrganizationId: "acme", Id: "ml"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "user:alice", "the refusal names the members")
	assert.Equal(t, identity.ReasonInUse, reasonOf(err))

	_, err = c.DeleteTeam(t.Context(), &identityv1.DeleteTeamRequest{OrganizationId: "acme", Id: "ops", Etag: "stale"})
	assert.Equal(t, codes.Aborted, status.Code(err))
	del, err := c.DeleteTeam(t.Context(), &identityv1.DeleteTeamRequest{OrganizationId: "acme", Id: "ops"})
	require.NoError(t, err)
	assert.Equal(t, "ops", del.GetBefore().GetId())
	assert.Nil(t, del.GetAfter())
}

func TestUsersAndServiceAccountsAdmin(t *testing.T) {
	c := serve(t, identitymem.New()).client
	_, err := c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{Team: &identityv1.Team{OrganizationId: "acme", Id: "ml"}})
	require.NoError(t, err)

	_, err = c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{
		OrganizationId: "acme", Id: "alice", Email: "not an email", TeamId: "nowhere", Roles: []string{"viewer", "clerk"}}})
	assert.ElementsMatch(t, []string{"user.email"}, badFields(t, err), "shape first")
	_, err = c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{
		OrganizationId: "acme", Id: "alice", Email: "alice@example.com", TeamId: "nowhere", Roles: []string{"viewer", "clerk"}}})
	assert.ElementsMatch(t, []string{"user.team_id", "user.roles[1]"}, badFields(t, err), "then references")

	created, err := c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{
		OrganizationId: "acme", Id: "alice", Email: "alice@example.com", TeamId: "ml", Roles: []string{"developer"},
		Attributes: map[string]string{"jurisdiction": "us-ca"}}})
	require.NoError(t, err)
	assert.Equal(t, "ml", created.GetAfter().GetTeamId())

	sa, err := c.CreateServiceAccount(t.Context(), &identityv1.CreateServiceAccountRequest{ServiceAccount: &identityv1.ServiceAccount{
		OrganizationId: "acme", Id: "alice", TeamId: "ml", Roles: []string{"viewer"}}})
	require.NoError(t, err, "a service account may share a user's id")
	assert.Equal(t, []string{"viewer"}, sa.GetAfter().GetRoles())

	users, err := c.ListUsers(t.Context(), &identityv1.ListUsersRequest{OrganizationId: "acme"})
	require.NoError(t, err)
	require.Len(t, users.GetUsers(), 1)
	sas, err := c.ListServiceAccounts(t.Context(), &identityv1.ListServiceAccountsRequest{OrganizationId: "acme"})
	require.NoError(t, err)
	require.Len(t, sas.GetServiceAccounts(), 1)

	upd, err := c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{
		User:       &identityv1.User{OrganizationId: "acme", Id: "alice", Disabled: true, Etag: created.GetAfter().GetEtag()},
		UpdateMask: mask("disabled")})
	require.NoError(t, err)
	assert.False(t, upd.GetBefore().GetDisabled())
	assert.True(t, upd.GetAfter().GetDisabled())
	assert.Equal(t, "alice@example.com", upd.GetAfter().GetEmail())
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{
		User: &identityv1.User{OrganizationId: "acme", Id: "alice", Etag: created.GetAfter().GetEtag()}, UpdateMask: mask("disabled")})
	assert.Equal(t, codes.Aborted, status.Code(err))
	_, err = c.UpdateServiceAccount(t.Context(), &identityv1.UpdateServiceAccountRequest{
		ServiceAccount: &identityv1.ServiceAccount{OrganizationId: "acme", Id: "alice"}, UpdateMask: mask("email")})
	assert.Equal(t, []string{"update_mask.paths[0]"}, badFields(t, err), "service accounts have no email")
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{
		User: &identityv1.User{OrganizationId: "other", Id: "alice"}, UpdateMask: mask("disabled")})
	assert.Equal(t, codes.NotFound, status.Code(err), "another organisation's user")

	_, err = c.GetServiceAccount(t.Context(), &identityv1.GetServiceAccountRequest{OrganizationId: "acme", Id: "nobody"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	del, err := c.DeleteServiceAccount(t.Context(), &identityv1.DeleteServiceAccountRequest{OrganizationId: "acme", Id: "alice"})
	require.NoError(t, err)
	assert.Equal(t, "alice", del.GetBefore().GetId())
	_, err = c.GetUser(t.Context(), &identityv1.GetUserRequest{OrganizationId: "acme", Id: "alice"})
	require.NoError(t, err, "the user of the same id stays")
}

func TestRolesAdmin(t *testing.T) {
	f := serve(t, identitymem.New())
	c := f.client
	_, err := c.CreateRole(t.Context(), &identityv1.CreateRoleRequest{Role: &identityv1.Role{
		OrganizationId: "acme", Id: "viewer", Permissions: []string{"models.fly"}}})
	assert.ElementsMatch(t, []string{"role.id", "role.scope", "role.permissions"}, badFields(t, err))
	created, err := c.CreateRole(t.Context(), &identityv1.CreateRoleRequest{Role: &identityv1.Role{
		OrganizationId: "acme", Id: "eula-clerk", DisplayName: "EULA clerk", Permissions: []string{"eula.accept"},
		Scope: identityv1.RoleScope_ROLE_SCOPE_TEAM, Builtin: true}})
	require.NoError(t, err)
	assert.False(t, created.GetAfter().GetBuiltin(), "builtin is output only")

	var roles []*identityv1.Role
	token := ""
	for range 10 {
		resp, err := c.ListRoles(t.Context(), &identityv1.ListRolesRequest{OrganizationId: "acme", PageSize: 3, PageToken: token})
		require.NoError(t, err)
		roles = append(roles, resp.GetRoles()...)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	var ids []string
	for _, r := range roles {
		ids = append(ids, r.GetId())
		if r.GetId() == "eula-clerk" {
			assert.False(t, r.GetBuiltin())
			continue
		}
		assert.True(t, r.GetBuiltin(), r.GetId())
		want := identityv1.RoleScope_ROLE_SCOPE_ORGANIZATION
		if r.GetId() == "developer" || r.GetId() == "viewer" {
			want = identityv1.RoleScope_ROLE_SCOPE_TEAM
		}
		assert.Equal(t, want, r.GetScope(), r.GetId())
	}
	assert.Equal(t, []string{"auditor", "developer", "eula-clerk", "model_admin", "org_admin", "policy_admin", "viewer"}, ids)
	other, err := c.ListRoles(t.Context(), &identityv1.ListRolesRequest{OrganizationId: "other"})
	require.NoError(t, err)
	assert.Len(t, other.GetRoles(), 6, "another organisation sees only the built-in roles")

	got, err := c.GetRole(t.Context(), &identityv1.GetRoleRequest{OrganizationId: "acme", Id: "org_admin"})
	require.NoError(t, err)
	assert.True(t, got.GetRole().GetBuiltin())
	assert.Len(t, got.GetRole().GetPermissions(), len(identity.Permissions))
	_, err = c.UpdateRole(t.Context(), &identityv1.UpdateRoleRequest{Role: &identityv1.Role{OrganizationId: "acme", Id: "viewer"}})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "built-in roles are read-only")
	_, err = c.DeleteRole(t.Context(), &identityv1.DeleteRoleRequest{OrganizationId: "acme", Id: "viewer"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))

	upd, err := c.UpdateRole(t.Context(), &identityv1.UpdateRoleRequest{
		Role:       &identityv1.Role{OrganizationId: "acme", Id: "eula-clerk", Permissions: []string{"eula.accept", "models.read"}},
		UpdateMask: mask("permissions")})
	require.NoError(t, err)
	assert.Equal(t, []string{"eula.accept", "models.read"}, upd.GetAfter().GetPermissions())
	assert.Equal(t, identityv1.RoleScope_ROLE_SCOPE_TEAM, upd.GetAfter().GetScope())

	_, err = c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "carol", Roles: []string{"eula-clerk"}}})
	require.NoError(t, err)
	_, err = c.DeleteRole(t.Context(), &identityv1.DeleteRoleRequest{OrganizationId: "acme", Id: "eula-clerk"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err))
	assert.Contains(t, status.Convert(err).Message(), "user:carol", "the refusal names the holders")
}

// authAs creates a key for the account sub ("user:alice") through the API and returns its
// secret.
func authAs(t *testing.T, c identityv1.IdentityServiceClient, org, sub string) string {
	t.Helper()
	kind, id := identityv1.PrincipalKind_PRINCIPAL_KIND_USER, sub[len("user:"):]
	if sub[:4] == "svc:" {
		kind, id = identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, sub[len("svc:"):]
	}
	return createKey(t, c, &identityv1.CreateApiKeyRequest{OrganizationId: org, OwnerKind: kind, OwnerId: id}).GetSecret()
}

func authenticate(t *testing.T, c identityv1.IdentityServiceClient, secret string) *identityv1.Principal {
	t.Helper()
	resp, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: secret})
	require.NoError(t, err)
	return resp.GetPrincipal()
}

func TestAuthenticateFollowsOwner(t *testing.T) {
	f := serve(t, identitymem.New())
	c := f.client
	_, err := c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{Team: &identityv1.Team{
		OrganizationId: "acme", Id: "ml", Attributes: map[string]string{"jurisdiction": "eu", "handles_phi": "true"}}})
	require.NoError(t, err)
	_, err = c.CreateRole(t.Context(), &identityv1.CreateRoleRequest{Role: &identityv1.Role{OrganizationId: "acme", Id: "key-keeper",
		Permissions: []string{"keys.read", "keys.write", "models.use"}, Scope: identityv1.RoleScope_ROLE_SCOPE_TEAM}})
	require.NoError(t, err)
	_, err = c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice",
		TeamId: "ml", Roles: []string{"auditor", "key-keeper"}, Attributes: map[string]string{"jurisdiction": "us-ca"}}})
	require.NoError(t, err)
	secret := authAs(t, c, "acme", "user:alice")
	_, err = c.AcceptLicense(t.Context(), &identityv1.AcceptLicenseRequest{OrganizationId: "acme", TeamId: "ml", Model: "llama-3",
		LicenseName: "Llama 3", LicenseVersion: "1", AcceptedBy: "user:alice"})
	require.NoError(t, err)

	p := authenticate(t, c, secret)
	assert.Equal(t, "user:alice", p.GetSubject())
	assert.Equal(t, "ml", p.GetTeamId())
	assert.Equal(t, []string{"auditor", "key-keeper"}, p.GetRoles())
	assert.Equal(t, map[string]string{"jurisdiction": "us-ca", "handles_phi": "true"}, p.GetAttributes(),
		"the team's attributes, overridden by the user's")
	assert.Equal(t, []string{"audit.read", "identity.read", "keys.read", "models.read", "policies.read", "quota.read"}, p.GetPermissions())
	assert.Equal(t, []string{"keys.write", "models.use"}, p.GetTeamPermissions(), "team permissions omit those held org-wide")
	require.Len(t, p.GetAcceptedLicenses(), 1)
	assert.Equal(t, "llama-3", p.GetAcceptedLicenses()[0].GetModel())

	// A role change applies at the next authentication.
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice",
		Roles: []string{"developer"}}, UpdateMask: mask("roles", "team_id")})
	require.NoError(t, err)
	p = authenticate(t, c, secret)
	assert.Empty(t, p.GetTeamId())
	assert.Equal(t, []string{"developer"}, p.GetRoles())
	assert.Empty(t, p.GetPermissions())
	assert.Empty(t, p.GetTeamPermissions(), "a team role grants nothing without a team")
	assert.Empty(t, p.GetAcceptedLicenses())
	assert.Equal(t, map[string]string{"jurisdiction": "us-ca"}, p.GetAttributes())

	// So does a change of a custom role's permissions.
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice",
		Roles: []string{"key-keeper"}, TeamId: "ml"}, UpdateMask: mask("roles", "team_id")})
	require.NoError(t, err)
	_, err = c.UpdateRole(t.Context(), &identityv1.UpdateRoleRequest{Role: &identityv1.Role{OrganizationId: "acme", Id: "key-keeper",
		Scope: identityv1.RoleScope_ROLE_SCOPE_ORGANIZATION}, UpdateMask: mask("scope")})
	require.NoError(t, err)
	p = authenticate(t, c, secret)
	assert.Equal(t, []string{"keys.read", "keys.write", "models.use"}, p.GetPermissions())
	assert.Empty(t, p.GetTeamPermissions())

	refused := func(why string) {
		t.Helper()
		_, err := c.Authenticate(t.Context(), &identityv1.AuthenticateRequest{Credential: secret})
		st := status.Convert(err)
		assert.Equal(t, codes.Unauthenticated, st.Code(), why)
		assert.Equal(t, "invalid credential", st.Message(), why)
		assert.Equal(t, identity.ReasonInvalidAPIKey, reasonOf(err))
	}
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice", Disabled: true},
		UpdateMask: mask("disabled")})
	require.NoError(t, err)
	refused("a disabled user's key is refused")
	assert.Contains(t, f.logs.String(), `"refused":"owner_disabled"`)
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice"},
		UpdateMask: mask("disabled")})
	require.NoError(t, err)
	authenticate(t, c, secret)
	_, err = c.DeleteUser(t.Context(), &identityv1.DeleteUserRequest{OrganizationId: "acme", Id: "alice"})
	require.NoError(t, err)
	refused("a deleted user's key is refused")
	_, err = c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "alice"}})
	require.NoError(t, err)
	refused("a user created again under the same id does not bring the old keys back")
}

func TestAuthenticateSeededKeyKeepsItsOwnRoles(t *testing.T) {
	f := serve(t, identitymem.New())
	k, secret := newSeededKey(t)
	require.NoError(t, f.store.PutAPIKey(t.Context(), k))
	p := authenticate(t, f.client, secret)
	assert.Equal(t, "team-a", p.GetTeamId())
	assert.Equal(t, []string{"viewer", "model_admin"}, p.GetRoles())
	assert.Equal(t, []string{"eula.accept", "hosting.request", "models.read", "models.use", "models.write", "quota.read"}, p.GetPermissions())
	assert.Equal(t, []string{"policies.read"}, p.GetTeamPermissions())
	assert.Equal(t, map[string]string{"jurisdiction": "eu", "cost_centre": "cc-42"}, p.GetAttributes())
}

func newSeededKey(t *testing.T) (identity.APIKey, string) {
	secret, err := identity.NewKey()
	require.NoError(t, err)
	return identity.APIKey{
		ID: "seeded", OrganizationID: "acme", Subject: "svc:seeded", Kind: identity.KindServiceAccount, TeamID: "team-a",
		Roles: []string{"viewer", "model_admin"}, Attributes: map[string]string{"jurisdiction": "eu", "cost_centre": "cc-42"},
		Prefix: identity.Prefix(secret), Hash: identity.HashKey(secret), CreateTime: now,
	}, secret
}

func TestApiKeysConfinedToTeam(t *testing.T) {
	f := serve(t, identitymem.New())
	c := f.client
	for _, team := range []string{"red", "blue"} {
		_, err := c.CreateTeam(t.Context(), &identityv1.CreateTeamRequest{Team: &identityv1.Team{OrganizationId: "acme", Id: team}})
		require.NoError(t, err)
	}
	for _, u := range []struct{ id, team string }{{"rita", "red"}, {"bob", "blue"}} {
		_, err := c.CreateUser(t.Context(), &identityv1.CreateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: u.id, TeamId: u.team}})
		require.NoError(t, err)
	}
	_, err := c.CreateServiceAccount(t.Context(), &identityv1.CreateServiceAccountRequest{ServiceAccount: &identityv1.ServiceAccount{
		OrganizationId: "acme", Id: "old-bot", Disabled: true}})
	require.NoError(t, err)
	user := identityv1.PrincipalKind_PRINCIPAL_KIND_USER

	_, err = c.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{OrganizationId: "acme", OwnerKind: user, OwnerId: "bob", TeamId: "red"})
	assert.Equal(t, codes.NotFound, status.Code(err), "bob is not in red")
	assert.Contains(t, status.Convert(err).Message(), "owner_id")
	assert.Equal(t, identity.ReasonOwnerNotFound, reasonOf(err))
	_, err = c.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{OrganizationId: "acme", OwnerKind: user, OwnerId: "nobody"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = c.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{OrganizationId: "other", OwnerKind: user, OwnerId: "rita"})
	assert.Equal(t, codes.NotFound, status.Code(err), "rita is not of another organisation")
	_, err = c.CreateApiKey(t.Context(), &identityv1.CreateApiKeyRequest{OrganizationId: "acme",
		OwnerKind: identityv1.PrincipalKind_PRINCIPAL_KIND_SERVICE_ACCOUNT, OwnerId: "old-bot"})
	assert.Equal(t, codes.FailedPrecondition, status.Code(err), "a disabled owner gets no key")
	assert.Equal(t, identity.ReasonOwnerDisabled, reasonOf(err))

	red := createKey(t, c, &identityv1.CreateApiKeyRequest{OrganizationId: "acme", ApiKeyId: "rita-1", OwnerKind: user, OwnerId: "rita", TeamId: "red"})
	assert.Equal(t, "red", red.GetApiKey().GetTeamId())
	assert.True(t, proto.Equal(red.GetApiKey(), red.GetAfter()), "after holds the key, for the audit record")
	createKey(t, c, &identityv1.CreateApiKeyRequest{OrganizationId: "acme", ApiKeyId: "bob-1", OwnerKind: user, OwnerId: "bob"})

	list, err := c.ListApiKeys(t.Context(), &identityv1.ListApiKeysRequest{OrganizationId: "acme", TeamId: "red"})
	require.NoError(t, err)
	require.Len(t, list.GetApiKeys(), 1)
	assert.Equal(t, "rita-1", list.GetApiKeys()[0].GetApiKeyId())

	_, err = c.GetApiKey(t.Context(), &identityv1.GetApiKeyRequest{OrganizationId: "acme", ApiKeyId: "bob-1", TeamId: "red"})
	assert.Equal(t, codes.NotFound, status.Code(err), "a key of another team")
	got, err := c.GetApiKey(t.Context(), &identityv1.GetApiKeyRequest{OrganizationId: "acme", ApiKeyId: "bob-1"})
	require.NoError(t, err)
	assert.Equal(t, "blue", got.GetApiKey().GetTeamId())
	_, err = c.GetApiKey(t.Context(), &identityv1.GetApiKeyRequest{OrganizationId: "other", ApiKeyId: "bob-1"})
	assert.Equal(t, codes.NotFound, status.Code(err))

	_, err = c.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "acme", ApiKeyId: "bob-1", TeamId: "red"})
	assert.Equal(t, codes.NotFound, status.Code(err))
	got, err = c.GetApiKey(t.Context(), &identityv1.GetApiKeyRequest{OrganizationId: "acme", ApiKeyId: "bob-1"})
	require.NoError(t, err)
	assert.Nil(t, got.GetApiKey().GetRevokeTime(), "red cannot revoke blue's key")
	rev, err := c.RevokeApiKey(t.Context(), &identityv1.RevokeApiKeyRequest{OrganizationId: "acme", ApiKeyId: "rita-1", TeamId: "red"})
	require.NoError(t, err)
	assert.Nil(t, rev.GetBefore().GetRevokeTime())
	assert.Equal(t, now, rev.GetAfter().GetRevokeTime().AsTime())

	// Bob moves to red: his keys follow him.
	_, err = c.UpdateUser(t.Context(), &identityv1.UpdateUserRequest{User: &identityv1.User{OrganizationId: "acme", Id: "bob", TeamId: "red"},
		UpdateMask: mask("team_id")})
	require.NoError(t, err)
	list, err = c.ListApiKeys(t.Context(), &identityv1.ListApiKeysRequest{OrganizationId: "acme", TeamId: "red"})
	require.NoError(t, err)
	assert.Len(t, list.GetApiKeys(), 2)
}

func TestLicenseAcceptancesAdmin(t *testing.T) {
	c := serve(t, identitymem.New()).client
	req := &identityv1.AcceptLicenseRequest{OrganizationId: "acme", TeamId: "ml", Model: "llama-3",
		LicenseName: "Llama 3 Community", LicenseVersion: "1", AcceptedBy: "user:alice"}
	first, err := c.AcceptLicense(t.Context(), req)
	require.NoError(t, err)
	assert.Nil(t, first.GetBefore())
	assert.Equal(t, now, first.GetAfter().GetAcceptTime().AsTime())
	req.AcceptedBy = "user:bob"
	again, err := c.AcceptLicense(t.Context(), req)
	require.NoError(t, err)
	assert.True(t, proto.Equal(first.GetAfter(), again.GetAfter()), "idempotent: the first acceptance stands")
	assert.True(t, proto.Equal(first.GetAfter(), again.GetBefore()))

	_, err = c.AcceptLicense(t.Context(), &identityv1.AcceptLicenseRequest{OrganizationId: "acme", TeamId: "Bad Team"})
	assert.ElementsMatch(t, []string{"team_id", "model", "license_name", "license_version", "accepted_by"}, badFields(t, err))

	for _, team := range []string{"risk", "ops"} {
		_, err := c.AcceptLicense(t.Context(), &identityv1.AcceptLicenseRequest{OrganizationId: "acme", TeamId: team, Model: "llama-3",
			LicenseName: "Llama 3 Community", LicenseVersion: "1", AcceptedBy: "user:alice"})
		require.NoError(t, err)
	}
	var teams []string
	token := ""
	for range 5 {
		resp, err := c.ListLicenseAcceptances(t.Context(), &identityv1.ListLicenseAcceptancesRequest{OrganizationId: "acme", PageSize: 2, PageToken: token})
		require.NoError(t, err)
		for _, a := range resp.GetLicenseAcceptances() {
			teams = append(teams, a.GetTeamId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	assert.Equal(t, []string{"ml", "ops", "risk"}, teams)
	_, err = c.ListLicenseAcceptances(t.Context(), &identityv1.ListLicenseAcceptancesRequest{OrganizationId: "acme", PageToken: "bm9wZQ"})
	assert.Equal(t, []string{"page_token"}, badFields(t, err))
	ml, err := c.ListLicenseAcceptances(t.Context(), &identityv1.ListLicenseAcceptancesRequest{OrganizationId: "acme", TeamId: "ml"})
	require.NoError(t, err)
	assert.Len(t, ml.GetLicenseAcceptances(), 1)

	revoke := &identityv1.RevokeLicenseAcceptanceRequest{OrganizationId: "other", TeamId: "ml", Model: "llama-3",
		LicenseName: "Llama 3 Community", LicenseVersion: "1"}
	_, err = c.RevokeLicenseAcceptance(t.Context(), revoke)
	assert.Equal(t, codes.NotFound, status.Code(err))
	revoke.OrganizationId = "acme"
	rev, err := c.RevokeLicenseAcceptance(t.Context(), revoke)
	require.NoError(t, err)
	assert.Equal(t, "user:alice", rev.GetBefore().GetAcceptedBy())
	_, err = c.RevokeLicenseAcceptance(t.Context(), revoke)
	assert.Equal(t, codes.NotFound, status.Code(err))
	_, err = c.RevokeLicenseAcceptance(t.Context(), &identityv1.RevokeLicenseAcceptanceRequest{OrganizationId: "acme"})
	assert.ElementsMatch(t, []string{"team_id", "model", "license_name", "license_version"}, badFields(t, err))
}

func TestAuthenticateJWTPermissions(t *testing.T) {
	is := startIssuer(t)
	store := identitymem.New()
	require.NoError(t, store.CreateRole(t.Context(), identity.Role{OrganizationID: "org-a", ID: "eula-clerk",
		Permissions: []identity.Permission{identity.PermEulaAccept, identity.PermIdentityRead}, Scope: identity.ScopeOrganization,
		CreateTime: now, UpdateTime: now}))
	require.NoError(t, store.CreateTeam(t.Context(), identity.Team{OrganizationID: "org-a", ID: "team-ml",
		Attributes: map[string]string{"handles_phi": "true"}, CreateTime: now, UpdateTime: now}))
	_, _, err := store.AcceptLicense(t.Context(), identity.LicenseAcceptance{OrganizationID: "org-a", TeamID: "team-ml", Model: "llama-3",
		LicenseName: "l", LicenseVersion: "1", AcceptedBy: "user:x", AcceptTime: now})
	require.NoError(t, err)
	cfg := issuerConfig(is)
	cfg.GroupRoles["everyone"] = []string{"viewer", "eula-clerk"}
	log, _ := testLogger(t)
	srv := identity.NewServer(store, log, identity.Config{Clock: func() time.Time { return now }, OIDCIssuers: []identity.OIDCIssuer{cfg}})
	c := identityv1.NewIdentityServiceClient(serveConn(t, srv))

	p := authenticate(t, c, sign(t, is.key, jose.RS256, is.claims(func(m map[string]any) { m["groups"] = []string{"everyone", "ml-admins"} })))
	assert.Equal(t, "team-ml", p.GetTeamId())
	assert.Equal(t, []string{"developer", "eula-clerk", "model_admin", "viewer"}, p.GetRoles())
	assert.Equal(t, []string{"eula.accept", "hosting.request", "identity.read", "models.read", "models.use", "models.write", "quota.read"},
		p.GetPermissions(), "model_admin's and the custom role's")
	assert.Equal(t, []string{"keys.read", "keys.write", "policies.read"}, p.GetTeamPermissions(), "developer's and viewer's, minus the above")
	assert.Equal(t, map[string]string{"handles_phi": "true"}, p.GetAttributes())
	require.Len(t, p.GetAcceptedLicenses(), 1)
}

// TestAdminAccessOnEveryRPC checks the contract the admin layer relies on: every RPC but
// the internal ones declares a known permission and a REST mapping; mutating RPCs name an
// audit action and answer with before and after; team fields are marked.
func TestAdminAccessOnEveryRPC(t *testing.T) {
	internal := []string{"Authenticate", "WatchRevocations"}
	reads := []string{"Get", "List"}
	methods := identityv1.File_fmgate_identity_v1_identity_proto.Services().ByName("IdentityService").Methods()
	var admin int
	for i := range methods.Len() {
		m := methods.Get(i)
		name := string(m.Name())
		access, _ := proto.GetExtension(m.Options(), adminv1.E_Access).(*adminv1.Access)
		rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
		if slices.Contains(internal, name) {
			assert.Nil(t, access, "%s is internal: no admin access", name)
			assert.Nil(t, rule, "%s is internal: no REST mapping", name)
			continue
		}
		admin++
		require.NotNil(t, access, name)
		require.NotNil(t, rule, name)
		assert.Contains(t, identity.Permissions, identity.Permission(access.GetPermission()), name)
		assert.NotEmpty(t, access.GetResourceType(), name)
		isRead := slices.ContainsFunc(reads, func(p string) bool { return len(name) > len(p) && name[:len(p)] == p })
		out := m.Output().Fields()
		if isRead {
			assert.Empty(t, access.GetAuditAction(), "%s changes nothing: no audit", name)
			continue
		}
		assert.NotEmpty(t, access.GetAuditAction(), name)
		assert.NotNil(t, out.ByName("before"), "%s answers with before", name)
		assert.NotNil(t, out.ByName("after"), "%s answers with after", name)
		if f := out.ByName("after"); f != nil {
			assert.Equal(t, protoreflect.MessageKind, f.Kind(), name)
		}
		if in := m.Input().Fields().ByName("team_id"); in != nil {
			assert.Equal(t, adminv1.FieldRole_FIELD_ROLE_TEAM, proto.GetExtension(in.Options(), adminv1.E_FieldRole), name)
		}
	}
	assert.Equal(t, 30, admin)
}
