package edge

import (
	"context"
	_ "embed"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	auditv1 "github.com/fmgate/fmgate/gen/fmgate/audit/v1"
	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
	policyv1 "github.com/fmgate/fmgate/gen/fmgate/policy/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
)

//go:embed openapi/fmgate.swagger.json
var openAPI []byte

// MaxBodyBytes is the largest request body the edge reads.
const MaxBodyBytes = 4 << 20

// HTTPConfig configures the edge's HTTP surface.
type HTTPConfig struct {
	// Gateway is a client of the local GatewayService; REST calls are transcoded onto it, so
	// REST and gRPC callers take exactly the same path.
	Gateway gatewayv1.GatewayServiceClient
	// Ready reports whether the process should receive traffic (/readyz).
	Ready func(context.Context) error
	// TracerProvider traces incoming HTTP requests (the edge's provider).
	TracerProvider trace.TracerProvider
	// Admin holds clients of the services whose administrative RPCs the edge maps to REST
	// under /api/v1/orgs/... (their google.api.http options). The edge only transcodes: the
	// admin layer of the process serving each RPC authenticates the caller's Authorization
	// header (forwarded as metadata), authorises and audits the call. Nil clients are not
	// mapped.
	Admin AdminClients
}

// AdminClients are the administrative services the edge maps to REST.
type AdminClients struct {
	Registry registryv1.RegistryServiceClient
	Policy   policyv1.PolicyServiceClient
	Identity identityv1.IdentityServiceClient
	Audit    auditv1.AuditServiceClient
}

// register maps every administrative service of a to REST on gw.
func (a AdminClients) register(ctx context.Context, gw *runtime.ServeMux) error {
	var err error
	if a.Registry != nil && err == nil {
		err = registryv1.RegisterRegistryServiceHandlerClient(ctx, gw, a.Registry)
	}
	if a.Policy != nil && err == nil {
		err = policyv1.RegisterPolicyServiceHandlerClient(ctx, gw, a.Policy)
	}
	if a.Identity != nil && err == nil {
		err = identityv1.RegisterIdentityServiceHandlerClient(ctx, gw, a.Identity)
	}
	if a.Audit != nil && err == nil {
		err = auditv1.RegisterAuditServiceHandlerClient(ctx, gw, a.Audit)
	}
	if err != nil {
		return fmt.Errorf("register admin handlers: %w", err)
	}
	return nil
}

// NewHTTPHandler returns the edge's HTTP handler: /api/v1 (grpc-gateway), the OpenAPI
// document at /api/v1/openapi.json, /healthz and /readyz.
func NewHTTPHandler(ctx context.Context, cfg HTTPConfig) (http.Handler, error) {
	gw := runtime.NewServeMux(
		runtime.WithErrorHandler(errorHandler),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{UseProtoNames: true},
			// Unknown fields are rejected, not ignored: a field such as "api_base" must never
			// be silently dropped in a way that makes the caller believe it took effect.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
	)
	if err := gatewayv1.RegisterGatewayServiceHandlerClient(ctx, gw, cfg.Gateway); err != nil {
		return nil, fmt.Errorf("register gateway handlers: %w", err)
	}
	if err := cfg.Admin.register(ctx, gw); err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := cfg.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	mux.Handle("/api/v1/", http.MaxBytesHandler(gw, MaxBodyBytes))
	// The OpenAI- and Anthropic-compatible dialects: thin translations onto GatewayService.
	mux.Handle("/v1/messages", http.MaxBytesHandler(anthropicHandler(cfg.Gateway), MaxBodyBytes))
	mux.Handle("/v1/", http.MaxBytesHandler(openAIHandler(cfg.Gateway), MaxBodyBytes))

	return otelhttp.NewHandler(mux, "edge.http",
		otelhttp.WithTracerProvider(cfg.TracerProvider),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != "/healthz" && r.URL.Path != "/readyz" }),
	), nil
}

// errorHandler adds Retry-After to RESOURCE_EXHAUSTED answers that carry RetryInfo, then
// writes grpc-gateway's standard error body ({code, message, details}) with the HTTP status
// that matches the gRPC code.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if d, ok := apierr.RetryAfter(err); ok {
		secs := int((d + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	cw := challengeWriter{ResponseWriter: w}
	switch reasonOf(err) {
	case "MODEL_RETIRED":
		cw.status = http.StatusGone // a model that existed and is gone for good
	case ReasonLicenseNotAccepted:
		cw.status = LicenseNotAcceptedHTTPStatus // as on the vendor dialects
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, cw, r, err)
}

// reasonOf returns the ErrorInfo reason of a status error, or "".
func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// challengeWriter makes WWW-Authenticate a proper challenge (RFC 9110): grpc-gateway's
// default handler puts the status message there.
// It also replaces the status where the gRPC code's usual mapping is not the best answer.
type challengeWriter struct {
	http.ResponseWriter
	status int // replaces the status when set
}

func (c challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", `Bearer realm="fmgate"`)
	}
	if c.status != 0 {
		code = c.status
	}
	c.ResponseWriter.WriteHeader(code)
}
