package grpcserver

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fmgate/fmgate/internal/telemetry"
)

// inprocSpans starts the server spans of in-process calls: the span the otelgrpc server
// handler gives a network call (same tracer scope, name, kind, attributes and status, under
// the provider of the service that owns the method; TestInProcessSpanMatchesNetwork), without
// what the handler also does for every call and an in-process call does not need: extracting
// the trace context from metadata, building the span's name, attributes and options anew,
// and tagging the context for its own later events. That work was about 40% of the tracing
// cost of a hop, and 60 allocations per generation (BenchmarkClosedLoopGenerate).
//
// It follows otelgrpc's default semantic conventions; a process that opts into others
// (OTEL_SEMCONV_STABILITY_OPT_IN=rpc/old or rpc/dup) has no inprocSpans and traces in-process
// calls through the otelgrpc handler itself. Like the handler's, these spans record no
// metrics: fmgate has no meter provider (docs/architecture.md).
type inprocSpans struct {
	tracers  map[string]trace.Tracer // by service
	fallback trace.Tracer
	methods  sync.Map // full method name → *methodSpan
}

var noSpan = trace.SpanFromContext(context.Background())

type methodSpan struct {
	tracer trace.Tracer // nil: not traced (health)
	name   string
	opts   []trace.SpanStartOption
}

func newInprocSpans(tracing *telemetry.Providers) *inprocSpans {
	for p := range strings.SplitSeq(os.Getenv("OTEL_SEMCONV_STABILITY_OPT_IN"), ",") {
		if p = strings.TrimSpace(p); p == "rpc/dup" || p == "rpc/old" {
			return nil
		}
	}
	tracer := func(svc string) trace.Tracer {
		return tracing.For(svc).Tracer(otelgrpc.ScopeName, trace.WithInstrumentationVersion(otelgrpc.Version))
	}
	sp := &inprocSpans{tracers: map[string]trace.Tracer{}, fallback: tracer("")}
	for _, svc := range services {
		sp.tracers[svc] = tracer(svc)
	}
	return sp
}

// start starts the server span of method in ctx, which holds the caller's span as its
// parent.
func (sp *inprocSpans) start(ctx context.Context, method string) (context.Context, trace.Span) {
	m := sp.method(method)
	if m.tracer == nil {
		return ctx, noSpan
	}
	return m.tracer.Start(ctx, m.name, m.opts...)
}

func (sp *inprocSpans) method(method string) *methodSpan {
	if m, ok := sp.methods.Load(method); ok {
		return m.(*methodSpan)
	}
	m := &methodSpan{}
	if !strings.HasPrefix(method, "/grpc.") { // as the server handler's filter
		m.tracer = sp.fallback
		if t, ok := sp.tracers[ServiceOf(method)]; ok {
			m.tracer = t
		}
		// otelgrpc's span name and attributes for "/package.Service/Method".
		m.name = strings.TrimPrefix(method, "/")
		m.opts = []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(semconv.RPCMethod(m.name), semconv.RPCSystemNameGRPC),
		}
	}
	actual, _ := sp.methods.LoadOrStore(method, m)
	return actual.(*methodSpan)
}

// endServerSpan ends a server span as otelgrpc does: the status code as an attribute, and an
// error status for the codes that are the server's fault.
func endServerSpan(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	code := status.Code(err)
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		span.SetStatus(otelcodes.Error, status.Convert(err).Message())
	}
	span.SetAttributes(statusCodeAttr(code))
	span.End()
}

// statusCodeAttrs are the rpc.response.status_code attributes of the codes gRPC defines,
// named as google.rpc.Code names them ("CANCELLED", "INVALID_ARGUMENT").
var statusCodeAttrs = func() []attribute.KeyValue {
	out := make([]attribute.KeyValue, codes.Unauthenticated+1)
	for c := range out {
		out[c] = semconv.RPCResponseStatusCode(rpccode.Code(c).String())
	}
	return out
}()

func statusCodeAttr(c codes.Code) attribute.KeyValue {
	if int(c) < len(statusCodeAttrs) {
		return statusCodeAttrs[c]
	}
	return semconv.RPCResponseStatusCode("CODE(" + strconv.FormatInt(int64(c), 10) + ")")
}
