package dispatch

import (
	"fmt"
	"net/http"
	"net/url"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

// vendorConfig is what a vendor adapter is built from: the registry endpoint, its resolved
// credential and the shared HTTP client.
type vendorConfig struct {
	endpointID    string
	provider      registryv1.ProviderKind
	baseURL       *url.URL
	upstreamModel string
	apiVersion    string
	region        string
	cred          Credential
	client        *http.Client
}

// newVendor builds the adapter for an endpoint's provider and returns it with the
// gen_ai.provider.name it reports.
func newVendor(cfg vendorConfig) (vendor, string, error) {
	switch cfg.provider {
	case registryv1.ProviderKind_PROVIDER_KIND_OPENAI, registryv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE:
		return newOpenAIVendor(cfg.endpointID, cfg.baseURL.String(), cfg.upstreamModel, cfg.cred, cfg.client,
			cfg.provider == registryv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE), "openai", nil
	case registryv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI:
		v, err := newAzureOpenAIVendor(cfg)
		return v, "azure.ai.openai", err
	case registryv1.ProviderKind_PROVIDER_KIND_ANTHROPIC:
		v, err := newAnthropicVendor(cfg)
		return v, "anthropic", err
	case registryv1.ProviderKind_PROVIDER_KIND_BEDROCK:
		v, err := newBedrockVendor(cfg)
		return v, "aws.bedrock", err
	case registryv1.ProviderKind_PROVIDER_KIND_GEMINI:
		v, err := newGeminiVendor(cfg)
		return v, "gcp.gemini", err
	}
	return nil, "", fmt.Errorf("unsupported provider %s", cfg.provider)
}
