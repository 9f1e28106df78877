package registry

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

func TestConvertRoundTrip(t *testing.T) {
	m := Model{OrganizationID: "o", Name: "m", LifecycleState: LifecycleApproved, EndpointIDs: []string{"e"},
		FallbackModels: []string{"f1", "f2"}}
	assert.Equal(t, m, ModelFromProto(modelToProto(m)))

	for _, p := range Providers {
		e := Endpoint{OrganizationID: "o", ID: "e", Provider: p, BaseURL: "https://h", UpstreamModel: "u",
			Region: "r", Weight: 5, Priority: 2, APIVersion: "2024-10-21"}
		pe := endpointToProto(e)
		assert.NotEqual(t, registryv1.ProviderKind_PROVIDER_KIND_UNSPECIFIED, pe.GetProvider(), p)
		assert.Equal(t, e, EndpointFromProto(pe))
	}
	// Every kind the contract defines maps to a provider.
	for k := range registryv1.ProviderKind_name {
		if kind := registryv1.ProviderKind(k); kind != registryv1.ProviderKind_PROVIDER_KIND_UNSPECIFIED {
			assert.True(t, ProviderFromProto(kind).Valid(), kind)
		}
	}
	e := Endpoint{Weight: 5, Priority: 2, APIVersion: "v"}
	assert.True(t, proto.Equal(&registryv1.Endpoint{Weight: 5, Priority: 2, ApiVersion: "v", Etag: e.Etag()},
		endpointToProto(e)))
	covered := e
	covered.CoveredByBAA = true
	pe := endpointToProto(covered)
	assert.True(t, pe.GetCoveredByBaa())
	assert.Equal(t, covered, EndpointFromProto(pe))
	assert.NotEqual(t, e.Etag(), covered.Etag(), "coverage is part of the etag")
}

// An endpoint without BAA coverage keeps the etag it had before the field existed, so that
// an etag read before an upgrade still matches after it.
func TestEndpointEtagStableWithoutBAA(t *testing.T) {
	e := Endpoint{OrganizationID: "o", ID: "e", Provider: ProviderOpenAI, BaseURL: "https://x/v1", UpstreamModel: "m"}
	type before struct { // Endpoint as it was before CoveredByBAA
		OrganizationID, ID string
		Provider           Provider
		BaseURL            string
		UpstreamModel      string
		CredentialRef      string
		Region             string
		Weight             int32
		Priority           int32
		APIVersion         string
	}
	old := before{OrganizationID: "o", ID: "e", Provider: ProviderOpenAI, BaseURL: "https://x/v1", UpstreamModel: "m"}
	assert.Equal(t, etagOf(old), e.Etag())
}

func TestConvertCardRoundTrip(t *testing.T) {
	days := int32(0)
	m := Model{OrganizationID: "o", Name: "m", LifecycleState: LifecycleDeprecated, Card: ModelCard{
		Family: "f", Version: "v", InputModalities: []Modality{ModalityText, ModalityAudio},
		OutputModalities: []Modality{ModalityImage, ModalityVideo, ModalityEmbedding}, MaxOutputTokens: 10,
		Capabilities: Capabilities{Tools: true, JSONOutput: true}, PricePerImage: 0.5, Regions: []string{"eu"},
		IntendedUses: []string{"u"}, UseCaseTags: []string{"t"}, Limitations: []string{"l"},
		EvaluationMetrics: map[string]float64{"x": 1.5}, License: License{Name: "n", URL: "https://l", Version: "1", AcceptanceRequired: true},
		DataHandling: DataHandling{RetentionDays: &days, UsedForTraining: true}, SuccessorModel: "s", VendorModelID: "vm",
	}}
	pm := modelToProto(m)
	assert.Equal(t, m, ModelFromProto(pm))
	assert.Equal(t, m.Etag(), pm.GetEtag())
	assert.Equal(t, registryv1.LifecycleState_LIFECYCLE_STATE_DEPRECATED, pm.GetLifecycleState())

	// Unknown retention stays unknown; an unknown modality stays visible to validation.
	m.Card.DataHandling.RetentionDays = nil
	assert.Nil(t, ModelFromProto(modelToProto(m)).Card.DataHandling.RetentionDays)
	bad := ModelFromProto(&registryv1.Model{InputModalities: []registryv1.Modality{99}})
	assert.False(t, bad.Card.InputModalities[0].Valid())

	// Every modality and hosting state the contract defines maps both ways.
	for k := range registryv1.Modality_name {
		if v := registryv1.Modality(k); v != registryv1.Modality_MODALITY_UNSPECIFIED {
			assert.True(t, fromProto(modalityToProto, v).Valid(), v)
		}
	}
	for k := range registryv1.HostingState_name {
		if v := registryv1.HostingState(k); v != registryv1.HostingState_HOSTING_STATE_UNSPECIFIED {
			assert.True(t, fromProto(hostingToProto, v).Valid(), v)
		}
	}
}

func TestEtagChangesWithEveryField(t *testing.T) {
	base := Model{OrganizationID: "o", Name: "m", LifecycleState: LifecycleApproved}
	assert.Equal(t, base.Etag(), base.Clone().Etag())
	withEmpty := base
	withEmpty.EndpointIDs = []string{}
	assert.Equal(t, base.Etag(), withEmpty.Etag(), "empty and nil lists are the same content")
	seen := map[string]bool{base.Etag(): true}
	for _, change := range []func(*Model){
		func(m *Model) { m.ContextWindow = 1 },
		func(m *Model) { m.LifecycleState = LifecycleDeprecated },
		func(m *Model) { m.Card.Capabilities.Vision = true },
		func(m *Model) { m.Card.EvaluationMetrics = map[string]float64{"a": 1} },
		func(m *Model) { d := int32(0); m.Card.DataHandling.RetentionDays = &d },
	} {
		m := base
		change(&m)
		assert.False(t, seen[m.Etag()])
		seen[m.Etag()] = true
	}
}

func TestEffectiveWeight(t *testing.T) {
	assert.Equal(t, int32(1), Endpoint{}.EffectiveWeight())
	assert.Equal(t, int32(7), Endpoint{Weight: 7}.EffectiveWeight())
}
