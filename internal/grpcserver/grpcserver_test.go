package grpcserver

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// registry is a test double whose behaviour each test picks.
type registry struct {
	registryv1.UnimplementedRegistryServiceServer
	endpoint func(context.Context) (*registryv1.GetEndpointResponse, error)
}

func (r registry) GetEndpoint(ctx context.Context, _ *registryv1.GetEndpointRequest) (*registryv1.GetEndpointResponse, error) {
	return r.endpoint(ctx)
}

func setup(t *testing.T, impl registry) (*Server, *tracetest.InMemoryExporter, *grpctest.LogBuffer) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tracing, shutdown, err := telemetry.Setup(t.Context(), telemetry.Config{
		Services: []string{"edge", "registry"}, Exporter: exp, Synchronous: true,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	log, logs := grpctest.Logger(t)
	s := New(log, tracing, testMeshToken)
	registryv1.RegisterRegistryServiceServer(s, impl)
	return s, exp, logs
}

func TestServiceOf(t *testing.T) {
	for method, want := range map[string]string{
		"/fmgate.registry.v1.RegistryService/ResolveRoute": "registry",
		"/fmgate.gateway.v1.GatewayService/Generate":       "edge",
		"/grpc.health.v1.Health/Check":                     "",
		"bogus":                                            "",
	} {
		assert.Equal(t, want, ServiceOf(method), method)
	}
}

func TestErrorsAreNormalised(t *testing.T) {
	for name, tc := range map[string]struct {
		fail   func(context.Context) (*registryv1.GetEndpointResponse, error)
		code   codes.Code
		hidden string
		inLogs string
	}{
		"status passes": {
			fail: func(context.Context) (*registryv1.GetEndpointResponse, error) {
				return nil, status.Error(codes.NotFound, "no endpoint e1")
			},
			code: codes.NotFound,
		},
		"raw error becomes internal": {
			fail: func(context.Context) (*registryv1.GetEndpointResponse, error) {
				return nil, errors.New("pq: password=hunter2 rejected")
			},
			code: codes.Internal, hidden: "hunter2", inLogs: "hunter2",
		},
		"panic becomes internal": {
			fail: func(context.Context) (*registryv1.GetEndpointResponse, error) { panic("boom secret") },
			code: codes.Internal, hidden: "boom", inLogs: "boom secret",
		},
		"context canceled": {
			fail: func(context.Context) (*registryv1.GetEndpointResponse, error) {
				return nil, context.Canceled
			},
			code: codes.Canceled,
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, _, logs := setup(t, registry{endpoint: tc.fail})
			client := registryv1.NewRegistryServiceClient(s.Channel("edge"))
			_, err := client.GetEndpoint(t.Context(), &registryv1.GetEndpointRequest{})
			assert.Equal(t, tc.code, status.Code(err))
			if tc.hidden != "" {
				assert.NotContains(t, status.Convert(err).Message(), tc.hidden)
				assert.Contains(t, status.Convert(err).Message(), "request id")
			}
			if tc.inLogs != "" {
				assert.Contains(t, logs.String(), tc.inLogs)
			}
			assert.Contains(t, logs.String(), `"method":"/fmgate.registry.v1.RegistryService/GetEndpoint"`)
		})
	}
}

