package identity

import (
	"slices"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
)

// Conversions between the domain records and their protos. Output-only fields of a proto
// (times, etag, builtin) are ignored on the way in.

func orgProto(o Organization) *identityv1.Organization {
	return &identityv1.Organization{
		OrganizationId: o.ID, DisplayName: o.DisplayName,
		CreateTime: timeProto(o.CreateTime), UpdateTime: timeProto(o.UpdateTime), Etag: o.Etag(),
	}
}

func orgFrom(p *identityv1.Organization) Organization {
	return Organization{ID: p.GetOrganizationId(), DisplayName: p.GetDisplayName()}
}

func teamProto(t Team) *identityv1.Team {
	return &identityv1.Team{
		OrganizationId: t.OrganizationID, Id: t.ID, DisplayName: t.DisplayName, Attributes: cloneMap(t.Attributes),
		CreateTime: timeProto(t.CreateTime), UpdateTime: timeProto(t.UpdateTime), Etag: t.Etag(),
	}
}

func teamFrom(p *identityv1.Team) Team {
	return Team{OrganizationID: p.GetOrganizationId(), ID: p.GetId(), DisplayName: p.GetDisplayName(),
		Attributes: cloneMap(p.GetAttributes())}
}

func userProto(a Account) *identityv1.User {
	return &identityv1.User{
		OrganizationId: a.OrganizationID, Id: a.ID, Email: a.Email, DisplayName: a.DisplayName, TeamId: a.TeamID,
		Roles: slices.Clone(a.Roles), Attributes: cloneMap(a.Attributes), Disabled: a.Disabled,
		CreateTime: timeProto(a.CreateTime), UpdateTime: timeProto(a.UpdateTime), Etag: a.Etag(),
	}
}

func userFrom(p *identityv1.User) Account {
	return Account{OrganizationID: p.GetOrganizationId(), Kind: KindUser, ID: p.GetId(), Email: p.GetEmail(),
		DisplayName: p.GetDisplayName(), TeamID: p.GetTeamId(), Roles: slices.Clone(p.GetRoles()),
		Attributes: cloneMap(p.GetAttributes()), Disabled: p.GetDisabled()}
}

func serviceAccountProto(a Account) *identityv1.ServiceAccount {
	return &identityv1.ServiceAccount{
		OrganizationId: a.OrganizationID, Id: a.ID, DisplayName: a.DisplayName, TeamId: a.TeamID,
		Roles: slices.Clone(a.Roles), Attributes: cloneMap(a.Attributes), Disabled: a.Disabled,
		CreateTime: timeProto(a.CreateTime), UpdateTime: timeProto(a.UpdateTime), Etag: a.Etag(),
	}
}

func serviceAccountFrom(p *identityv1.ServiceAccount) Account {
	return Account{OrganizationID: p.GetOrganizationId(), Kind: KindServiceAccount, ID: p.GetId(),
		DisplayName: p.GetDisplayName(), TeamID: p.GetTeamId(), Roles: slices.Clone(p.GetRoles()),
		Attributes: cloneMap(p.GetAttributes()), Disabled: p.GetDisabled()}
}

func roleProto(r Role) *identityv1.Role {
	p := &identityv1.Role{
		OrganizationId: r.OrganizationID, Id: r.ID, DisplayName: r.DisplayName, Scope: scopeProto(r.Scope),
		Builtin: r.Builtin, CreateTime: timeProto(r.CreateTime), UpdateTime: timeProto(r.UpdateTime),
	}
	for _, perm := range r.Permissions {
		p.Permissions = append(p.Permissions, string(perm))
	}
	if !r.Builtin {
		p.Etag = r.Etag()
	}
	return p
}

func roleFrom(p *identityv1.Role) Role {
	r := Role{OrganizationID: p.GetOrganizationId(), ID: p.GetId(), DisplayName: p.GetDisplayName(), Scope: scopeFrom(p.GetScope())}
	for _, perm := range p.GetPermissions() {
		r.Permissions = append(r.Permissions, Permission(perm))
	}
	return r
}

func scopeProto(s RoleScope) identityv1.RoleScope {
	switch s {
	case ScopeOrganization:
		return identityv1.RoleScope_ROLE_SCOPE_ORGANIZATION
	case ScopeTeam:
		return identityv1.RoleScope_ROLE_SCOPE_TEAM
	}
	return identityv1.RoleScope_ROLE_SCOPE_UNSPECIFIED
}

func scopeFrom(s identityv1.RoleScope) RoleScope {
	switch s {
	case identityv1.RoleScope_ROLE_SCOPE_ORGANIZATION:
		return ScopeOrganization
	case identityv1.RoleScope_ROLE_SCOPE_TEAM:
		return ScopeTeam
	}
	return ""
}

func licenseProto(a LicenseAcceptance) *identityv1.LicenseAcceptance {
	return &identityv1.LicenseAcceptance{
		OrganizationId: a.OrganizationID, TeamId: a.TeamID, Model: a.Model, LicenseName: a.LicenseName,
		LicenseVersion: a.LicenseVersion, AcceptedBy: a.AcceptedBy, AcceptTime: timeProto(a.AcceptTime),
	}
}

func permissionStrings(ps []Permission) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}
