package grpctest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeReachesRegisteredService(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("fmgate.test", healthpb.HealthCheckResponse_SERVING)
	var conn *grpc.ClientConn
	t.Run("serve", func(t *testing.T) {
		conn = grpctest.Serve(t, func(r grpc.ServiceRegistrar) { healthpb.RegisterHealthServer(r, hs) })
		client := healthpb.NewHealthClient(conn)

		resp, err := client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "fmgate.test"})
		require.NoError(t, err)
		assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

		_, err = client.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "unknown"})
		assert.Equal(t, codes.NotFound, status.Code(err), "the call reached the registered server")
	})
	assert.Equal(t, connectivity.Shutdown, conn.GetState(), "the connection is closed when the test ends")
}

func TestServeAppliesServerOptions(t *testing.T) {
	refuse := grpc.UnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
		return nil, status.Error(codes.PermissionDenied, "refused")
	})
	conn := grpctest.Serve(t, func(r grpc.ServiceRegistrar) { healthpb.RegisterHealthServer(r, health.NewServer()) }, refuse)
	_, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
}

func TestLogBufferCollectsConcurrentWrites(t *testing.T) {
	var buf grpctest.LogBuffer
	const writers, lines = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				_, _ = fmt.Fprintf(&buf, "w%d-%d\n", w, i)
			}
		})
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, got, writers*lines, "no write is lost or torn")
	assert.Contains(t, got, "w0-0")
	assert.Contains(t, got, fmt.Sprintf("w%d-%d", writers-1, lines-1))
}

func TestLoggerWritesJSONAtDebug(t *testing.T) {
	log, logs := grpctest.Logger(t)
	log.Debug("first", "k", "v")
	log.With("service", "test").Error("second")

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2)
	var first, second map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	assert.Equal(t, "DEBUG", first["level"])
	assert.Equal(t, "first", first["msg"])
	assert.Equal(t, "v", first["k"])
	assert.Equal(t, "ERROR", second["level"])
	assert.Equal(t, "test", second["service"])
}

func TestErrorDetails(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "bad").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "a"}, {Field: "b"}}},
		&errdetails.ErrorInfo{Reason: "WHY", Domain: "fmgate.dev"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "c"}}},
	)
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, grpctest.BadRequestFields(st.Err()))
	assert.Equal(t, "WHY", grpctest.ErrorInfo(st.Err()).GetReason())
	assert.Equal(t, "fmgate.dev", grpctest.ErrorInfo(st.Err()).GetDomain())

	for _, err := range []error{nil, errors.New("plain"), status.Error(codes.NotFound, "no details")} {
		assert.Nil(t, grpctest.ErrorInfo(err))
		assert.Empty(t, grpctest.ErrorInfo(err).GetReason())
		assert.Nil(t, grpctest.BadRequestFields(err))
	}
}
