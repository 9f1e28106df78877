package edge

import (
	"testing"

	"github.com/stretchr/testify/assert"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
)

// Policy sees each endpoint of the route with its region, provider and BAA coverage, which
// the HIPAA pack's conditions and obligations read as e.covered_by_baa.
func TestEndpointFacts(t *testing.T) {
	route := &registryv1.ResolveRouteResponse{Endpoints: []*registryv1.Endpoint{
		{Id: "plain", Region: "us-east-1", Provider: registryv1.ProviderKind_PROVIDER_KIND_OPENAI},
		{Id: "covered", Region: "eu-west-1", Provider: registryv1.ProviderKind_PROVIDER_KIND_BEDROCK, CoveredByBaa: true},
	}}
	facts := endpointFacts(route)
	if assert.Len(t, facts, 2) {
		assert.Equal(t, "plain", facts[0].GetId())
		assert.Equal(t, "us-east-1", facts[0].GetRegion())
		assert.Equal(t, "openai", facts[0].GetProvider())
		assert.False(t, facts[0].GetCoveredByBaa())
		assert.Equal(t, "covered", facts[1].GetId())
		assert.Equal(t, "bedrock", facts[1].GetProvider())
		assert.True(t, facts[1].GetCoveredByBaa())
	}
}
