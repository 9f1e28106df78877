package dispatch_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/apierr"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

// scriptStep is a scripted vendor failure: an HTTP status with headers, in OpenAI's error shape.
type scriptStep struct {
	status int
	header map[string]string
}

// scriptedVendor is a vendor that fails its first requests as scripted and then passes requests to a
// simulator. It counts every request it receives.
type scriptedVendor struct {
	sim   *simulator.Simulator
	mu    sync.Mutex
	steps []scriptStep
	calls atomic.Int64
}

func (s *scriptedVendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	s.mu.Lock()
	var st *scriptStep
	if len(s.steps) > 0 {
		st = &s.steps[0]
		s.steps = s.steps[1:]
	}
	s.mu.Unlock()
	if st == nil {
		s.sim.ServeHTTP(w, r)
		return
	}
	for k, v := range st.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(st.status)
	_, _ = w.Write([]byte(`{"error":{"message":"scripted failure","type":"server_error","param":null,"code":null}}`))
}

// startScripted serves a scripted vendor on loopback and returns its /v1 URL.
func startScripted(t *testing.T, steps ...scriptStep) (string, *scriptedVendor) {
	t.Helper()
	s := &scriptedVendor{sim: simulator.New(simulator.Config{APIKey: secret}), steps: steps}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL + "/v1", s
}

func failStatus(code int) scriptStep { return scriptStep{status: code} }

func seededRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func TestRetry(t *testing.T) {
	limited := func(h map[string]string) scriptStep { return scriptStep{status: http.StatusTooManyRequests, header: h} }
	for _, tc := range []struct {
		name    string
		cfg     dispatch.Config
		a, b    []scriptStep // scripts of endpoints ep-a and ep-b; b nil: ep-a alone
		code    codes.Code
		from    string        // the endpoint that answers, when code is OK
		calls   [2]int64      // requests received by ep-a and ep-b
		atLeast time.Duration // the call takes at least this long
		atMost  time.Duration // and at most this (0: unchecked)
	}{
		{name: "500 then success on the same endpoint", a: []scriptStep{failStatus(500)},
			code: codes.OK, from: "ep-a", calls: [2]int64{2, 0}},
		{name: "503 twice falls back", a: []scriptStep{failStatus(503), failStatus(503)}, b: []scriptStep{},
			code: codes.OK, from: "ep-b", calls: [2]int64{2, 1}},
		{name: "attempts per endpoint", cfg: dispatch.Config{MaxAttemptsPerEndpoint: 3}, a: []scriptStep{failStatus(500), failStatus(502)},
			code: codes.OK, from: "ep-a", calls: [2]int64{3, 0}},
		{name: "no retries with one attempt per endpoint", cfg: dispatch.Config{MaxAttemptsPerEndpoint: 1}, a: []scriptStep{failStatus(500)},
			code: codes.Unavailable, calls: [2]int64{1, 0}},
		{name: "retry budget spent", cfg: dispatch.Config{MaxAttemptsPerEndpoint: 5, MaxRetries: 1},
			a: []scriptStep{failStatus(500), failStatus(500), failStatus(500)}, b: []scriptStep{failStatus(500), failStatus(500)},
			code: codes.Unavailable, calls: [2]int64{2, 1}},
		{name: "no retry budget", cfg: dispatch.Config{MaxRetries: -1}, a: []scriptStep{failStatus(500)}, b: []scriptStep{},
			code: codes.OK, from: "ep-b", calls: [2]int64{1, 1}},
		{name: "Retry-After honoured", a: []scriptStep{limited(map[string]string{"Retry-After-Ms": "60"})},
			code: codes.OK, from: "ep-a", calls: [2]int64{2, 0}, atLeast: 60 * time.Millisecond},
		{name: "Retry-After beyond MaxRetryAfter falls back at once", a: []scriptStep{limited(map[string]string{"Retry-After": "30"})}, b: []scriptStep{},
			code: codes.OK, from: "ep-b", calls: [2]int64{1, 1}, atMost: time.Second},
		{name: "Retry-After beyond MaxRetryAfter with no fallback", a: []scriptStep{limited(map[string]string{"Retry-After": "30"})},
			code: codes.ResourceExhausted, calls: [2]int64{1, 0}, atMost: time.Second},
		{name: "bad request is not retried", a: []scriptStep{failStatus(400)}, b: []scriptStep{},
			code: codes.InvalidArgument, calls: [2]int64{1, 0}},
		{name: "other 4xx is not retried", a: []scriptStep{failStatus(404)}, b: []scriptStep{},
			code: codes.FailedPrecondition, calls: [2]int64{1, 0}},
		{name: "rejected credential falls back without a retry", a: []scriptStep{failStatus(401), failStatus(401)}, b: []scriptStep{},
			code: codes.OK, from: "ep-b", calls: [2]int64{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			urlA, a := startScripted(t, tc.a...)
			ids := []string{"ep-a"}
			eps := []*registryv1.Endpoint{endpoint("ep-a", urlA, "model-a")}
			b := &scriptedVendor{}
			if tc.b != nil {
				var urlB string
				urlB, b = startScripted(t, tc.b...)
				ids = append(ids, "ep-b")
				eps = append(eps, endpoint("ep-b", urlB, "model-b"))
			}
			cfg := tc.cfg
			cfg.RetryBackoff, cfg.Rand = time.Millisecond, seededRand()
			h := start(t, newFakeRegistry(eps...), cfg)

			began := time.Now()
			res, err := h.client.Generate(t.Context(), generateRequest("hi", ids...))
			took := time.Since(began)
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			if tc.code == codes.OK {
				assert.Equal(t, tc.from, res.GetEndpointId())
			}
			assert.Equal(t, tc.calls, [2]int64{a.calls.Load(), b.calls.Load()}, "requests to ep-a, ep-b")
			assert.GreaterOrEqual(t, took, tc.atLeast)
			if tc.atMost > 0 {
				assert.Less(t, took, tc.atMost)
			}
			if tc.code == codes.ResourceExhausted {
				d, ok := apierr.RetryAfter(err)
				require.True(t, ok, "RetryInfo")
				assert.Equal(t, 30*time.Second, d, "the vendor's delay reaches the caller")
			}
		})
	}
}

