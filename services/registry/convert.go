package registry

import (
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

var modalityToProto = map[Modality]registryv1.Modality{
	ModalityText:      registryv1.Modality_MODALITY_TEXT,
	ModalityImage:     registryv1.Modality_MODALITY_IMAGE,
	ModalityAudio:     registryv1.Modality_MODALITY_AUDIO,
	ModalityVideo:     registryv1.Modality_MODALITY_VIDEO,
	ModalityEmbedding: registryv1.Modality_MODALITY_EMBEDDING,
}

var hostingToProto = map[HostingState]registryv1.HostingState{
	HostingSubmitted:    registryv1.HostingState_HOSTING_STATE_SUBMITTED,
	HostingApproved:     registryv1.HostingState_HOSTING_STATE_APPROVED,
	HostingRejected:     registryv1.HostingState_HOSTING_STATE_REJECTED,
	HostingProvisioning: registryv1.HostingState_HOSTING_STATE_PROVISIONING,
	HostingActive:       registryv1.HostingState_HOSTING_STATE_ACTIVE,
}

// fromProto returns the key of m whose value is v, or the zero key.
func fromProto[D comparable, P comparable](m map[D]P, v P) D {
	for d, p := range m {
		if p == v {
			return d
		}
	}
	var zero D
	return zero
}

// modalitiesFromProto keeps unknown values as an invalid modality named after the number, so
// that validation names the field instead of dropping it silently.
func modalitiesFromProto(ms []registryv1.Modality) []Modality {
	if len(ms) == 0 {
		return nil
	}
	out := make([]Modality, len(ms))
	for i, m := range ms {
		if d := fromProto(modalityToProto, m); d != "" {
			out[i] = d
		} else {
			out[i] = Modality(m.String())
		}
	}
	return out
}

func modalitiesToProto(ms []Modality) []registryv1.Modality {
	if len(ms) == 0 {
		return nil
	}
	out := make([]registryv1.Modality, len(ms))
	for i, m := range ms {
		out[i] = modalityToProto[m]
	}
	return out
}

func timeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

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
		Family:                m.Card.Family,
		Version:               m.Card.Version,
		InputModalities:       modalitiesToProto(m.Card.InputModalities),
		OutputModalities:      modalitiesToProto(m.Card.OutputModalities),
		MaxOutputTokens:       m.Card.MaxOutputTokens,
		Capabilities: &registryv1.Capabilities{Tools: m.Card.Capabilities.Tools, Vision: m.Card.Capabilities.Vision,
			JsonOutput: m.Card.Capabilities.JSONOutput},
		PricePerImage:     m.Card.PricePerImage,
		Regions:           slices.Clone(m.Card.Regions),
		IntendedUses:      slices.Clone(m.Card.IntendedUses),
		UseCaseTags:       slices.Clone(m.Card.UseCaseTags),
		Limitations:       slices.Clone(m.Card.Limitations),
		EvaluationMetrics: maps.Clone(m.Card.EvaluationMetrics),
		License: &registryv1.License{Name: m.Card.License.Name, Url: m.Card.License.URL,
			Version: m.Card.License.Version, AcceptanceRequired: m.Card.License.AcceptanceRequired},
		DataHandling: &registryv1.DataHandling{RetentionDays: m.Card.DataHandling.RetentionDays,
			UsedForTraining: m.Card.DataHandling.UsedForTraining},
		SuccessorModel: m.Card.SuccessorModel,
		VendorModelId:  m.Card.VendorModelID,
		Etag:           m.Etag(),
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
		CoveredByBaa:   e.CoveredByBAA,
		Etag:           e.Etag(),
	}
}

// ModelFromProto converts a proto model (for admin APIs and resource files); validate the
// result before use.
func ModelFromProto(m *registryv1.Model) Model {
	out := Model{
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
		Card: ModelCard{
			Family:           m.GetFamily(),
			Version:          m.GetVersion(),
			InputModalities:  modalitiesFromProto(m.GetInputModalities()),
			OutputModalities: modalitiesFromProto(m.GetOutputModalities()),
			MaxOutputTokens:  m.GetMaxOutputTokens(),
			Capabilities: Capabilities{Tools: m.GetCapabilities().GetTools(), Vision: m.GetCapabilities().GetVision(),
				JSONOutput: m.GetCapabilities().GetJsonOutput()},
			PricePerImage:     m.GetPricePerImage(),
			Regions:           slices.Clone(m.GetRegions()),
			IntendedUses:      slices.Clone(m.GetIntendedUses()),
			UseCaseTags:       slices.Clone(m.GetUseCaseTags()),
			Limitations:       slices.Clone(m.GetLimitations()),
			EvaluationMetrics: maps.Clone(m.GetEvaluationMetrics()),
			License: License{Name: m.GetLicense().GetName(), URL: m.GetLicense().GetUrl(),
				Version: m.GetLicense().GetVersion(), AcceptanceRequired: m.GetLicense().GetAcceptanceRequired()},
			DataHandling:   DataHandling{UsedForTraining: m.GetDataHandling().GetUsedForTraining()},
			SuccessorModel: m.GetSuccessorModel(),
			VendorModelID:  m.GetVendorModelId(),
		}.Clone(),
	}
	if m.GetDataHandling() != nil && m.GetDataHandling().RetentionDays != nil {
		d := m.GetDataHandling().GetRetentionDays()
		out.Card.DataHandling.RetentionDays = &d
	}
	return out
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
		CoveredByBAA:   e.GetCoveredByBaa(),
	}
}

func transitionToProto(t Transition) *registryv1.ModelTransition {
	return &registryv1.ModelTransition{
		OrganizationId: t.OrganizationID,
		Model:          t.Model,
		FromState:      lifecycleToProto[t.From],
		ToState:        lifecycleToProto[t.To],
		Actor:          t.Actor,
		EvidenceNote:   t.EvidenceNote,
		CreateTime:     timeToProto(t.Time),
	}
}

func hostingToProtoMsg(h HostingRequest) *registryv1.HostingRequest {
	return &registryv1.HostingRequest{
		OrganizationId:    h.OrganizationID,
		Id:                h.ID,
		Requester:         h.Requester,
		Model:             h.Model,
		RequestsPerMinute: h.RequestsPerMinute,
		TokensPerMinute:   h.TokensPerMinute,
		Region:            h.Region,
		Justification:     h.Justification,
		State:             hostingToProto[h.State],
		DecidedBy:         h.DecidedBy,
		DecisionNote:      h.DecisionNote,
		DecideTime:        timeToProto(h.DecideTime),
		CreateTime:        timeToProto(h.CreateTime),
		UpdateTime:        timeToProto(h.UpdateTime),
		UpdatedBy:         h.UpdatedBy,
		StatusNote:        h.StatusNote,
		TeamId:            h.TeamID,
		Etag:              h.Etag(),
	}
}