// The in-process channel must carry the trace across services and give the service called
// its own service.name, exactly as the network path does. Over the network each side has a
// span; in process the callee's server span is the hop's only span, a child of the caller's.
func TestTracePropagatesInProcessAndOverNetwork(t *testing.T) {
	ok := func(context.Context) (*registryv1.GetEndpointResponse, error) {
		return &registryv1.GetEndpointResponse{}, nil
	}
	s, exp, _ := setup(t, registry{endpoint: ok})

	conn, err := Dial("passthrough:///bufnet", "edge", s.tracing, testMeshToken, grpctest.Start(t, s.GRPC()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })

	for _, cc := range []struct {
		name string
		call func(ctx context.Context) error
		want map[string]string // span kind → service.name
	}{
		{"inproc", func(ctx context.Context) error {
			_, err := registryv1.NewRegistryServiceClient(s.Channel("edge")).GetEndpoint(ctx, &registryv1.GetEndpointRequest{})
			return err
		}, map[string]string{"internal": "fmgate-edge", "server": "fmgate-registry"}},
		{"network", func(ctx context.Context) error {
			_, err := registryv1.NewRegistryServiceClient(conn).GetEndpoint(ctx, &registryv1.GetEndpointRequest{})
			return err
		}, map[string]string{"internal": "fmgate-edge", "client": "fmgate-edge", "server": "fmgate-registry"}},
	} {
		t.Run(cc.name, func(t *testing.T) {
			exp.Reset()
			ctx, caller := s.tracing.For("edge").Tracer("test").Start(t.Context(), "edge.work")
			require.NoError(t, cc.call(ctx))
			caller.End()
			var spans []sdktrace.ReadOnlySpan
			require.Eventually(t, func() bool {
				spans = exp.GetSpans().Snapshots()
				return len(spans) == len(cc.want)
			}, timeout, tick)
			services := map[string]string{}
			for _, sp := range spans {
				services[sp.SpanKind().String()] = serviceName(sp.Resource().Attributes())
				assert.Equal(t, caller.SpanContext().TraceID(), sp.SpanContext().TraceID(), sp.Name())
				if sp.SpanKind().String() == "server" && cc.name == "inproc" {
					assert.Equal(t, caller.SpanContext().SpanID(), sp.Parent().SpanID(), "the caller's span is the parent")
					assert.Equal(t, "fmgate.registry.v1.RegistryService/GetEndpoint", sp.Name())
				}
			}
			assert.Equal(t, cc.want, services)
		})
	}
}

// An in-process call's server span is the span the otelgrpc handler gives a network call:
// same scope, name, kind, attributes (but the server's address) and status.
func TestInProcessSpanMatchesNetwork(t *testing.T) {
	for name, result := range map[string]func(context.Context) (*registryv1.GetEndpointResponse, error){
		"ok": func(context.Context) (*registryv1.GetEndpointResponse, error) {
			return &registryv1.GetEndpointResponse{}, nil
		},
		"not found": func(context.Context) (*registryv1.GetEndpointResponse, error) {
			return nil, status.Error(codes.NotFound, "no endpoint e1")
		},
		"unavailable": func(context.Context) (*registryv1.GetEndpointResponse, error) {
			return nil, status.Error(codes.Unavailable, "store down")
		},
		"raw error": func(context.Context) (*registryv1.GetEndpointResponse, error) {
			return nil, errors.New("boom")
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, exp, _ := setup(t, registry{endpoint: result})
			conn, err := Dial("passthrough:///bufnet", "edge", s.tracing, testMeshToken, grpctest.Start(t, s.GRPC()))
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			serverSpan := func(cc grpc.ClientConnInterface) sdktrace.ReadOnlySpan {
				exp.Reset()
				_, _ = registryv1.NewRegistryServiceClient(cc).GetEndpoint(t.Context(), &registryv1.GetEndpointRequest{})
				var found sdktrace.ReadOnlySpan
				require.Eventually(t, func() bool {
					for _, sp := range exp.GetSpans().Snapshots() {
						if sp.SpanKind().String() == "server" {
							found = sp
						}
					}
					return found != nil
				}, timeout, tick)
				return found
			}
			network, inproc := serverSpan(conn), serverSpan(s.Channel("edge"))
			withoutAddress := func(attrs []attribute.KeyValue) []attribute.KeyValue {
				var out []attribute.KeyValue
				for _, kv := range attrs {
					if !strings.HasPrefix(string(kv.Key), "server.") {
						out = append(out, kv)
					}
				}
				return out
			}
			assert.Equal(t, network.Name(), inproc.Name())
			assert.Equal(t, network.InstrumentationScope(), inproc.InstrumentationScope())
			assert.ElementsMatch(t, withoutAddress(network.Attributes()), inproc.Attributes())
			// The same status; an internal error's message names the request's own trace id.
			unTraced := func(sp sdktrace.ReadOnlySpan) sdktrace.Status {
				st := sp.Status()
				st.Description = strings.ReplaceAll(st.Description, sp.SpanContext().TraceID().String(), "<trace id>")
				return st
			}
			assert.Equal(t, unTraced(network), unTraced(inproc))
			assert.Equal(t, serviceName(network.Resource().Attributes()), serviceName(inproc.Resource().Attributes()))
		})
	}
}

