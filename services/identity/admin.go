package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// The administrative RPCs of organisations, teams, users, service accounts, roles and
// licence acceptances. Each mutating RPC answers with the record before and after the
// change, so that the admin layer in front of them can write the audit event.

// required returns a violation for each empty value, by field name, in order.
func required(fields ...string) []apierr.FieldViolation {
	var vs []apierr.FieldViolation
	for i := 0; i+1 < len(fields); i += 2 {
		if fields[i+1] == "" {
			vs = append(vs, apierr.FieldViolation{Field: fields[i], Description: "is required"})
		}
	}
	return vs
}

// prefixed names a record's invalid fields by their path in the request ("user.team_id")
// and turns every other error into its status.
func (s *Server) prefixed(ctx context.Context, op string, err error, prefix string) error {
	if vs := violations(err); len(vs) > 0 {
		for i := range vs {
			vs[i].Field = prefix + vs[i].Field
		}
		return apierr.InvalidArgument(vs...)
	}
	return s.fail(ctx, op, err)
}

// setter copies one field of a record from src to dst.
type setter[T any] func(dst *T, src T)

// maskSetters returns the setters an update mask names, every one of them for an empty mask
// or "*" (AIP-134: a full replacement), and a violation for each path that cannot change.
func maskSetters[T any](mask *fieldmaskpb.FieldMask, table map[string]setter[T]) ([]setter[T], []apierr.FieldViolation) {
	paths := mask.GetPaths()
	if len(paths) == 0 || (len(paths) == 1 && paths[0] == "*") {
		var out []setter[T]
		for _, p := range slices.Sorted(maps.Keys(table)) {
			out = append(out, table[p])
		}
		return out, nil
	}
	var (
		out []setter[T]
		vs  []apierr.FieldViolation
	)
	for i, p := range paths {
		set, ok := table[p]
		if !ok {
			vs = append(vs, apierr.FieldViolation{Field: fmt.Sprintf("update_mask.paths[%d]", i),
				Description: fmt.Sprintf("%q is not a field that can be updated; these can: %s",
					p, strings.Join(slices.Sorted(maps.Keys(table)), ", "))})
			continue
		}
		out = append(out, set)
	}
	return out, vs
}

var orgPaths = map[string]setter[Organization]{
	"display_name": func(d *Organization, s Organization) { d.DisplayName = s.DisplayName },
}

var teamPaths = map[string]setter[Team]{
	"display_name": func(d *Team, s Team) { d.DisplayName = s.DisplayName },
	"attributes":   func(d *Team, s Team) { d.Attributes = s.Attributes },
}

var serviceAccountPaths = map[string]setter[Account]{
	"display_name": func(d *Account, s Account) { d.DisplayName = s.DisplayName },
	"team_id":      func(d *Account, s Account) { d.TeamID = s.TeamID },
	"roles":        func(d *Account, s Account) { d.Roles = s.Roles },
	"attributes":   func(d *Account, s Account) { d.Attributes = s.Attributes },
	"disabled":     func(d *Account, s Account) { d.Disabled = s.Disabled },
}

var userPaths = func() map[string]setter[Account] {
	m := maps.Clone(serviceAccountPaths)
	m["email"] = func(d *Account, s Account) { d.Email = s.Email }
	return m
}()

var rolePaths = map[string]setter[Role]{
	"display_name": func(d *Role, s Role) { d.DisplayName = s.DisplayName },
	"permissions":  func(d *Role, s Role) { d.Permissions = s.Permissions },
	"scope":        func(d *Role, s Role) { d.Scope = s.Scope },
}

// listPage checks a list request's paging and returns the store page to ask for: one record
// more than the caller's page, to tell whether another page follows.
func listPage(size int32, token string) (Page, error) {
	n, after, err := page(size, token)
	if err != nil {
		return Page{}, err
	}
	return Page{After: after, Limit: n + 1}, nil
}

