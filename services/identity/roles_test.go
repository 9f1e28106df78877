package identity_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/services/identity"
)

func TestBuiltinRoles(t *testing.T) {
	for role, perms := range identity.BuiltinRoles {
		assert.Empty(t, identity.ValidatePermissions(perms), role)
		assert.NotEmpty(t, perms, role)
	}
	assert.ElementsMatch(t, identity.Permissions, identity.BuiltinRoles[identity.RoleOrgAdmin], "org_admin may do everything")
	for role, perms := range identity.BuiltinRoles {
		if role == identity.RoleAuditor || role == identity.RoleOrgAdmin {
			continue
		}
		assert.NotContains(t, perms, identity.PermAuditRead, "only auditors and admins read the audit trail: %s", role)
	}
	assert.NotContains(t, identity.BuiltinRoles[identity.RoleViewer], identity.PermModelsUse, "a viewer cannot call models")
	assert.NotContains(t, identity.BuiltinRoles[identity.RoleDeveloper], identity.PermPoliciesWrite)
}

func TestValidatePermissions(t *testing.T) {
	errs := identity.ValidatePermissions([]identity.Permission{"models.use", "models.fly", "models.use", ""})
	require.Len(t, errs, 3)
	assert.ErrorContains(t, errs[0], `"models.fly" is not a known permission`)
	assert.ErrorContains(t, errs[1], `"models.use" is repeated`)
	assert.Empty(t, identity.ValidatePermissions([]identity.Permission{"audit.read", "keys.write"}))
}

func TestPrincipalPermissions(t *testing.T) {
	custom := []identity.Role{
		{ID: "eula_clerk", Scope: identity.ScopeOrganization, Permissions: []identity.Permission{identity.PermEulaAccept, identity.PermModelsRead}},
		// A custom role cannot shadow a built-in one: the built-in wins.
		{ID: identity.RoleViewer, Scope: identity.ScopeOrganization, Permissions: []identity.Permission{identity.PermAuditRead}},
	}
	roles := []string{"viewer", "eula_clerk", "no-such-role"}
	org, team := identity.PrincipalPermissions(roles, custom, true)
	assert.Equal(t, []identity.Permission{"eula.accept", "models.read"}, org)
	assert.Equal(t, []identity.Permission{"policies.read", "quota.read"}, team, "less what is held organisation-wide")

	org, team = identity.PrincipalPermissions(roles, custom, false)
	assert.Equal(t, []identity.Permission{"eula.accept", "models.read"}, org)
	assert.Nil(t, team, "a team role grants nothing to a principal without a team")

	org, team = identity.PrincipalPermissions(nil, custom, true)
	assert.Empty(t, org)
	assert.Empty(t, team)
}
