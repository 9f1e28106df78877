package identity

import (
	"fmt"
	"maps"
	"slices"
)

// Permission names one thing a principal may do. Names are "<resource>.<verb>".
type Permission string

const (
	PermModelsRead     Permission = "models.read"     // see models, endpoints, routes, cards
	PermModelsWrite    Permission = "models.write"    // create, change, approve, retire models and endpoints
	PermModelsUse      Permission = "models.use"      // call models through the gateway
	PermPoliciesRead   Permission = "policies.read"   // see policies and their history
	PermPoliciesWrite  Permission = "policies.write"  // create and change policies
	PermKeysRead       Permission = "keys.read"       // list API keys (never secrets)
	PermKeysWrite      Permission = "keys.write"      // create and revoke API keys
	PermIdentityRead   Permission = "identity.read"   // see teams, users, service accounts, roles
	PermIdentityWrite  Permission = "identity.write"  // change teams, users, service accounts, roles
	PermAuditRead      Permission = "audit.read"      // read and export the audit trail
	PermQuotaRead      Permission = "quota.read"      // see limits, usage and spend
	PermQuotaWrite     Permission = "quota.write"     // change limits and budgets
	PermEulaAccept     Permission = "eula.accept"     // accept a model's EULA for a team
	PermHostingRequest Permission = "hosting.request" // ask for dedicated hosting of a model
)

// Permissions lists every known Permission; custom roles may only use these.
var Permissions = []Permission{
	PermModelsRead, PermModelsWrite, PermModelsUse, PermPoliciesRead, PermPoliciesWrite,
	PermKeysRead, PermKeysWrite, PermIdentityRead, PermIdentityWrite, PermAuditRead,
	PermQuotaRead, PermQuotaWrite, PermEulaAccept, PermHostingRequest,
}

// Built-in role ids. They exist in every organisation and cannot be changed.
const (
	RoleOrgAdmin    = "org_admin"
	RoleModelAdmin  = "model_admin"
	RolePolicyAdmin = "policy_admin"
	RoleAuditor     = "auditor"
	RoleDeveloper   = "developer"
	RoleViewer      = "viewer"
)

// BuiltinRoles maps each built-in role to its permissions.
var BuiltinRoles = map[string][]Permission{
	RoleOrgAdmin: Permissions,
	RoleModelAdmin: {PermModelsRead, PermModelsWrite, PermModelsUse, PermEulaAccept,
		PermQuotaRead, PermHostingRequest},
	RolePolicyAdmin: {PermPoliciesRead, PermPoliciesWrite, PermModelsRead, PermQuotaRead},
	RoleAuditor: {PermAuditRead, PermModelsRead, PermPoliciesRead, PermKeysRead,
		PermIdentityRead, PermQuotaRead},
	RoleDeveloper: {PermModelsRead, PermModelsUse, PermKeysRead, PermKeysWrite, PermQuotaRead,
		PermEulaAccept, PermHostingRequest},
	RoleViewer: {PermModelsRead, PermPoliciesRead, PermQuotaRead},
}

// ValidatePermissions returns a *ValidationError for each unknown or repeated permission.
func ValidatePermissions(perms []Permission) []error {
	var errs []error
	for i, p := range perms {
		switch {
		case !slices.Contains(Permissions, p):
			errs = append(errs, &ValidationError{Field: "permissions", Problem: fmt.Sprintf("%q is not a known permission", p)})
		case slices.Contains(perms[:i], p):
			errs = append(errs, &ValidationError{Field: "permissions", Problem: fmt.Sprintf("%q is repeated", p)})
		}
	}
	return errs
}

// builtinScopes says where each built-in role's permissions apply: administrators and
// auditors across the organisation, developers and viewers within their team.
var builtinScopes = map[string]RoleScope{
	RoleOrgAdmin: ScopeOrganization, RoleModelAdmin: ScopeOrganization,
	RolePolicyAdmin: ScopeOrganization, RoleAuditor: ScopeOrganization,
	RoleDeveloper: ScopeTeam, RoleViewer: ScopeTeam,
}

var builtinNames = map[string]string{
	RoleOrgAdmin: "Organisation administrator", RoleModelAdmin: "Model administrator",
	RolePolicyAdmin: "Policy administrator", RoleAuditor: "Auditor",
	RoleDeveloper: "Developer", RoleViewer: "Viewer",
}

// BuiltinRole returns the built-in role id as a Role of organisation org.
func BuiltinRole(org, id string) (Role, bool) {
	perms, ok := BuiltinRoles[id]
	if !ok {
		return Role{}, false
	}
	return Role{
		OrganizationID: org, ID: id, DisplayName: builtinNames[id], Permissions: slices.Clone(perms),
		Scope: builtinScopes[id], Builtin: true,
	}, true
}

// BuiltinRoleIDs returns the ids of the built-in roles, sorted.
func BuiltinRoleIDs() []string { return slices.Sorted(maps.Keys(BuiltinRoles)) }

// PrincipalPermissions returns what roles grant: org, the sorted union of the permissions of
// its organisation-scoped roles, and team, that of its team-scoped roles minus those in org
// (nil when hasTeam is false: a team role grants nothing to a principal without a team).
// Each role is looked up among the built-in roles, then in custom; unknown roles grant
// nothing.
func PrincipalPermissions(roles []string, custom []Role, hasTeam bool) (org, team []Permission) {
	for _, id := range roles {
		// Read the built-in tables directly: this runs on every authentication, and
		// BuiltinRole would copy the permissions into a new Role each time.
		perms, ok := BuiltinRoles[id]
		scope := builtinScopes[id]
		if !ok {
			i := slices.IndexFunc(custom, func(c Role) bool { return c.ID == id })
			if i < 0 {
				continue
			}
			perms, scope = custom[i].Permissions, custom[i].Scope
		}
		switch scope {
		case ScopeOrganization:
			org = append(org, perms...)
		case ScopeTeam:
			if hasTeam {
				team = append(team, perms...)
			}
		}
	}
	slices.Sort(org)
	org = slices.Compact(org)
	team = slices.DeleteFunc(team, func(p Permission) bool { _, found := slices.BinarySearch(org, p); return found })
	slices.Sort(team)
	return org, slices.Compact(team)
}