// cut trims records fetched with listPage to the caller's page and returns the next token.
func cut[T any](records []T, page Page, id func(T) string) ([]T, string) {
	if len(records) < page.Limit {
		return records, ""
	}
	records = records[:page.Limit-1]
	return records, base64.RawURLEncoding.EncodeToString([]byte(id(records[len(records)-1])))
}

// CreateOrganization implements identityv1.IdentityServiceServer.
func (s *Server) CreateOrganization(ctx context.Context, req *identityv1.CreateOrganizationRequest) (*identityv1.CreateOrganizationResponse, error) {
	if req.GetOrganization() == nil {
		return nil, apierr.Field("organization", "is required")
	}
	o := orgFrom(req.GetOrganization())
	now := NormTime(s.now())
	o.CreateTime, o.UpdateTime = now, now
	if err := s.store.CreateOrganization(ctx, o); err != nil {
		return nil, s.prefixed(ctx, "create organization", err, "organization.")
	}
	return &identityv1.CreateOrganizationResponse{After: orgProto(o)}, nil
}

// GetOrganization implements identityv1.IdentityServiceServer.
func (s *Server) GetOrganization(ctx context.Context, req *identityv1.GetOrganizationRequest) (*identityv1.GetOrganizationResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	o, err := s.store.GetOrganization(ctx, req.GetOrganizationId())
	if err != nil {
		return nil, s.fail(ctx, "get organization", err)
	}
	return &identityv1.GetOrganizationResponse{Organization: orgProto(o)}, nil
}

// UpdateOrganization implements identityv1.IdentityServiceServer.
func (s *Server) UpdateOrganization(ctx context.Context, req *identityv1.UpdateOrganizationRequest) (*identityv1.UpdateOrganizationResponse, error) {
	in := req.GetOrganization()
	vs := required("organization.organization_id", in.GetOrganizationId())
	sets, mvs := maskSetters(req.GetUpdateMask(), orgPaths)
	if vs = append(vs, mvs...); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	src := orgFrom(in)
	before, after, err := s.store.UpdateOrganization(ctx, in.GetOrganizationId(), func(cur Organization) (Organization, error) {
		if err := CheckEtag(ResourceOrganization, cur.ID, in.GetEtag(), cur.Etag()); err != nil {
			return cur, err
		}
		for _, set := range sets {
			set(&cur, src)
		}
		cur.UpdateTime = NormTime(s.now())
		return cur, nil
	})
	if err != nil {
		return nil, s.prefixed(ctx, "update organization", err, "organization.")
	}
	return &identityv1.UpdateOrganizationResponse{Before: orgProto(before), After: orgProto(after)}, nil
}

// CreateTeam implements identityv1.IdentityServiceServer.
func (s *Server) CreateTeam(ctx context.Context, req *identityv1.CreateTeamRequest) (*identityv1.CreateTeamResponse, error) {
	if req.GetTeam() == nil {
		return nil, apierr.Field("team", "is required")
	}
	t := teamFrom(req.GetTeam())
	now := NormTime(s.now())
	t.CreateTime, t.UpdateTime = now, now
	if err := s.store.CreateTeam(ctx, t); err != nil {
		return nil, s.prefixed(ctx, "create team", err, "team.")
	}
	return &identityv1.CreateTeamResponse{After: teamProto(t)}, nil
}

// GetTeam implements identityv1.IdentityServiceServer.
func (s *Server) GetTeam(ctx context.Context, req *identityv1.GetTeamRequest) (*identityv1.GetTeamResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "id", req.GetId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	t, err := s.store.GetTeam(ctx, req.GetOrganizationId(), req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "get team", err)
	}
	return &identityv1.GetTeamResponse{Team: teamProto(t)}, nil
}

// ListTeams implements identityv1.IdentityServiceServer.
func (s *Server) ListTeams(ctx context.Context, req *identityv1.ListTeamsRequest) (*identityv1.ListTeamsResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	p, err := listPage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	teams, err := s.store.ListTeams(ctx, req.GetOrganizationId(), p)
	if err != nil {
		return nil, s.fail(ctx, "list teams", err)
	}
	teams, next := cut(teams, p, func(t Team) string { return t.ID })
	resp := &identityv1.ListTeamsResponse{NextPageToken: next}
	for _, t := range teams {
		resp.Teams = append(resp.Teams, teamProto(t))
	}
	return resp, nil
}

