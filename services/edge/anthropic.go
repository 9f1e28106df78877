package edge

import (
	"net/http"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
)

// PLACEHOLDER until the Anthropic-compatible API lands in this file.
func anthropicHandler(gatewayv1.GatewayServiceClient) http.Handler { return http.NotFoundHandler() }
