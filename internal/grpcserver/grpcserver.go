// Package grpcserver builds the one gRPC server of an fmgate process and the in-process
// channels through which its services call each other.
//
// Every service is registered once, through Server.RegisterService, and becomes reachable
// both over the network (the grpc.Server) and in process (Channel). Both paths run the same
// interceptors (panic recovery, error normalisation, a log line per RPC: logRPC) and give each RPC the same
// server span from the otelgrpc handler of the service that owns it, so all-in-one and mesh
// deployments show the same services in a trace; only the transport differs. A network call
// also has a client span on the caller's side; an in-process call does not (Channel).
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fullstorydev/grpchan/inprocgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/fmgate/fmgate/internal/telemetry"
)

// Server is the gRPC server of one process.
type Server struct {
	grpc      *grpc.Server
	health    *health.Server
	log       *slog.Logger
	tracing   *telemetry.Providers
	unary     grpc.UnaryServerInterceptor
	stream    grpc.StreamServerInterceptor
	stats     *serviceStats
	spans     *inprocSpans // nil: in-process spans through the otelgrpc handler (semconv opt-in)
	meshToken string
	slow      time.Duration // SlowRPC; tests lower it
	admin     grpc.UnaryServerInterceptor
	services  []registration
	channels  []*inprocConn
}

type registration struct {
	desc *grpc.ServiceDesc
	impl any
}

// New returns a server whose RPCs are traced with the provider of the service they belong
// to.
//
// meshToken is the secret fmgate processes of one mesh present to each other (access.go);
// empty, internal services answer only in-process callers.
func New(log *slog.Logger, tracing *telemetry.Providers, meshToken string, opts ...grpc.ServerOption) *Server {
	s := &Server{log: log, tracing: tracing, health: health.NewServer(), meshToken: meshToken, slow: SlowRPC}
	s.stats = newServiceStats(tracing)
	s.spans = newInprocSpans(tracing)
	s.unary = chainUnary(s.logUnary, chainUnary(s.guardUnary, recoverUnary(log)))
	s.stream = chainStream(s.logStream, chainStream(s.guardStream, recoverStream(log)))
	opts = append([]grpc.ServerOption{
		grpc.StatsHandler(s.stats),
		grpc.ChainUnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.stream),
	}, opts...)
	s.grpc = grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s
}

// RegisterService implements grpc.ServiceRegistrar. The service starts NOT_SERVING in
// grpc.health.v1 until SetServing.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
	s.services = append(s.services, registration{desc: desc, impl: impl})
	for _, ch := range s.channels {
		ch.register(desc, impl)
	}
	s.health.SetServingStatus(desc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
}

// GRPC returns the network server, for Serve and GracefulStop.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// SetServing marks every registered service, and the process as a whole (""), as serving or
// not in grpc.health.v1.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, r := range s.services {
		s.health.SetServingStatus(r.desc.ServiceName, st)
	}
	s.health.SetServingStatus("", st)
}

// Health returns the health server, which the edge's /readyz consults.
func (s *Server) Health() healthpb.HealthServer { return s.health }

// Channel returns an in-process channel to every service registered on s, before or after
// this call, for the calls made by service caller. Services are registered at start-up,
// before any call is made.
//
// An in-process call is traced by one span: the server span of the service called, under
// that service's service.name, a child of the caller's span taken directly from the
// caller's context. A client span on the caller's side would time the same function call
// again, and injecting and extracting the trace context through metadata would only copy
// what the context already holds; together they doubled the tracing cost of every hop. So
// caller names the calling service for symmetry with Dial, whose network calls do get a
// client span under caller's name. The interceptors call the otelgrpc server handler
// directly (trace*), so the span's name and attributes are the network path's.
func (s *Server) Channel(caller string) grpc.ClientConnInterface {
	streams := new(inprocgrpc.Channel).
		WithCloner(protoCloner{}).
		WithServerStreamInterceptor(chainStream(s.traceStream, s.stream))
	ch := newInprocConn(streams, chainUnary(s.traceUnary, s.unary))
	for _, r := range s.services {
		ch.register(r.desc, r.impl)
	}
	s.channels = append(s.channels, ch)
	return ch
}