// UpdateTeam implements identityv1.IdentityServiceServer.
func (s *Server) UpdateTeam(ctx context.Context, req *identityv1.UpdateTeamRequest) (*identityv1.UpdateTeamResponse, error) {
	in := req.GetTeam()
	vs := required("team.organization_id", in.GetOrganizationId(), "team.id", in.GetId())
	sets, mvs := maskSetters(req.GetUpdateMask(), teamPaths)
	if vs = append(vs, mvs...); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	src := teamFrom(in)
	before, after, err := s.store.UpdateTeam(ctx, in.GetOrganizationId(), in.GetId(), func(cur Team) (Team, error) {
		if err := CheckEtag(ResourceTeam, cur.ID, in.GetEtag(), cur.Etag()); err != nil {
			return cur, err
		}
		for _, set := range sets {
			set(&cur, src)
		}
		cur.UpdateTime = NormTime(s.now())
		return cur, nil
	})
	if err != nil {
		return nil, s.prefixed(ctx, "update team", err, "team.")
	}
	return &identityv1.UpdateTeamResponse{Before: teamProto(before), After: teamProto(after)}, nil
}

// DeleteTeam implements identityv1.IdentityServiceServer.
func (s *Server) DeleteTeam(ctx context.Context, req *identityv1.DeleteTeamRequest) (*identityv1.DeleteTeamResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "id", req.GetId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	before, err := s.store.DeleteTeam(ctx, req.GetOrganizationId(), req.GetId(), func(cur Team) error {
		return CheckEtag(ResourceTeam, cur.ID, req.GetEtag(), cur.Etag())
	})
	if err != nil {
		return nil, s.fail(ctx, "delete team", err)
	}
	return &identityv1.DeleteTeamResponse{Before: teamProto(before)}, nil
}

// accountRPCs are the RPCs of one kind of account, which users and service accounts share.
type accountRPCs struct {
	kind   Kind
	field  string // the request field holding the record: "user", "service_account"
	paths  map[string]setter[Account]
	server *Server
}

func (s *Server) users() accountRPCs {
	return accountRPCs{kind: KindUser, field: "user", paths: userPaths, server: s}
}

func (s *Server) serviceAccounts() accountRPCs {
	return accountRPCs{kind: KindServiceAccount, field: "service_account", paths: serviceAccountPaths, server: s}
}

func (r accountRPCs) create(ctx context.Context, a Account, present bool) (Account, error) {
	if !present {
		return a, apierr.Field(r.field, "is required")
	}
	now := NormTime(r.server.now())
	a.CreateTime, a.UpdateTime = now, now
	if err := r.server.store.CreateAccount(ctx, a); err != nil {
		return a, r.server.prefixed(ctx, "create "+string(r.kind), err, r.field+".")
	}
	return a, nil
}

func (r accountRPCs) get(ctx context.Context, org, id string) (Account, error) {
	if vs := required("organization_id", org, "id", id); len(vs) > 0 {
		return Account{}, apierr.InvalidArgument(vs...)
	}
	a, err := r.server.store.GetAccount(ctx, org, r.kind, id)
	if err != nil {
		return a, r.server.fail(ctx, "get "+string(r.kind), err)
	}
	return a, nil
}

func (r accountRPCs) list(ctx context.Context, org string, size int32, token string) ([]Account, string, error) {
	if vs := required("organization_id", org); len(vs) > 0 {
		return nil, "", apierr.InvalidArgument(vs...)
	}
	p, err := listPage(size, token)
	if err != nil {
		return nil, "", err
	}
	accounts, err := r.server.store.ListAccounts(ctx, org, r.kind, p)
	if err != nil {
		return nil, "", r.server.fail(ctx, "list "+string(r.kind), err)
	}
	accounts, next := cut(accounts, p, func(a Account) string { return a.ID })
	return accounts, next, nil
}

