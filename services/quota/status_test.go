package quota_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/services/quota"
)

func TestToStatus(t *testing.T) {
	assert.NoError(t, quota.ToStatus(nil))
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("reserve: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("reserve: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("%w: empty tenant", quota.ErrInvalidCounter), codes.Internal},
		{errors.New("dial tcp: connection refused"), codes.Unavailable},
	} {
		t.Run(tc.want.String(), func(t *testing.T) {
			st := status.Convert(quota.ToStatus(tc.err))
			assert.Equal(t, tc.want, st.Code())
			assert.NotContains(t, st.Message(), "connection refused", "store errors are not shown to clients")
		})
	}
}
