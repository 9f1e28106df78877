package moderation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScreenDefaultProfile(t *testing.T) {
	rules := BuiltinProfiles()[ProfileDefault].Input
	tests := []struct {
		name              string
		text              string
		want              string
		modified, blocked bool
		hits              []Hit
	}{
		{name: "clean", text: "What is the capital of France?", want: "What is the capital of France?"},
		{
			name: "email and card masked",
			text: "I am bob@example.com, card 4111 1111 1111 1111, and alice@example.org.",
			want: "I am [EMAIL], card [CARD], and [EMAIL].", modified: true,
			hits: []Hit{{DetectorEmail, ActionMask, 2}, {DetectorCreditCard, ActionMask, 1}},
		},
		{
			name: "secret blocks",
			text: "use AKIAIOSFODNN7EXAMPLE for bob@example.com",
			want: "use AKIAIOSFODNN7EXAMPLE for [EMAIL]", modified: true, blocked: true,
			hits: []Hit{{DetectorEmail, ActionMask, 1}, {DetectorSecret, ActionBlock, 1}},
		},
		{
			// The address's local part takes the last group; the twelve digits left are
			// no card.
			name: "address glued to digits",
			text: "4111 1111 1111 1111x@example.com",
			want: "4111 1111 1111 [EMAIL]", modified: true,
			hits: []Hit{{DetectorEmail, ActionMask, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Screen(rules, tt.text)
			assert.Equal(t, tt.want, res.Text)
			assert.Equal(t, tt.modified, res.Modified)
			assert.Equal(t, tt.blocked, res.Blocked)
			assert.Equal(t, tt.hits, res.Hits)
		})
	}
}

func TestScreenMasksUntilSettled(t *testing.T) {
	for _, text := range []string{
		"4111 1111 1111 1111 1111x@example.com",
		"x@a.co-5555555555554444 y@b.co",
		prompt4K(),
	} {
		res := Screen(BuiltinProfiles()[ProfileDefault].Input, text)
		for _, d := range []Detector{EmailDetector{}, CardDetector{}} {
			assert.Empty(t, d.Find(res.Text), "%s in %q", d.Name(), res.Text)
		}
		assert.True(t, res.Modified)
		assert.False(t, res.Blocked)
	}
}

func TestScreenStrictAndPermissive(t *testing.T) {
	text := "bob@example.com"
	strict := Screen(BuiltinProfiles()[ProfileStrict].Input, text)
	assert.True(t, strict.Blocked)
	assert.False(t, strict.Modified)
	assert.Equal(t, text, strict.Text)

	permissive := Screen(BuiltinProfiles()[ProfilePermissive].Output, text)
	assert.False(t, permissive.Blocked)
	assert.False(t, permissive.Modified)
	assert.Equal(t, text, permissive.Text)
	assert.Equal(t, []Hit{{DetectorEmail, ActionLog, 1}}, permissive.Hits)
}

func TestMask(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		spans []Span
		want  string
	}{
		{"none", "abc", nil, "abc"},
		{"one", "abcdef", []Span{{1, 3}}, "a[X]def"},
		{"unsorted", "abcdef", []Span{{4, 5}, {0, 1}}, "[X]bcd[X]f"},
		{"overlapping", "abcdef", []Span{{1, 4}, {2, 5}}, "a[X]f"},
		{"nested", "abcdef", []Span{{0, 6}, {2, 3}}, "[X]"},
		{"touching", "abcdef", []Span{{0, 2}, {2, 4}}, "[X][X]ef"},
		{"clipped", "abc", []Span{{-2, 1}, {2, 10}}, "[X]b[X]"},
		{"empty and inverted", "abc", []Span{{1, 1}, {2, 1}, {5, 7}}, "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Mask(tt.text, tt.spans, "[X]"))
		})
	}
}

func TestBuiltinProfilesAreValid(t *testing.T) {
	profiles := BuiltinProfiles()
	require.Len(t, profiles, 3)
	for name, p := range profiles {
		assert.Equal(t, name, p.Name)
		assert.NoError(t, p.Validate())
	}
	bad := Profile{Name: "bad", Input: []Rule{{nil, ActionMask}, {EmailDetector{}, 0}, {EmailDetector{}, ActionLog}}}
	err := bad.Validate()
	require.Error(t, err)
	for _, want := range []string{"detector is required", "unknown action", "appears twice"} {
		assert.ErrorContains(t, err, want)
	}
	// Each call returns a new map the caller may change.
	delete(profiles, ProfileDefault)
	assert.Contains(t, BuiltinProfiles(), ProfileDefault)
}

// prompt4K is a 4 KB prompt of prose with a few addresses, card numbers and numbers that are
// not cards, as a user might paste.
func prompt4K() string {
	para := "Please summarise the ticket below. Customer Jane Doe (jane.doe@example.com) paid " +
		"with 4111 1111 1111 1111 on 2024-01-05 and called +1 555-123-4567 about order 12345678. " +
		"The agent replied from support@corp.example.org with reference 5555-5555-5555-4444. "
	var b strings.Builder
	for b.Len() < 4096 {
		b.WriteString(para)
		b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor. ")
	}
	return b.String()[:4096]
}

func BenchmarkScreen4K(b *testing.B) {
	rules := BuiltinProfiles()[ProfileDefault].Input
	text := prompt4K()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Screen(rules, text)
	}
}

func BenchmarkScreen4KClean(b *testing.B) {
	rules := BuiltinProfiles()[ProfileDefault].Input
	text := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit 2024. ", 70)[:4096]
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		Screen(rules, text)
	}
}
