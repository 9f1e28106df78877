package policy

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/grpctest"
)

func TestToStatus(t *testing.T) {
	raw := errors.New("connection reset")
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		field  string
	}{
		{"nil", nil, codes.OK, "", ""},
		{"not found", fmt.Errorf("get policy p: %w", ErrNotFound), codes.NotFound, "POLICY_NOT_FOUND", ""},
		{"validation", fmt.Errorf("put: %w", &ValidationError{Violations: []Violation{{Field: "effect", Description: "bad"}}}),
			codes.InvalidArgument, "", "effect"},
		{"canceled", fmt.Errorf("list: %w", context.Canceled), codes.Canceled, "", ""},
		{"deadline", fmt.Errorf("list: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := toStatus(tt.err)
			assert.Equal(t, tt.code, status.Code(err))
			assert.Equal(t, tt.reason, grpctest.ErrorInfo(err).GetReason())
			fields := append(grpctest.BadRequestFields(err), "") // the first field, or ""
			assert.Equal(t, tt.field, fields[0])
		})
	}
	t.Run("unknown", func(t *testing.T) {
		// Unknown errors reach the last interceptor untouched, which hides and logs them.
		assert.Same(t, raw, toStatus(raw))
	})
}
