package apierr

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestInvalidArgumentNamesEveryField(t *testing.T) {
	err := InvalidArgument(
		FieldViolation{Field: "model", Description: "is required"},
		FieldViolation{Field: "messages", Description: "must not be empty"},
	)
	st := status.Convert(err)
	assert.Equal(t, codes.InvalidArgument, st.Code())
	assert.Equal(t, "invalid model: is required", st.Message())
	require.Len(t, st.Details(), 1)
	br := st.Details()[0].(*errdetails.BadRequest)
	require.Len(t, br.FieldViolations, 2)
	assert.Equal(t, "messages", br.FieldViolations[1].Field)
}

func TestResourceExhaustedCarriesRetryAfter(t *testing.T) {
	err := ResourceExhausted("rate limit reached", "demo-rpm", 1500*time.Millisecond)
	assert.Equal(t, codes.ResourceExhausted, status.Code(err))
	d, ok := RetryAfter(err)
	require.True(t, ok)
	assert.Equal(t, 1500*time.Millisecond, d)

	_, ok = RetryAfter(status.Error(codes.Internal, "x"))
	assert.False(t, ok)
}

func TestWithReason(t *testing.T) {
	st := status.Convert(WithReason(codes.PermissionDenied, "MODEL_NOT_GRANTED", "no policy grants model demo"))
	assert.Equal(t, codes.PermissionDenied, st.Code())
	info := st.Details()[0].(*errdetails.ErrorInfo)
	assert.Equal(t, "MODEL_NOT_GRANTED", info.Reason)
	assert.Equal(t, Domain, info.Domain)
}
