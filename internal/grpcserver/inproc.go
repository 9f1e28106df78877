package grpcserver

import (
	"context"
	"net"
	"strings"
	"sync"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// inprocConn is the in-process channel of one calling service. Unary calls run the handler
// on the caller's goroutine, through the same interceptors as the network path, with the
// request and response deep-copied as over the wire; streams go through grpchan's
// inprocgrpc channel.
//
// Why not inprocgrpc for unary calls too: it starts a goroutine per call and hands the
// answer back over a channel, and a generation makes four to six in-process unary calls
// before its vendor request (BenchmarkInprocUnary: the goroutine, its channel hand-offs
// and their wake-ups are most of an in-process call's cost).
type inprocConn struct {
	streams *inprocgrpc.Channel
	unary   grpc.UnaryServerInterceptor

	mu      sync.RWMutex
	methods map[string]unaryMethod // by full method name, "/pkg.Service/Method"
}

type unaryMethod struct {
	impl    any
	handler grpc.MethodHandler
}

func newInprocConn(streams *inprocgrpc.Channel, unary grpc.UnaryServerInterceptor) *inprocConn {
	return &inprocConn{streams: streams, unary: unary, methods: map[string]unaryMethod{}}
}

func (c *inprocConn) register(desc *grpc.ServiceDesc, impl any) {
	c.streams.RegisterService(desc, impl)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = unaryMethod{impl: impl, handler: m.Handler}
	}
}

// Invoke implements grpc.ClientConnInterface.
func (c *inprocConn) Invoke(ctx context.Context, method string, req, reply any, _ ...grpc.CallOption) error {
	if !strings.HasPrefix(method, "/") {
		method = "/" + method
	}
	c.mu.RLock()
	m, ok := c.methods[method]
	c.mu.RUnlock()
	if !ok {
		return status.Errorf(codes.Unimplemented, "method %s not implemented", method)
	}
	sctx, cancel := context.WithCancel(serverContext(ctx, method))
	defer cancel() // as over the network, the server's context ends with the call
	resp, err := m.handler(m.impl, sctx, func(in any) error { return protoCloner{}.Copy(in, req) }, c.unary)
	if err != nil {
		return err // the interceptors made it a status, as the network caller gets it
	}
	return protoCloner{}.Copy(reply, resp)
}

// NewStream implements grpc.ClientConnInterface.
func (c *inprocConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.streams.NewStream(ctx, desc, method, opts...)
}

type clientContextKey struct{}

// serverContext is the context a handler of an in-process call sees: the caller's
// cancellation and deadline but none of its values (as over the network), the caller's
// outgoing metadata as incoming metadata, the in-process peer, the method (grpc.Method), and
// the caller's context for callerSpan.
func serverContext(ctx context.Context, method string) context.Context {
	sctx := context.Context(noValues{ctx})
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		sctx = metadata.NewIncomingContext(sctx, md)
	}
	sctx = peer.NewContext(sctx, &inprocPeer)
	sctx = context.WithValue(sctx, clientContextKey{}, ctx)
	return grpc.NewContextWithServerTransportStream(sctx, unaryTransportStream(method))
}

// clientContext returns the caller's context of an in-process call, or nil.
func clientContext(ctx context.Context) context.Context {
	if cc, ok := ctx.Value(clientContextKey{}).(context.Context); ok {
		return cc
	}
	return inprocgrpc.ClientContext(ctx) // streams
}

// noValues passes on cancellation and deadline, not values.
type noValues struct{ context.Context }

func (noValues) Value(any) any { return nil }

// inprocPeer is the peer of every in-process call; authorizeInternal trusts its network.
var inprocPeer = peer.Peer{Addr: inprocAddr{}}

type inprocAddr struct{}

func (inprocAddr) Network() string { return "inproc" }
func (inprocAddr) String() string  { return "inproc" }

var _ net.Addr = inprocAddr{}

// unaryTransportStream names the method of an in-process unary call; headers and trailers
// set by a handler are not carried (no fmgate handler sets any: errors carry their details).
type unaryTransportStream string

func (s unaryTransportStream) Method() string             { return string(s) }
func (unaryTransportStream) SetHeader(metadata.MD) error  { return nil }
func (unaryTransportStream) SendHeader(metadata.MD) error { return nil }
func (unaryTransportStream) SetTrailer(metadata.MD) error { return nil }
