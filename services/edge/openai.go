package edge

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
)

// The OpenAI-compatible API, at /v1, so that an application built on an official OpenAI SDK
// points its base URL at http://HOST:PORT/v1 and works unchanged, whichever vendor serves the
// model behind the alias. It is a thin translation onto the local GatewayService client:
// authentication, validation, routing, policy, quota, moderation, dispatch and tracing are the
// native API's, identically.
//
//	POST /v1/chat/completions   openai_chat.go
//	POST /v1/embeddings         openai_embeddings.go
//	GET  /v1/models[/{id}]      openai_models.go
//
// Authentication is `Authorization: Bearer <key>` only; Azure's `api-key` header is not
// accepted (a key in an unexpected place is more often a leak than a client).
//
// Parsing is strict. A parameter fmgate does not support is refused with 400 naming it, never
// dropped silently; so is n > 1. Keys that would pick an upstream or a credential
// (forbiddenKeys: api_base, base_url, api_key, extra_headers, ...) are refused wherever they
// appear in the body, except inside the caller's own data (freeFormPaths: tool parameter
// schemas, the response schema, message content), and so are headers that would route
// (routingHeaders). Bodies are limited to MaxBodyBytes (by the HTTP handler) and to
// maxJSONDepth levels of nesting.
//
// Errors have OpenAI's shape ({"error":{"message","type","param","code"}}) and the HTTP status
// that matches the gRPC code (openai_errors.go), so SDKs raise their typed errors.

// routingHeaders are request headers that other gateways read to pick an upstream. fmgate
// never does; a request that sends one expects an effect it will not get, so it is refused.
// X-Forwarded-Host is not among them: proxies set it, and fmgate does not route on it.
var routingHeaders = []string{"X-Api-Base", "X-Base-Url", "X-Upstream-Host", "X-Upstream-Url", "Api-Base", "OpenAI-Base-URL"}

// openAI serves the OpenAI dialect.
type openAI struct {
	gw  gatewayv1.GatewayServiceClient
	now func() time.Time
}

func openAIHandler(gw gatewayv1.GatewayServiceClient) http.Handler {
	h := &openAI{gw: gw, now: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", h.chat)
	mux.HandleFunc("POST /v1/embeddings", h.embeddings)
	mux.HandleFunc("GET /v1/models", h.listModels)
	mux.HandleFunc("GET /v1/models/{id...}", h.getModel)
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeOpenAIJSON(w, http.StatusNotFound, openAIError{Error: openAIErrorDetail{
			Message: "Invalid URL (" + r.Method + " " + r.URL.Path + ")", Type: "invalid_request_error",
		}})
	})
	return h.guard(mux)
}

// guard refuses routing headers and requests without credentials before anything is parsed,
// and passes the credential on to the gateway as gRPC metadata.
func (h *openAI) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, name := range routingHeaders {
			if len(r.Header.Values(name)) > 0 {
				writeOpenAIError(w, badParam(name, "forbidden_parameter",
					"the %s header is not accepted: fmgate sends requests only to the endpoints of its registry", name), noParamMap)
				return
			}
		}
		auth := r.Header.Get("Authorization")
		if auth == "" {
			writeOpenAIError(w, errMissingKey, noParamMap)
			return
		}
		ctx := metadata.AppendToOutgoingContext(r.Context(), "authorization", auth)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func noParamMap(field string) string { return field }

// readBody reads the request body; the HTTP handler has capped its size.
func readOpenAIBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return nil, &requestError{message: fmt.Sprintf("the request body is larger than %d bytes", tooLarge.Limit)}
		}
		return nil, &requestError{message: "the request body could not be read"}
	}
	return body, nil
}

// created is the Unix time OpenAI's "created" fields carry.
func (h *openAI) created() int64 { return h.now().Unix() }

var errMissingKey = status.Error(codes.Unauthenticated, "missing API key: send it as 'Authorization: Bearer <key>'")
