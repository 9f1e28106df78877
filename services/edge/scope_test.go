package edge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
)

func TestCheckScope(t *testing.T) {
	scoped := &identityv1.Principal{Scopes: &identityv1.ApiKeyScopes{
		Models:     []string{"claude-*", "demo"},
		Operations: []identityv1.Operation{identityv1.Operation_OPERATION_GENERATE},
	}}
	for _, tc := range []struct {
		name  string
		p     *identityv1.Principal
		op    identityv1.Operation
		model string
		want  string // "" for allowed, else a piece of the refusal
	}{
		{"no scopes do not narrow", &identityv1.Principal{}, identityv1.Operation_OPERATION_EMBED, "anything", ""},
		{"operation and model in scope", scoped, identityv1.Operation_OPERATION_GENERATE, "claude-3", ""},
		{"exact model", scoped, identityv1.Operation_OPERATION_GENERATE, "demo", ""},
		{"model out of scope", scoped, identityv1.Operation_OPERATION_GENERATE, "gpt-4o", "may not use model gpt-4o"},
		{"operation out of scope", scoped, identityv1.Operation_OPERATION_EMBED, "demo", "may not call embed"},
		{"star covers slashes", &identityv1.Principal{Scopes: &identityv1.ApiKeyScopes{Models: []string{"*"}}},
			identityv1.Operation_OPERATION_GENERATE, "meta/llama", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkScope(tc.p, tc.op, tc.model)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			assert.Equal(t, codes.PermissionDenied, status.Code(err))
			assert.Contains(t, status.Convert(err).Message(), tc.want)
		})
	}
}