// Dial returns a client connection to a peer process at addr for calls made by service
// caller. The connection is lazy: it connects on first use and reconnects by itself.
func Dial(addr, caller string, tracing *telemetry.Providers, meshToken string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(clientStats(tracing, caller)),
	}, meshTokenInterceptors(meshToken)...)
	conn, err := grpc.NewClient(addr, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

func clientStats(tracing *telemetry.Providers, caller string) stats.Handler {
	return otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tracing.For(caller)))
}

// ServiceOf returns the fmgate service that owns a full method name:
// "/fmgate.registry.v1.RegistryService/ResolveRoute" → "registry". The public gateway
// contract belongs to the edge. Anything else returns "".
func ServiceOf(fullMethod string) string {
	rest, ok := strings.CutPrefix(fullMethod, "/fmgate.")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, ".")
	if name == "gateway" {
		return "edge"
	}
	return name
}

// services are the fmgate services, as ServiceOf names them.
var services = []string{"edge", "registry", "identity", "policy", "quota", "moderation", "dispatch"}

// serviceStats routes each RPC to the otelgrpc server handler of the service it belongs to,
// so that one grpc.Server can host several services, each with its own service.name.
type serviceStats struct {
	byService map[string]stats.Handler
	fallback  stats.Handler
}

type statsKey struct{}

func newServiceStats(tracing *telemetry.Providers) *serviceStats {
	notHealth := otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
		return !strings.HasPrefix(info.FullMethodName, "/grpc.")
	})
	ss := &serviceStats{byService: map[string]stats.Handler{}}
	for _, svc := range services {
		ss.byService[svc] = otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tracing.For(svc)), notHealth)
	}
	ss.fallback = otelgrpc.NewServerHandler(notHealth)
	return ss
}

func (ss *serviceStats) pick(method string) stats.Handler {
	if h, ok := ss.byService[ServiceOf(method)]; ok {
		return h
	}
	return ss.fallback
}

func (ss *serviceStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	h := ss.pick(info.FullMethodName)
	return h.TagRPC(context.WithValue(ctx, statsKey{}, h), info)
}

func (ss *serviceStats) HandleRPC(ctx context.Context, rs stats.RPCStats) {
	if h, ok := ctx.Value(statsKey{}).(stats.Handler); ok {
		h.HandleRPC(ctx, rs)
	}
}

func (ss *serviceStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return ss.fallback.TagConn(ctx, info)
}

func (ss *serviceStats) HandleConn(ctx context.Context, cs stats.ConnStats) {
	ss.fallback.HandleConn(ctx, cs)
}

// callerSpan returns the server context of an in-process call with the caller's span
// context (and baggage) as the remote parent, as the network path's propagators would.
func callerSpan(ctx context.Context) context.Context {
	cc := clientContext(ctx)
	if cc == nil {
		return ctx
	}
	if sc := trace.SpanContextFromContext(cc); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	if b := baggage.FromContext(cc); b.Len() > 0 {
		ctx = baggage.ContextWithBaggage(ctx, b)
	}
	return ctx
}

// traceUnary gives an in-process unary call its server span (inprocSpans).
func (s *Server) traceUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if s.spans != nil {
		ctx, span := s.spans.start(callerSpan(ctx), info.FullMethod)
		resp, err := handler(ctx, req)
		endServerSpan(span, err)
		return resp, err
	}
	h := s.stats.pick(info.FullMethod)
	begin := time.Now()
	ctx = h.TagRPC(callerSpan(ctx), &stats.RPCTagInfo{FullMethodName: info.FullMethod})
	resp, err := handler(ctx, req)
	h.HandleRPC(ctx, &stats.End{BeginTime: begin, EndTime: time.Now(), Error: err})
	return resp, err
}

// traceStream is traceUnary for streams.
func (s *Server) traceStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if s.spans != nil {
		ctx, span := s.spans.start(callerSpan(ss.Context()), info.FullMethod)
		err := handler(srv, &tracedStream{ServerStream: ss, ctx: ctx})
		endServerSpan(span, err)
		return err
	}
	h := s.stats.pick(info.FullMethod)
	begin := time.Now()
	ctx := h.TagRPC(callerSpan(ss.Context()), &stats.RPCTagInfo{FullMethodName: info.FullMethod})
	err := handler(srv, &tracedStream{ServerStream: ss, ctx: ctx})
	h.HandleRPC(ctx, &stats.End{BeginTime: begin, EndTime: time.Now(), Error: err})
	return err
}