func (r accountRPCs) update(ctx context.Context, src Account, etag string, mask *fieldmaskpb.FieldMask) (before, after Account, err error) {
	vs := required(r.field+".organization_id", src.OrganizationID, r.field+".id", src.ID)
	sets, mvs := maskSetters(mask, r.paths)
	if vs = append(vs, mvs...); len(vs) > 0 {
		return before, after, apierr.InvalidArgument(vs...)
	}
	res := AccountResource(r.kind)
	before, after, err = r.server.store.UpdateAccount(ctx, src.OrganizationID, r.kind, src.ID, func(cur Account) (Account, error) {
		if err := CheckEtag(res, cur.ID, etag, cur.Etag()); err != nil {
			return cur, err
		}
		for _, set := range sets {
			set(&cur, src)
		}
		cur.UpdateTime = NormTime(r.server.now())
		return cur, nil
	})
	if err != nil {
		return before, after, r.server.prefixed(ctx, "update "+string(r.kind), err, r.field+".")
	}
	r.server.log.InfoContext(ctx, string(res)+" updated", "organization_id", src.OrganizationID, "id", src.ID)
	return before, after, nil
}

func (r accountRPCs) delete(ctx context.Context, org, id, etag string) (Account, error) {
	if vs := required("organization_id", org, "id", id); len(vs) > 0 {
		return Account{}, apierr.InvalidArgument(vs...)
	}
	res := AccountResource(r.kind)
	before, err := r.server.store.DeleteAccount(ctx, org, r.kind, id, r.server.now(), func(cur Account) error {
		return CheckEtag(res, cur.ID, etag, cur.Etag())
	})
	if err != nil {
		return before, r.server.fail(ctx, "delete "+string(r.kind), err)
	}
	r.server.log.InfoContext(ctx, string(res)+" deleted, its api keys revoked", "organization_id", org, "id", id)
	return before, nil
}

// CreateUser implements identityv1.IdentityServiceServer.
func (s *Server) CreateUser(ctx context.Context, req *identityv1.CreateUserRequest) (*identityv1.CreateUserResponse, error) {
	a, err := s.users().create(ctx, userFrom(req.GetUser()), req.GetUser() != nil)
	if err != nil {
		return nil, err
	}
	return &identityv1.CreateUserResponse{After: userProto(a)}, nil
}

// GetUser implements identityv1.IdentityServiceServer.
func (s *Server) GetUser(ctx context.Context, req *identityv1.GetUserRequest) (*identityv1.GetUserResponse, error) {
	a, err := s.users().get(ctx, req.GetOrganizationId(), req.GetId())
	if err != nil {
		return nil, err
	}
	return &identityv1.GetUserResponse{User: userProto(a)}, nil
}

