package dispatch

// The Azure OpenAI adapter, for PROVIDER_KIND_AZURE_OPENAI: the OpenAI adapter with the
// official SDK's Azure options. The endpoint's base_url is the resource endpoint
// (https://<resource>.openai.azure.com), its upstream_model the deployment name and its
// api_version the Azure API version; the credential is the resource's API key, sent in the
// api-key header.

import (
	"errors"
	"net"
	"regexp"

	"github.com/openai/openai-go/v3/azure"
	"github.com/openai/openai-go/v3/option"
)

// azureMaxCompletionTokensSince is the first Azure OpenAI API version that understands
// max_completion_tokens; earlier versions know only max_tokens.
const azureMaxCompletionTokensSince = "2024-09-01"

var azureDatedVersion = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)

func newAzureOpenAIVendor(cfg vendorConfig) (vendor, error) {
	switch {
	case cfg.apiVersion == "":
		return nil, errors.New("azure openai endpoint has no api_version")
	case cfg.upstreamModel == "":
		return nil, errors.New("azure openai endpoint has no upstream_model (the deployment name)")
	case cfg.cred.IsZero():
		return nil, errors.New("azure openai endpoint has no credential (the resource's api key)")
	}
	opts := []option.RequestOption{
		// WithEndpoint routes each request to /openai/deployments/<model>/..., taking the
		// deployment from the body's model, and adds api-version to the query.
		azure.WithEndpoint(cfg.baseURL.String(), cfg.apiVersion),
		azure.WithAPIKey(cfg.cred.Reveal()),
		option.WithHTTPClient(cfg.client),
	}
	switch {
	case cfg.baseURL.Scheme == "https":
	case isLoopbackHost(cfg.baseURL.Hostname()):
		// A local simulator or proxy (the demo, tests). The SDK sends the key over plain HTTP
		// to loopback addresses only, on its own direct connection: such calls bypass the
		// shared client's transport and carry no trace context.
		opts = append(opts, azure.WithUnsafeAllowHTTP())
	default:
		return nil, errors.New("azure openai endpoint base_url must be https")
	}
	legacy := false
	if v := cfg.apiVersion; azureDatedVersion.MatchString(v) {
		legacy = v[:10] < azureMaxCompletionTokensSince
	}
	return newOpenAIVendorWith(cfg.endpointID, cfg.upstreamModel, cfg.cred, legacy, true, opts...), nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