// A successful internal RPC is logged at Debug unless it was slow; failures keep their level.
func TestRPCLogLevels(t *testing.T) {
	ok := func(context.Context) (*registryv1.GetEndpointResponse, error) {
		return &registryv1.GetEndpointResponse{}, nil
	}
	notFound := func(context.Context) (*registryv1.GetEndpointResponse, error) {
		return nil, status.Error(codes.NotFound, "no endpoint e1")
	}
	for name, tc := range map[string]struct {
		impl  func(context.Context) (*registryv1.GetEndpointResponse, error)
		slow  time.Duration
		level string
	}{
		"internal ok":      {impl: ok, slow: SlowRPC, level: "DEBUG"},
		"internal ok slow": {impl: ok, slow: 0, level: "INFO"},
		"internal failure": {impl: notFound, slow: SlowRPC, level: "WARN"},
	} {
		t.Run(name, func(t *testing.T) {
			s, _, logs := setup(t, registry{endpoint: tc.impl})
			s.slow = tc.slow
			_, _ = registryv1.NewRegistryServiceClient(s.Channel("edge")).GetEndpoint(t.Context(), &registryv1.GetEndpointRequest{})
			var line struct{ Level, Msg, Method string }
			require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(logs.String())), &line), logs.String())
			assert.Equal(t, "rpc", line.Msg)
			assert.Equal(t, "/fmgate.registry.v1.RegistryService/GetEndpoint", line.Method)
			assert.Equal(t, tc.level, line.Level)
		})
	}
}

func serviceName(attrs []attribute.KeyValue) string {
	for _, kv := range attrs {
		if kv.Key == "service.name" {
			return kv.Value.AsString()
		}
	}
	return ""
}

func TestHealthFollowsSetServing(t *testing.T) {
	s, _, _ := setup(t, registry{})
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		resp, err := s.Health().Check(t.Context(), &healthpb.HealthCheckRequest{Service: "fmgate.registry.v1.RegistryService"})
		require.NoError(t, err)
		return resp.Status
	}
	assert.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, check())
	s.SetServing(true)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, check())
}

const (
	timeout = 5e9
	tick    = 1e7
)

const testMeshToken = "mesh-token-for-tests-0123456789abcdef"

// registryAdmin answers an administrative RPC, which the guard must refuse before it runs.
type registryAdmin struct {
	registry
	called bool
}

func (r *registryAdmin) CreateModel(context.Context, *registryv1.CreateModelRequest) (*registryv1.CreateModelResponse, error) {
	r.called = true
	return &registryv1.CreateModelResponse{}, nil
}

func TestAccess(t *testing.T) {
	ok := func(context.Context) (*registryv1.GetEndpointResponse, error) {
		return &registryv1.GetEndpointResponse{}, nil
	}
	impl := &registryAdmin{registry: registry{endpoint: ok}}
	tracing, shutdown, err := telemetry.Setup(t.Context(), telemetry.Config{Services: []string{"edge", "registry"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = shutdown(context.Background()) })
	log, _ := grpctest.Logger(t)
	dial := func(s *Server, token string) registryv1.RegistryServiceClient {
		conn, err := Dial("passthrough:///bufnet", "edge", tracing, token, grpctest.Start(t, s.GRPC()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return registryv1.NewRegistryServiceClient(conn)
	}
	withToken := New(log, tracing, testMeshToken)
	registryv1.RegisterRegistryServiceServer(withToken, impl)
	noToken := New(log, tracing, "")
	registryv1.RegisterRegistryServiceServer(noToken, impl)

	for _, tc := range []struct {
		name   string
		client registryv1.RegistryServiceClient
		code   codes.Code
	}{
		{"in process", registryv1.NewRegistryServiceClient(withToken.Channel("edge")), codes.OK},
		{"network with the mesh token", dial(withToken, testMeshToken), codes.OK},
		{"network with a wrong token", dial(withToken, "wrong-token-wrong-token-wrong-token"), codes.Unauthenticated},
		{"network without a token", dial(withToken, ""), codes.Unauthenticated},
		{"network when the process has no token", dial(noToken, testMeshToken), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.client.GetEndpoint(t.Context(), &registryv1.GetEndpointRequest{})
			assert.Equal(t, tc.code, status.Code(err), "internal RPC: %v", err)
			_, err = tc.client.CreateModel(t.Context(), &registryv1.CreateModelRequest{})
			assert.Equal(t, codes.PermissionDenied, status.Code(err), "administrative RPCs refuse every caller: %v", err)
		})
	}
	assert.False(t, impl.called, "a refused administrative RPC never runs")

	// Health is public: load balancers probe it without credentials.
	conn, err := grpc.NewClient("passthrough:///bufnet", grpc.WithTransportCredentials(insecure.NewCredentials()), grpctest.Start(t, noToken.GRPC()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	assert.NoError(t, err)
}
