package registry

import (
	"slices"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

var lifecycleToProto = map[LifecycleState]registryv1.LifecycleState{
	LifecycleProposed:   registryv1.LifecycleState_LIFECYCLE_STATE_PROPOSED,
	LifecycleEvaluating: registryv1.LifecycleState_LIFECYCLE_STATE_EVALUATING,
	LifecycleApproved:   registryv1.LifecycleState_LIFECYCLE_STATE_APPROVED,
	LifecycleDeprecated: registryv1.LifecycleState_LIFECYCLE_STATE_DEPRECATED,
	LifecycleRetired:    registryv1.LifecycleState_LIFECYCLE_STATE_RETIRED,
}

var providerToProto = map[Provider]registryv1.ProviderKind{
	ProviderOpenAI:           registryv1.ProviderKind_PROVIDER_KIND_OPENAI,
	ProviderOpenAICompatible: registryv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE,
	ProviderAzureOpenAI:      registryv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI,
	ProviderAnthropic:        registryv1.ProviderKind_PROVIDER_KIND_ANTHROPIC,
	ProviderBedrock:          registryv1.ProviderKind_PROVIDER_KIND_BEDROCK,
	ProviderGemini:           registryv1.ProviderKind_PROVIDER_KIND_GEMINI,
}

// LifecycleStateFromProto returns the domain state of s, "" for UNSPECIFIED or unknown values
// (which Model.Validate rejects).
func LifecycleStateFromProto(s registryv1.LifecycleState) LifecycleState {
	for d, p := range lifecycleToProto {
		if p == s {
			return d
		}
	}
	return ""
}

// ProviderFromProto returns the domain provider of k, "" for UNSPECIFIED or unknown values
// (which Endpoint.Validate rejects).
func ProviderFromProto(k registryv1.ProviderKind) Provider {
	for d, p := range providerToProto {
		if p == k {
			return d
		}
	}
	return ""
}

func modelToProto(m Model) *registryv1.Model {
	return &registryv1.Model{
		OrganizationId:        m.OrganizationID,
		Name:                  m.Name,
		DisplayName:           m.DisplayName,
		Vendor:                m.Vendor,
		LifecycleState:        lifecycleToProto[m.LifecycleState],
		ContextWindow:         m.ContextWindow,
		InputPricePerMillion:  m.InputPricePerMillion,
		OutputPricePerMillion: m.OutputPricePerMillion,
		EndpointIds:           slices.Clone(m.EndpointIDs),
		FallbackModels:        slices.Clone(m.FallbackModels),
	}
}

func endpointToProto(e Endpoint) *registryv1.Endpoint {
	return &registryv1.Endpoint{
		OrganizationId: e.OrganizationID,
		Id:             e.ID,
		Provider:       providerToProto[e.Provider],
		BaseUrl:        e.BaseURL,
		UpstreamModel:  e.UpstreamModel,
		CredentialRef:  e.CredentialRef,
		Region:         e.Region,
		Weight:         e.Weight,
		Priority:       e.Priority,
		ApiVersion:     e.APIVersion,
	}
}

// ModelFromProto converts a proto model (for admin APIs and resource files); validate the
// result before use.
func ModelFromProto(m *registryv1.Model) Model {
	return Model{
		OrganizationID:        m.GetOrganizationId(),
		Name:                  m.GetName(),
		DisplayName:           m.GetDisplayName(),
		Vendor:                m.GetVendor(),
		LifecycleState:        LifecycleStateFromProto(m.GetLifecycleState()),
		ContextWindow:         m.GetContextWindow(),
		InputPricePerMillion:  m.GetInputPricePerMillion(),
		OutputPricePerMillion: m.GetOutputPricePerMillion(),
		EndpointIDs:           slices.Clone(m.GetEndpointIds()),
		FallbackModels:        slices.Clone(m.GetFallbackModels()),
	}
}

// EndpointFromProto converts a proto endpoint; validate the result before use.
func EndpointFromProto(e *registryv1.Endpoint) Endpoint {
	return Endpoint{
		OrganizationID: e.GetOrganizationId(),
		ID:             e.GetId(),
		Provider:       ProviderFromProto(e.GetProvider()),
		BaseURL:        e.GetBaseUrl(),
		UpstreamModel:  e.GetUpstreamModel(),
		CredentialRef:  e.GetCredentialRef(),
		Region:         e.GetRegion(),
		Weight:         e.GetWeight(),
		Priority:       e.GetPriority(),
		APIVersion:     e.GetApiVersion(),
	}
}