// ListUsers implements identityv1.IdentityServiceServer.
func (s *Server) ListUsers(ctx context.Context, req *identityv1.ListUsersRequest) (*identityv1.ListUsersResponse, error) {
	accounts, next, err := s.users().list(ctx, req.GetOrganizationId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListUsersResponse{NextPageToken: next}
	for _, a := range accounts {
		resp.Users = append(resp.Users, userProto(a))
	}
	return resp, nil
}

// UpdateUser implements identityv1.IdentityServiceServer.
func (s *Server) UpdateUser(ctx context.Context, req *identityv1.UpdateUserRequest) (*identityv1.UpdateUserResponse, error) {
	before, after, err := s.users().update(ctx, userFrom(req.GetUser()), req.GetUser().GetEtag(), req.GetUpdateMask())
	if err != nil {
		return nil, err
	}
	return &identityv1.UpdateUserResponse{Before: userProto(before), After: userProto(after)}, nil
}

// DeleteUser implements identityv1.IdentityServiceServer.
func (s *Server) DeleteUser(ctx context.Context, req *identityv1.DeleteUserRequest) (*identityv1.DeleteUserResponse, error) {
	before, err := s.users().delete(ctx, req.GetOrganizationId(), req.GetId(), req.GetEtag())
	if err != nil {
		return nil, err
	}
	return &identityv1.DeleteUserResponse{Before: userProto(before)}, nil
}

// CreateServiceAccount implements identityv1.IdentityServiceServer.
func (s *Server) CreateServiceAccount(ctx context.Context, req *identityv1.CreateServiceAccountRequest) (*identityv1.CreateServiceAccountResponse, error) {
	a, err := s.serviceAccounts().create(ctx, serviceAccountFrom(req.GetServiceAccount()), req.GetServiceAccount() != nil)
	if err != nil {
		return nil, err
	}
	return &identityv1.CreateServiceAccountResponse{After: serviceAccountProto(a)}, nil
}

// GetServiceAccount implements identityv1.IdentityServiceServer.
func (s *Server) GetServiceAccount(ctx context.Context, req *identityv1.GetServiceAccountRequest) (*identityv1.GetServiceAccountResponse, error) {
	a, err := s.serviceAccounts().get(ctx, req.GetOrganizationId(), req.GetId())
	if err != nil {
		return nil, err
	}
	return &identityv1.GetServiceAccountResponse{ServiceAccount: serviceAccountProto(a)}, nil
}

// ListServiceAccounts implements identityv1.IdentityServiceServer.
func (s *Server) ListServiceAccounts(ctx context.Context, req *identityv1.ListServiceAccountsRequest) (*identityv1.ListServiceAccountsResponse, error) {
	accounts, next, err := s.serviceAccounts().list(ctx, req.GetOrganizationId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListServiceAccountsResponse{NextPageToken: next}
	for _, a := range accounts {
		resp.ServiceAccounts = append(resp.ServiceAccounts, serviceAccountProto(a))
	}
	return resp, nil
}

// UpdateServiceAccount implements identityv1.IdentityServiceServer.
func (s *Server) UpdateServiceAccount(ctx context.Context, req *identityv1.UpdateServiceAccountRequest) (*identityv1.UpdateServiceAccountResponse, error) {
	before, after, err := s.serviceAccounts().update(ctx, serviceAccountFrom(req.GetServiceAccount()),
		req.GetServiceAccount().GetEtag(), req.GetUpdateMask())
	if err != nil {
		return nil, err
	}
	return &identityv1.UpdateServiceAccountResponse{Before: serviceAccountProto(before), After: serviceAccountProto(after)}, nil
}

// DeleteServiceAccount implements identityv1.IdentityServiceServer.
func (s *Server) DeleteServiceAccount(ctx context.Context, req *identityv1.DeleteServiceAccountRequest) (*identityv1.DeleteServiceAccountResponse, error) {
	before, err := s.serviceAccounts().delete(ctx, req.GetOrganizationId(), req.GetId(), req.GetEtag())
	if err != nil {
		return nil, err
	}
	return &identityv1.DeleteServiceAccountResponse{Before: serviceAccountProto(before)}, nil
}

// CreateRole implements identityv1.IdentityServiceServer.
func (s *Server) CreateRole(ctx context.Context, req *identityv1.CreateRoleRequest) (*identityv1.CreateRoleResponse, error) {
	if req.GetRole() == nil {
		return nil, apierr.Field("role", "is required")
	}
	r := roleFrom(req.GetRole())
	now := NormTime(s.now())
	r.CreateTime, r.UpdateTime = now, now
	if err := s.store.CreateRole(ctx, r); err != nil {
		return nil, s.prefixed(ctx, "create role", err, "role.")
	}
	return &identityv1.CreateRoleResponse{After: roleProto(r)}, nil
}

// GetRole implements identityv1.IdentityServiceServer.
func (s *Server) GetRole(ctx context.Context, req *identityv1.GetRoleRequest) (*identityv1.GetRoleResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "id", req.GetId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	if r, ok := BuiltinRole(req.GetOrganizationId(), req.GetId()); ok {
		return &identityv1.GetRoleResponse{Role: roleProto(r)}, nil
	}
	r, err := s.store.GetRole(ctx, req.GetOrganizationId(), req.GetId())
	if err != nil {
		return nil, s.fail(ctx, "get role", err)
	}
	return &identityv1.GetRoleResponse{Role: roleProto(r)}, nil
}

// ListRoles implements identityv1.IdentityServiceServer: the built-in roles and the
// organisation's custom roles, merged by id (a custom role cannot take a built-in id).
func (s *Server) ListRoles(ctx context.Context, req *identityv1.ListRolesRequest) (*identityv1.ListRolesResponse, error) {
	org := req.GetOrganizationId()
	if vs := required("organization_id", org); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	p, err := listPage(req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	roles, err := s.store.ListRoles(ctx, org, p)
	if err != nil {
		return nil, s.fail(ctx, "list roles", err)
	}
	for _, id := range BuiltinRoleIDs() {
		if id > p.After {
			r, _ := BuiltinRole(org, id)
			roles = append(roles, r)
		}
	}
	slices.SortFunc(roles, func(a, b Role) int { return strings.Compare(a.ID, b.ID) })
	roles = roles[:min(len(roles), p.Limit)]
	roles, next := cut(roles, p, func(r Role) string { return r.ID })
	resp := &identityv1.ListRolesResponse{NextPageToken: next}
	for _, r := range roles {
		resp.Roles = append(resp.Roles, roleProto(r))
	}
	return resp, nil
}

// UpdateRole implements identityv1.IdentityServiceServer.
func (s *Server) UpdateRole(ctx context.Context, req *identityv1.UpdateRoleRequest) (*identityv1.UpdateRoleResponse, error) {
	in := req.GetRole()
	vs := required("role.organization_id", in.GetOrganizationId(), "role.id", in.GetId())
	sets, mvs := maskSetters(req.GetUpdateMask(), rolePaths)
	if vs = append(vs, mvs...); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	if _, ok := BuiltinRoles[in.GetId()]; ok {
		return nil, toStatus(fmt.Errorf("role %q: %w", in.GetId(), ErrBuiltinRole))
	}
	src := roleFrom(in)
	before, after, err := s.store.UpdateRole(ctx, in.GetOrganizationId(), in.GetId(), func(cur Role) (Role, error) {
		if err := CheckEtag(ResourceRole, cur.ID, in.GetEtag(), cur.Etag()); err != nil {
			return cur, err
		}
		for _, set := range sets {
			set(&cur, src)
		}
		cur.UpdateTime = NormTime(s.now())
		return cur, nil
	})
	if err != nil {
		return nil, s.prefixed(ctx, "update role", err, "role.")
	}
	return &identityv1.UpdateRoleResponse{Before: roleProto(before), After: roleProto(after)}, nil
}

// DeleteRole implements identityv1.IdentityServiceServer.
func (s *Server) DeleteRole(ctx context.Context, req *identityv1.DeleteRoleRequest) (*identityv1.DeleteRoleResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId(), "id", req.GetId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	if _, ok := BuiltinRoles[req.GetId()]; ok {
		return nil, toStatus(fmt.Errorf("role %q: %w", req.GetId(), ErrBuiltinRole))
	}
	before, err := s.store.DeleteRole(ctx, req.GetOrganizationId(), req.GetId(), func(cur Role) error {
		return CheckEtag(ResourceRole, cur.ID, req.GetEtag(), cur.Etag())
	})
	if err != nil {
		return nil, s.fail(ctx, "delete role", err)
	}
	return &identityv1.DeleteRoleResponse{Before: roleProto(before)}, nil
}

// AcceptLicense implements identityv1.IdentityServiceServer.
func (s *Server) AcceptLicense(ctx context.Context, req *identityv1.AcceptLicenseRequest) (*identityv1.AcceptLicenseResponse, error) {
	a := LicenseAcceptance{
		OrganizationID: req.GetOrganizationId(), TeamID: req.GetTeamId(), Model: req.GetModel(),
		LicenseName: req.GetLicenseName(), LicenseVersion: req.GetLicenseVersion(), AcceptedBy: req.GetAcceptedBy(),
		AcceptTime: NormTime(s.now()),
	}
	stored, existed, err := s.store.AcceptLicense(ctx, a)
	if err != nil {
		return nil, s.prefixed(ctx, "accept license", err, "")
	}
	resp := &identityv1.AcceptLicenseResponse{After: licenseProto(stored)}
	if existed {
		resp.Before = licenseProto(stored)
	} else {
		s.log.InfoContext(ctx, "license accepted", "organization_id", a.OrganizationID, "team_id", a.TeamID,
			"model", a.Model, "license_name", a.LicenseName, "license_version", a.LicenseVersion)
	}
	return resp, nil
}

// licenseToken is the page token of ListLicenseAcceptances: the last key of a page.
type licenseToken struct {
	T, M, N, V string
}

// ListLicenseAcceptances implements identityv1.IdentityServiceServer.
func (s *Server) ListLicenseAcceptances(ctx context.Context, req *identityv1.ListLicenseAcceptancesRequest) (*identityv1.ListLicenseAcceptancesResponse, error) {
	if vs := required("organization_id", req.GetOrganizationId()); len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	size, _, err := page(req.GetPageSize(), "")
	if err != nil {
		return nil, err
	}
	p := LicensePage{TeamID: req.GetTeamId(), Limit: size + 1}
	if tok := req.GetPageToken(); tok != "" {
		var t licenseToken
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || json.Unmarshal(b, &t) != nil {
			return nil, apierr.Field("page_token", "is not a token this service issued")
		}
		p.After = &LicenseKey{TeamID: t.T, Model: t.M, LicenseName: t.N, LicenseVersion: t.V}
	}
	accepted, err := s.store.ListLicenseAcceptances(ctx, req.GetOrganizationId(), p)
	if err != nil {
		return nil, s.fail(ctx, "list license acceptances", err)
	}
	accepted, next := cut(accepted, Page{Limit: p.Limit}, func(a LicenseAcceptance) string {
		k := a.Key()
		b, _ := json.Marshal(licenseToken{k.TeamID, k.Model, k.LicenseName, k.LicenseVersion}) // strings always marshal
		return string(b)
	})
	resp := &identityv1.ListLicenseAcceptancesResponse{NextPageToken: next}
	for _, a := range accepted {
		resp.LicenseAcceptances = append(resp.LicenseAcceptances, licenseProto(a))
	}
	return resp, nil
}

// RevokeLicenseAcceptance implements identityv1.IdentityServiceServer.
func (s *Server) RevokeLicenseAcceptance(ctx context.Context, req *identityv1.RevokeLicenseAcceptanceRequest) (*identityv1.RevokeLicenseAcceptanceResponse, error) {
	vs := required("organization_id", req.GetOrganizationId(), "team_id", req.GetTeamId(), "model", req.GetModel(),
		"license_name", req.GetLicenseName(), "license_version", req.GetLicenseVersion())
	if len(vs) > 0 {
		return nil, apierr.InvalidArgument(vs...)
	}
	key := LicenseKey{TeamID: req.GetTeamId(), Model: req.GetModel(), LicenseName: req.GetLicenseName(), LicenseVersion: req.GetLicenseVersion()}
	before, err := s.store.RevokeLicenseAcceptance(ctx, req.GetOrganizationId(), key)
	if err != nil {
		return nil, s.fail(ctx, "revoke license acceptance", err)
	}
	s.log.InfoContext(ctx, "license acceptance revoked", "organization_id", req.GetOrganizationId(), "team_id", key.TeamID,
		"model", key.Model, "license_version", key.LicenseVersion)
	return &identityv1.RevokeLicenseAcceptanceResponse{Before: licenseProto(before)}, nil
}
