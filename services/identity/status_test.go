package identity

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{fmt.Errorf("get: %w", ErrNotFound), codes.NotFound, "not found"},
		{fmt.Errorf("get: %w", &NotFoundError{Resource: ResourceTeam, ID: "red"}), codes.NotFound, `team "red" not found`},
		{fmt.Errorf("put: %w", ErrAlreadyExists), codes.AlreadyExists, "api key already exists"},
		{&AlreadyExistsError{Resource: ResourceUser, ID: "alice"}, codes.AlreadyExists, `user "alice" already exists`},
		{fmt.Errorf("update: %w", CheckEtag(ResourceRole, "clerk", "a", "b")), codes.Aborted,
			`update: role "clerk" changed since it was read: etag mismatch`},
		{&InUseError{Resource: ResourceRole, ID: "clerk", HeldBy: []string{"svc:bot", "user:alice"}}, codes.FailedPrecondition,
			`role "clerk" is in use, held by svc:bot, user:alice`},
		{&OwnerError{Kind: KindUser, ID: "bob", TeamID: "red"}, codes.NotFound, `owner_id: user "bob" not found in team "red"`},
		{&OwnerError{Kind: KindServiceAccount, ID: "bot", Disabled: true}, codes.FailedPrecondition, `owner_id: service account "bot" is disabled`},
		{fmt.Errorf("role %q: %w", "viewer", ErrBuiltinRole), codes.FailedPrecondition, `role "viewer": built-in roles cannot change`},
		{fmt.Errorf("get: %w", context.Canceled), codes.Canceled, "request canceled"},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded"},
		{errors.New("pq: password authentication failed"), codes.Internal, "internal error"},
		{fmt.Errorf("put: %w", APIKey{}.Validate()), codes.InvalidArgument, "invalid id: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			st := status.Convert(toStatus(tt.err))
			assert.Equal(t, tt.code, st.Code())
			assert.Equal(t, tt.msg, st.Message())
		})
	}
	assert.NoError(t, toStatus(nil))

	st := status.Convert(toStatus(APIKey{}.Validate()))
	require.Len(t, st.Details(), 1)
	br := st.Details()[0].(*errdetails.BadRequest)
	assert.Greater(t, len(br.GetFieldViolations()), 3, "every invalid field is named")
}