// tracedStream is a server stream whose context holds its span.
type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (t *tracedStream) Context() context.Context { return t.ctx }

// normalize turns what a handler returned into what the caller sees: status errors pass
// unchanged, context errors become Canceled/DeadlineExceeded, and anything else becomes
// Internal with a generic message naming the trace id, after its real text is logged once.
func (s *Server) normalize(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	requestID := trace.SpanContextFromContext(ctx).TraceID().String()
	s.log.ErrorContext(ctx, "internal error", "method", method, "error", err.Error())
	return status.Errorf(codes.Internal, "internal error (request id %s)", requestID)
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	err = s.normalize(ctx, info.FullMethod, err)
	s.logRPC(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := s.normalize(ss.Context(), info.FullMethod, handler(srv, ss))
	s.logRPC(ss.Context(), info.FullMethod, start, err)
	return err
}

// SlowRPC is the duration from which a successful internal RPC is logged at Info.
const SlowRPC = time.Second

// logRPC writes the line of an RPC, at a level that follows the code: Error for Internal,
// Unknown, Unavailable and DataLoss, Warn for other failures, Info for successful public and
// administrative RPCs. A successful internal RPC (one service calling another, several per
// generation) is logged at Debug, or at Info when it took SlowRPC or more: at Info every
// generation would write one line per hop, which the gateway RPC's own line and the trace
// already cover.
func (s *Server) logRPC(ctx context.Context, method string, start time.Time, err error) {
	if strings.HasPrefix(method, "/grpc.health.") {
		return
	}
	code := status.Code(err)
	elapsed := time.Since(start)
	level := slog.LevelInfo
	switch code {
	case codes.OK:
		if elapsed < s.slow && kindOf(method) == kindInternal {
			level = slog.LevelDebug
		}
	case codes.Internal, codes.Unknown, codes.Unavailable, codes.DataLoss:
		level = slog.LevelError
	default:
		level = slog.LevelWarn
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("service", ServiceOf(method)),
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", elapsed),
	}
	if err != nil {
		attrs = append(attrs, slog.String("message", status.Convert(err).Message()))
	}
	s.log.LogAttrs(ctx, level, "rpc", attrs...)
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				err = panicked(ctx, log, info.FullMethod, p)
			}
		}()
		return handler(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = panicked(ss.Context(), log, info.FullMethod, p)
			}
		}()
		return handler(srv, ss)
	}
}

func panicked(ctx context.Context, log *slog.Logger, method string, p any) error {
	log.ErrorContext(ctx, "panic in handler", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	requestID := trace.SpanContextFromContext(ctx).TraceID().String()
	return status.Errorf(codes.Internal, "internal error (request id %s)", requestID)
}

func chainUnary(outer, inner grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return outer(ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return inner(ctx, req, info, handler)
		})
	}
}

func chainStream(outer, inner grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return outer(srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			return inner(srv, ss, info, handler)
		})
	}
}

// protoCloner deep-copies messages between the client and server sides of an in-process
// channel, as grpchan's default ProtoCloner does, but through the protobuf v2 API directly
// rather than through the dynamic-message and golang/protobuf v1 layers: BenchmarkCloner.
type protoCloner struct{}

func (protoCloner) Copy(out, in any) error {
	src, ok := in.(proto.Message)
	if !ok {
		return fmt.Errorf("in-process channel: %T is not a proto.Message", in)
	}
	dst, ok := out.(proto.Message)
	if !ok {
		return fmt.Errorf("in-process channel: %T is not a proto.Message", out)
	}
	if src.ProtoReflect().Descriptor() != dst.ProtoReflect().Descriptor() {
		return fmt.Errorf("in-process channel: cannot copy %T into %T", in, out)
	}
	proto.Reset(dst)
	proto.Merge(dst, src)
	return nil
}

func (protoCloner) Clone(in any) (any, error) {
	m, ok := in.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("in-process channel: %T is not a proto.Message", in)
	}
	return proto.Clone(m), nil
}
