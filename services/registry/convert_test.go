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
	assert.True(t, proto.Equal(&registryv1.Endpoint{Weight: 5, Priority: 2, ApiVersion: "v"},
		endpointToProto(Endpoint{Weight: 5, Priority: 2, APIVersion: "v"})))
}

func TestEffectiveWeight(t *testing.T) {
	assert.Equal(t, int32(1), Endpoint{}.EffectiveWeight())
	assert.Equal(t, int32(7), Endpoint{Weight: 7}.EffectiveWeight())
}
