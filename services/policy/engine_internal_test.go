package policy

import (
	"strings"
	"testing"
	"unicode/utf8"

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

func TestReasonDescription(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{" .\n", ""},
		{"HIPAA pack v1: refuses principals handling PHI.", ": HIPAA pack v1: refuses principals handling PHI"},
		{"two\nlines,\t  spaced", ": two lines, spaced"},
		{strings.Repeat("word ", 60), ": " + strings.TrimSpace(strings.Repeat("word ", 39)) + "..."},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, reasonDescription(tt.in), "%q", tt.in)
	}

	// Bounded, whatever the description: cut between runes, at a space when there is one.
	for _, in := range []string{strings.Repeat("é", 600), strings.Repeat("x", 1024), strings.Repeat("ab, ", 256)} {
		got := reasonDescription(in)
		assert.LessOrEqual(t, len(got), len(": ")+maxReasonDescription, "%q", in)
		assert.True(t, utf8.ValidString(got), got)
		assert.True(t, strings.HasSuffix(got, "..."), got)
		assert.Greater(t, len(got), maxReasonDescription/2, "a cut keeps most of what fits")
	}
}
