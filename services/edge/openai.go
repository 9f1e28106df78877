package edge

import (
	"net/http"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
)

// PLACEHOLDER until the OpenAI-compatible API lands in this file.
func openAIHandler(gatewayv1.GatewayServiceClient) http.Handler { return http.NotFoundHandler() }
