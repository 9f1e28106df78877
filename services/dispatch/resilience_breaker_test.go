package dispatch_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

func TestCircuitBreaker(t *testing.T) {
	const cooldown = 500 * time.Millisecond
	// ep-bad fails three times (opening its circuit), fails the first probe (reopening it),
	// then recovers.
	badURL, bad := startScripted(t, failStatus(500), failStatus(502), failStatus(503), failStatus(500))
	goodURL, good := startSim(t, simulator.Config{})
	otherOrg := endpoint("ep-bad", goodURL, "other")
	otherOrg.OrganizationId = "org-2"
	reg := newFakeRegistry(endpoint("ep-bad", badURL, "bad"), endpoint("ep-good", goodURL, "good"), otherOrg)
	h := start(t, reg, dispatch.Config{
		BreakerFailures: 3, BreakerCooldown: cooldown, MaxAttemptsPerEndpoint: 1,
		// The endpoint cache refreshes all the time; the breaker's state outlives its entries.
		EndpointCacheTTL: time.Millisecond,
	})
	generate := func() string {
		t.Helper()
		res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-bad", "ep-good"))
		require.NoError(t, err)
		return res.GetEndpointId()
	}

	for range 3 {
		assert.Equal(t, "ep-good", generate())
	}
	require.Equal(t, int64(3), bad.calls.Load())
	assert.Contains(t, h.logs.String(), "endpoint circuit open")

	// Open: the fallback answers, and ep-bad sees nothing, for generations and streams.
	opened := time.Now()
	for range 5 {
		assert.Equal(t, "ep-good", generate())
	}
	got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
		OrganizationId: org, EndpointIds: []string{"ep-bad", "ep-good"}, Messages: userMessages("hi"),
	})
	require.NoError(t, err)
	assert.Equal(t, "ep-good", got[len(got)-1].GetEndpointId())
	require.Less(t, time.Since(opened), cooldown, "the checks above ran within the cool-down")
	assert.Equal(t, int64(3), bad.calls.Load(), "no request reaches an open circuit's endpoint")
	assert.Equal(t, int64(9), good.Stats().Requests)

	// Another organisation's endpoint of the same id has a breaker of its own.
	res, err := h.client.Generate(t.Context(), &dispatchv1.GenerateRequest{
		OrganizationId: "org-2", EndpointIds: []string{"ep-bad"}, Messages: userMessages("hi"),
	})
	require.NoError(t, err)
	assert.Equal(t, "Simulated answer from other. You said: hi", res.GetMessage().GetContent()[0].GetText())

	// After the cool-down one probe goes through; it fails, and the circuit opens again.
	require.Eventually(t, func() bool {
		assert.Equal(t, "ep-good", generate())
		return bad.calls.Load() == 4
	}, 10*cooldown, 10*time.Millisecond, "a probe after the cool-down")
	assert.Equal(t, "ep-good", generate())
	assert.Equal(t, int64(4), bad.calls.Load(), "the failed probe reopened the circuit")

	// The next probe succeeds and closes the circuit: ep-bad answers again.
	require.Eventually(t, func() bool { return generate() == "ep-bad" }, 10*cooldown, 10*time.Millisecond)
	assert.Equal(t, "ep-bad", generate())
	assert.Equal(t, int64(6), bad.calls.Load())
}

// TestCircuitBreakerIgnoresTheRequestsFaults checks that failures of the request itself (a
// vendor 400) do not open the circuit: the endpoint is healthy.
func TestCircuitBreakerIgnoresTheRequestsFaults(t *testing.T) {
	url, v := startScripted(t, failStatus(400), failStatus(400), failStatus(400), failStatus(400))
	h := start(t, newFakeRegistry(endpoint("ep-a", url, "a")), dispatch.Config{BreakerFailures: 2})
	for range 4 {
		_, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-a"))
		require.Error(t, err)
	}
	res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-a"))
	require.NoError(t, err)
	assert.Equal(t, "ep-a", res.GetEndpointId())
	assert.Equal(t, int64(5), v.calls.Load())
}
