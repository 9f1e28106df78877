package edge

import (
	"path"
	"slices"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

// checkScope refuses what an API key's scopes do not cover: scopes narrow a key below what
// its holder's roles and the policies allow (an empty list does not narrow). It is checked
// before any other service is asked, and a key's scope is not a secret of the organisation,
// so the refusal says what the key lacks.
func checkScope(p *identityv1.Principal, op identityv1.Operation, model string) error {
	scopes := p.GetScopes()
	if ops := scopes.GetOperations(); len(ops) > 0 && !slices.Contains(ops, op) {
		return apierr.WithReason(codes.PermissionDenied, "KEY_SCOPE", "this API key may not call "+opName(op))
	}
	if model != "" && !scopeAllowsModel(p, model) {
		return apierr.WithReason(codes.PermissionDenied, "KEY_SCOPE", "this API key may not use model "+model)
	}
	return nil
}

// scopeCoversModel reports whether a model name matches one of the patterns ("*" matches
// every name, including ones with "/").
func scopeCoversModel(patterns []string, model string) bool {
	for _, pat := range patterns {
		if pat == "*" {
			return true
		}
		if ok, err := path.Match(pat, model); err == nil && ok {
			return true
		}
	}
	return false
}

func opName(op identityv1.Operation) string {
	switch op {
	case identityv1.Operation_OPERATION_GENERATE:
		return "generate"
	case identityv1.Operation_OPERATION_EMBED:
		return "embed"
	case identityv1.Operation_OPERATION_LIST_MODELS:
		return "list models"
	}
	return op.String()
}

// scopeAllowsModel reports whether the key's model scope covers model.
func scopeAllowsModel(p *identityv1.Principal, model string) bool {
	models := p.GetScopes().GetModels()
	return len(models) == 0 || scopeCoversModel(models, model)
}
