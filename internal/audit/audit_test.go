package audit_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fmgate/fmgate/internal/audit"
)

func sample() audit.Event {
	return audit.Event{
		ID: "01J00000000000000000000000", OrganizationID: "acme", Service: "edge",
		Time:     time.Date(2026, 1, 2, 3, 4, 5, 6_000, time.UTC),
		Actor:    audit.Actor{Subject: "key_123", Kind: "api_key"},
		Action:   "generation",
		Resource: audit.Resource{Type: "model", ID: "gpt-x"},
		Details: audit.JSON(audit.Generation{Model: "gpt-x", Endpoint: "azure-eu", PolicyVerdict: "allow",
			InputTokens: 12, OutputTokens: 34, CostMicros: 560}),
		TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

// The encoding is a format: records hashed today must verify with tomorrow's code. This
// known answer, computed independently from the package documentation's definition (a
// few lines of Python's hashlib and struct), pins it.
func TestComputeHashKnownAnswer(t *testing.T) {
	e, err := audit.Normalize(sample())
	require.NoError(t, err)
	first := audit.Link(e, 0, nil)
	assert.Equal(t, int64(1), first.Sequence)
	assert.Equal(t, "8faa2750f6e8a1d4a34b7d041507bccd4a14d2e9b464d9c6d95e4fa9245d9cca", first.Hash.String())
	second := audit.Link(e, 1, first.Hash)
	assert.Equal(t, first.Hash, second.PrevHash)
	assert.NotEqual(t, first.Hash, second.Hash, "the sequence and previous hash are covered")
}

// Every field is covered, and length prefixes keep shifted bytes from colliding.
func TestComputeHashCoversEveryField(t *testing.T) {
	base, err := audit.Normalize(sample())
	require.NoError(t, err)
	base = audit.Link(base, 4, audit.Hash{1, 2, 3})
	tests := map[string]func(*audit.Event){
		"prev hash":       func(e *audit.Event) { e.PrevHash = audit.Hash{1, 2, 4} },
		"sequence":        func(e *audit.Event) { e.Sequence++ },
		"id":              func(e *audit.Event) { e.ID += "x" },
		"organization":    func(e *audit.Event) { e.OrganizationID = "acmf" },
		"service":         func(e *audit.Event) { e.Service = "policy" },
		"time":            func(e *audit.Event) { e.Time = e.Time.Add(time.Microsecond) },
		"actor subject":   func(e *audit.Event) { e.Actor.Subject = "key_124" },
		"actor kind":      func(e *audit.Event) { e.Actor.Kind = "user" },
		"action":          func(e *audit.Event) { e.Action = "generations" },
		"resource type":   func(e *audit.Event) { e.Resource.Type = "models" },
		"resource id":     func(e *audit.Event) { e.Resource.ID = "gpt-y" },
		"before":          func(e *audit.Event) { e.Before = json.RawMessage(`{}`) },
		"after":           func(e *audit.Event) { e.After = json.RawMessage(`{}`) },
		"details":         func(e *audit.Event) { e.Details = json.RawMessage(`{}`) },
		"trace id":        func(e *audit.Event) { e.TraceID = "" },
		"bytes shifted":   func(e *audit.Event) { e.Actor.Subject, e.Actor.Kind = "key_123a", "pi_key" },
		"service shifted": func(e *audit.Event) { e.OrganizationID, e.Service = "acmee", "dge" },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			e := base
			mutate(&e)
			assert.NotEqual(t, base.Hash, audit.ComputeHash(e))
		})
	}
}

func TestNormalize(t *testing.T) {
	e := sample()
	e.Time = time.Date(2026, 1, 2, 4, 4, 5, 6_789, time.FixedZone("CET", 3600))
	e.Before = json.RawMessage(" {\"b\": 1.50, \"a\": [true, null]} ")
	e.After = json.RawMessage("null")
	e.Sequence, e.Hash = 9, audit.Hash{1}
	n, err := audit.Normalize(e)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 1, 2, 3, 4, 5, 6_000, time.UTC), n.Time)
	assert.Equal(t, `{"a":[true,null],"b":1.50}`, string(n.Before))
	assert.Nil(t, n.After, `"null" is absent`)
	assert.Zero(t, n.Sequence, "the store assigns the chain fields")
	assert.Nil(t, n.Hash)
	again, err := audit.Normalize(n)
	require.NoError(t, err)
	assert.Equal(t, n, again, "normalising is idempotent")
}

func TestPageToken(t *testing.T) {
	c := audit.Cursor{Time: time.Date(2026, 1, 2, 3, 4, 5, 6_000, time.UTC), Service: "edge", Sequence: 42}
	got, ok, err := audit.DecodePageToken(audit.EncodePageToken(c))
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, c, got)
	_, ok, err = audit.DecodePageToken("")
	require.NoError(t, err)
	assert.False(t, ok)
}

func FuzzDecodePageToken(f *testing.F) {
	f.Add(audit.EncodePageToken(audit.Cursor{Time: time.Unix(1, 0), Service: "edge", Sequence: 1}))
	f.Add("YTE6e30")
	f.Add("garbage!")
	f.Fuzz(func(t *testing.T, token string) {
		c, ok, err := audit.DecodePageToken(token)
		if err != nil || !ok {
			return
		}
		again, _, err := audit.DecodePageToken(audit.EncodePageToken(c))
		require.NoError(t, err)
		assert.Equal(t, c, again)
	})
}
