package identity

import (
	"context"
	"errors"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/adminauth"
)

// checkKeyEscalation refuses a key that would give its creator more than the creator holds.
// A key carries its owner's roles, so whoever may create keys for another account (keys.write,
// which a developer holds for its own team) could otherwise mint a key of a teammate who is
// an organisation admin and act as one. Creating a key for oneself is always allowed; for
// another account, the caller must hold every permission the owner's roles grant, each at
// least at the owner's scope (an organisation-wide one organisation-wide).
//
// The caller comes from the admin layer, which guards every administrative RPC of a serving
// process and puts the authenticated principal in the context; a call without one (a test
// of the server alone) is not checked.
func (s *Server) checkKeyEscalation(ctx context.Context, org string, kind Kind, ownerID string) error {
	caller, ok := adminauth.PrincipalFrom(ctx)
	if !ok || caller.GetSubject() == subjectPrefix[kind]+ownerID {
		return nil
	}
	owner, err := s.store.GetAccount(ctx, org, kind, ownerID)
	if errors.Is(err, ErrNotFound) {
		return nil // the create reports the missing owner
	}
	if err != nil {
		return s.fail(ctx, "check key owner", err)
	}
	// Only the owner's custom roles matter here: asked for no team, the store reads no
	// team attributes or licence acceptances.
	g, err := s.store.Grants(ctx, org, "", owner.Roles)
	if err != nil {
		return s.fail(ctx, "check key owner", err)
	}
	orgPerms, teamPerms := PrincipalPermissions(owner.Roles, g.CustomRoles, owner.TeamID != "")
	missing := lacking(caller, orgPerms, teamPerms)
	if len(missing) == 0 {
		return nil
	}
	return status.Errorf(codes.PermissionDenied,
		"owner_id: a key for %s would grant permissions the caller does not hold (%s); the owner, or someone holding them, must create it",
		subjectPrefix[kind]+ownerID, strings.Join(missing, ", "))
}

// lacking returns the permissions of orgPerms the caller does not hold organisation-wide,
// and those of teamPerms it holds at neither scope.
func lacking(caller *identityv1.Principal, orgPerms, teamPerms []Permission) []string {
	var out []string
	for _, p := range orgPerms {
		if !slices.Contains(caller.GetPermissions(), string(p)) {
			out = append(out, string(p))
		}
	}
	for _, p := range teamPerms {
		if !slices.Contains(caller.GetPermissions(), string(p)) && !slices.Contains(caller.GetTeamPermissions(), string(p)) {
			out = append(out, string(p))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
