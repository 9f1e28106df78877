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

func TestEffectivePermissions(t *testing.T) {
	custom := map[string][]identity.Permission{
		"eula_clerk": {identity.PermEulaAccept},
		// A custom role cannot shadow a built-in one: the built-in wins.
		identity.RoleViewer: {identity.PermAuditRead},
	}
	got := identity.EffectivePermissions([]string{"viewer", "eula_clerk", "no-such-role"}, custom)
	assert.Equal(t, []identity.Permission{"eula.accept", "models.read", "policies.read", "quota.read"}, got)
	assert.Empty(t, identity.EffectivePermissions(nil, custom))
}
