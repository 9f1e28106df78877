package dispatch_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

func withWeight(ep *registryv1.Endpoint, priority, weight int32) *registryv1.Endpoint {
	ep.Priority, ep.Weight = priority, weight
	return ep
}

// TestWeightedSplit sends 2000 requests to two endpoints of one priority weighted 3:1. With a
// seeded RNG the split is deterministic; the tolerance (±100 around 1500, about five standard
// deviations of a fair draw) states what the split must be, whatever the seed.
func TestWeightedSplit(t *testing.T) {
	const n = 2000
	heavyURL, heavy := startSim(t, simulator.Config{})
	lightURL, light := startSim(t, simulator.Config{})
	reg := newFakeRegistry(
		withWeight(endpoint("ep-heavy", heavyURL, "m"), 0, 3),
		withWeight(endpoint("ep-light", lightURL, "m"), 0, 1),
	)
	h := start(t, reg, dispatch.Config{Rand: seededRand()})

	answered := map[string]int{}
	for range n {
		// The lighter endpoint first in the list: the order within a group is the draw's.
		res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-light", "ep-heavy"))
		require.NoError(t, err)
		answered[res.GetEndpointId()]++
	}
	assert.InDelta(t, 1500, answered["ep-heavy"], 100, "answers: %v", answered)
	assert.Equal(t, n, answered["ep-heavy"]+answered["ep-light"])
	assert.Equal(t, int64(answered["ep-heavy"]), heavy.Stats().Requests, "vendor requests match the answers")
	assert.Equal(t, int64(answered["ep-light"]), light.Stats().Requests)
}

func TestPriorityGroups(t *testing.T) {
	url, _ := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"down": simulator.FailWith(http.StatusServiceUnavailable, 0),
	}})
	backupURL, backup := startSim(t, simulator.Config{})
	reg := newFakeRegistry(
		withWeight(endpoint("ep-a", url, "a"), 0, 0), // weight 0 counts as 1
		withWeight(endpoint("ep-b", url, "b"), 0, 1),
		withWeight(endpoint("ep-backup", backupURL, "backup"), 1, 100),
		withWeight(endpoint("ep-a-down", url, "down"), 0, 1),
		withWeight(endpoint("ep-b-down", url, "down"), 0, 1),
	)
	h := start(t, reg, dispatch.Config{Rand: seededRand(), RetryBackoff: 1, MaxAttemptsPerEndpoint: 1, BreakerFailures: -1})

	t.Run("lower priority waits", func(t *testing.T) {
		answered := map[string]int{}
		for range 400 {
			res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-a", "ep-b", "ep-backup"))
			require.NoError(t, err)
			answered[res.GetEndpointId()]++
		}
		assert.Zero(t, answered["ep-backup"], "a heavier endpoint of a lower priority gets nothing while the first group answers")
		assert.InDelta(t, 200, answered["ep-a"], 50, "weight 0 counts as 1: %v", answered)
		assert.Equal(t, 400, answered["ep-a"]+answered["ep-b"])
		assert.Zero(t, backup.Stats().Requests)
	})
	t.Run("lower priority after the group failed", func(t *testing.T) {
		for range 20 {
			res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-a-down", "ep-b-down", "ep-backup"))
			require.NoError(t, err)
			assert.Equal(t, "ep-backup", res.GetEndpointId())
		}
		assert.Equal(t, int64(20), backup.Stats().Requests)
	})
	t.Run("an unknown endpoint keeps its place", func(t *testing.T) {
		res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-a-down", "ep-missing", "ep-b"))
		require.NoError(t, err)
		assert.Equal(t, "ep-b", res.GetEndpointId())
	})
}

// With the route's tiers, a fallback model's endpoint never shares the primary's group, even
// when their registry priorities are equal.
func TestTiersKeepFallbackModelsApart(t *testing.T) {
	url, _ := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{
		"down": simulator.FailWith(http.StatusServiceUnavailable, 0),
	}})
	fallbackURL, fallback := startSim(t, simulator.Config{})
	reg := newFakeRegistry(
		withWeight(endpoint("primary", url, "a"), 0, 1),
		withWeight(endpoint("primary-down", url, "down"), 0, 1),
		withWeight(endpoint("fallback-model", fallbackURL, "b"), 0, 100), // same priority, far heavier
	)
	h := start(t, reg, dispatch.Config{Rand: seededRand(), RetryBackoff: 1, MaxAttemptsPerEndpoint: 1, BreakerFailures: -1})

	for range 200 {
		req := generateRequest("hi", "primary", "fallback-model")
		req.EndpointTiers = []int32{0, 1}
		res, err := h.client.Generate(t.Context(), req)
		require.NoError(t, err)
		require.Equal(t, "primary", res.GetEndpointId())
	}
	assert.Zero(t, fallback.Stats().Requests, "the fallback model waits while the primary answers")

	req := generateRequest("hi", "primary-down", "fallback-model")
	req.EndpointTiers = []int32{0, 1}
	res, err := h.client.Generate(t.Context(), req)
	require.NoError(t, err)
	assert.Equal(t, "fallback-model", res.GetEndpointId(), "and answers once the primary's tier failed")

	req = generateRequest("hi", "primary", "fallback-model")
	req.EndpointTiers = []int32{1, 0}
	_, err = h.client.Generate(t.Context(), req)
	assert.Equal(t, codes.InvalidArgument, status.Code(err))
	assert.Contains(t, grpctest.BadRequestFields(err), "endpoint_tiers")
}
