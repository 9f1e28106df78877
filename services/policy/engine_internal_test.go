package policy

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIntersectRegions(t *testing.T) {
	tests := []struct {
		a, b, want []string
	}{
		{[]string{"eu-*"}, []string{"eu-west-1"}, []string{"eu-west-1"}},
		{[]string{"eu-west-1"}, []string{"eu-*"}, []string{"eu-west-1"}},
		{[]string{"eu-*"}, []string{"eu-west-*"}, []string{"eu-west-*"}},
		{[]string{"eu-west-*"}, []string{"eu-*"}, []string{"eu-west-*"}},
		{[]string{"*"}, []string{"us-east-1", "eu-*"}, []string{"us-east-1", "eu-*"}},
		{[]string{"eu-*", "europe-*"}, []string{"europe-west4", "eu-west-1", "us-east-1"}, []string{"eu-west-1", "europe-west4"}},
		{[]string{"eu-west-1"}, []string{"eu-west-1"}, []string{"eu-west-1"}},
		{[]string{"eu-west-1"}, []string{"eu-west-2"}, nil},
		{[]string{"eu-*"}, []string{"us-*"}, nil},
		{[]string{"eu-*", "eu-west-*"}, []string{"eu-west-1"}, []string{"eu-west-1"}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, intersectRegions(tt.a, tt.b), "%v ∩ %v", tt.a, tt.b)
	}
}

func TestRegionAllowed(t *testing.T) {
	allowed := []string{"eu-*", "us-east-1"}
	assert.True(t, regionAllowed("eu-west-1", allowed))
	assert.True(t, regionAllowed("us-east-1", allowed))
	assert.False(t, regionAllowed("us-east-10", allowed))
	assert.False(t, regionAllowed("europe-west4", allowed))
	assert.False(t, regionAllowed("", []string{"*"}), "an endpoint without a region satisfies no restriction")
}