func TestRetryStream(t *testing.T) {
	t.Run("retried before the first chunk", func(t *testing.T) {
		url, v := startScripted(t, failStatus(503))
		h := start(t, newFakeRegistry(endpoint("ep-a", url, "model-a")), dispatch.Config{RetryBackoff: time.Millisecond})
		got, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
			OrganizationId: org, EndpointIds: []string{"ep-a"}, Messages: userMessages("hi"),
		})
		require.NoError(t, err)
		require.NotEmpty(t, got)
		assert.Equal(t, "ep-a", got[len(got)-1].GetEndpointId())
		assert.Equal(t, int64(2), v.calls.Load())
	})
	t.Run("never retried after the first chunk", func(t *testing.T) {
		url, sim := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(2)}})
		reg := newFakeRegistry(endpoint("ep-flaky", url, "flaky"), endpoint("ep-good", url, "good"))
		h := start(t, reg, dispatch.Config{RetryBackoff: time.Millisecond, MaxAttemptsPerEndpoint: 3})
		_, err := streamAll(t, h.client, &dispatchv1.StreamGenerateRequest{
			OrganizationId: org, EndpointIds: []string{"ep-flaky", "ep-good"}, Messages: userMessages("hi"),
		})
		assert.Equal(t, codes.Unavailable, status.Code(err))
		assert.Equal(t, int64(1), sim.Stats().Requests, "one attempt, no retry, no fallback")
	})
}

// TestRetryWaitEndsWithTheCaller checks that a backoff wait stops when the caller goes away,
// and that a wait that would outlast the caller's deadline is not started.
func TestRetryWaitEndsWithTheCaller(t *testing.T) {
	long := scriptStep{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After-Ms": "600000"}}
	cfg := dispatch.Config{MaxRetryAfter: time.Hour}

	t.Run("cancel", func(t *testing.T) {
		url, v := startScripted(t, long)
		h := start(t, newFakeRegistry(endpoint("ep-a", url, "model-a")), cfg)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := h.client.Generate(ctx, generateRequest("hi", "ep-a"))
			done <- err
		}()
		require.Eventually(t, func() bool { return v.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
		cancel()
		select {
		case err := <-done:
			assert.Equal(t, codes.Canceled, status.Code(err))
		case <-time.After(5 * time.Second):
			t.Fatal("the retry wait outlived the caller")
		}
		assert.Equal(t, int64(1), v.calls.Load())
	})
	t.Run("deadline", func(t *testing.T) {
		urlA, a := startScripted(t, long)
		urlB, b := startScripted(t)
		h := start(t, newFakeRegistry(endpoint("ep-a", urlA, "model-a"), endpoint("ep-b", urlB, "model-b")), cfg)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		res, err := h.client.Generate(ctx, generateRequest("hi", "ep-a", "ep-b"))
		require.NoError(t, err)
		assert.Equal(t, "ep-b", res.GetEndpointId(), "a 10-minute wait does not fit in 30 seconds: fall back")
		assert.Equal(t, [2]int64{1, 1}, [2]int64{a.calls.Load(), b.calls.Load()})
	})
}
