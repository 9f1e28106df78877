package grpcserver

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

type callerKey struct{}

// TestInProcessUnaryIsolation checks what a handler of an in-process unary call sees: the
// caller's deadline, cancellation and metadata, the in-process peer and its method, none of
// the caller's context values, and messages it does not share with the caller.
func TestInProcessUnaryIsolation(t *testing.T) {
	var (
		sawValue    any
		sawDeadline bool
		sawMD       []string
		sawMethod   string
		sawPeer     string
		handlerCtx  context.Context
	)
	sent := &registryv1.GetEndpointResponse{Endpoint: &registryv1.Endpoint{Id: "ep-1"}}
	s, _, _ := setup(t, registry{endpoint: func(ctx context.Context) (*registryv1.GetEndpointResponse, error) {
		sawValue = ctx.Value(callerKey{})
		_, sawDeadline = ctx.Deadline()
		sawMD = metadata.ValueFromIncomingContext(ctx, "x-request-id")
		sawMethod, _ = grpc.Method(ctx)
		if p, ok := peer.FromContext(ctx); ok {
			sawPeer = p.Addr.Network()
		}
		handlerCtx = ctx
		return sent, nil
	}})
	client := registryv1.NewRegistryServiceClient(s.Channel("edge"))
	ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), callerKey{}, "secret"), time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", "r-1")

	got, err := client.GetEndpoint(ctx, &registryv1.GetEndpointRequest{})
	require.NoError(t, err)
	assert.Nil(t, sawValue, "the caller's context values stay with the caller")
	assert.True(t, sawDeadline)
	assert.Equal(t, []string{"r-1"}, sawMD)
	assert.Equal(t, "/fmgate.registry.v1.RegistryService/GetEndpoint", sawMethod)
	assert.Equal(t, "inproc", sawPeer)
	assert.Error(t, handlerCtx.Err(), "the handler's context ends with the call")
	got.Endpoint.Id = "changed by the caller"
	assert.Equal(t, "ep-1", sent.GetEndpoint().GetId(), "the caller holds a copy of the response")
}

// BenchmarkInprocUnary compares an in-process unary call on the caller's goroutine
// (Channel) with grpchan's inprocgrpc channel, which runs each call on a goroutine of its
// own; same interceptors, same copies.
func BenchmarkInprocUnary(b *testing.B) {
	s := New(slog.New(slog.DiscardHandler), nil, "")
	impl := registry{endpoint: func(context.Context) (*registryv1.GetEndpointResponse, error) {
		return &registryv1.GetEndpointResponse{Endpoint: &registryv1.Endpoint{Id: "ep-1", BaseUrl: "http://127.0.0.1:1/v1"}}, nil
	}}
	registryv1.RegisterRegistryServiceServer(s, impl)
	goroutinePerCall := new(inprocgrpc.Channel).WithCloner(protoCloner{}).WithServerUnaryInterceptor(chainUnary(s.traceUnary, s.unary))
	registryv1.RegisterRegistryServiceServer(goroutinePerCall, impl)
	for name, conn := range map[string]grpc.ClientConnInterface{"caller-goroutine": s.Channel("edge"), "inprocgrpc": goroutinePerCall} {
		b.Run(name, func(b *testing.B) {
			client := registryv1.NewRegistryServiceClient(conn)
			req := &registryv1.GetEndpointRequest{OrganizationId: "acme", Id: "ep-1"}
			b.ReportAllocs()
			for range b.N {
				if _, err := client.GetEndpoint(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
