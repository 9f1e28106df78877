package dispatch_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
	"github.com/fmgate/fmgate/internal/grpctest"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

func streamReq(ids ...string) *dispatchv1.StreamGenerateRequest {
	return &dispatchv1.StreamGenerateRequest{OrganizationId: org, EndpointIds: ids, Messages: userMessages("tell me more")}
}

func TestStreamTimeouts(t *testing.T) {
	hangURL, hang := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}})
	slowStartURL, _ := startSim(t, simulator.Config{Latency: 150 * time.Millisecond})
	stallURL, stall := startSim(t, simulator.Config{ChunkDelay: time.Hour})
	steadyURL, _ := startSim(t, simulator.Config{ChunkDelay: 10 * time.Millisecond})
	reg := newFakeRegistry(
		endpoint("ep-stuck", hangURL, "stuck"), endpoint("ep-good", hangURL, "good"),
		endpoint("ep-slow-start", slowStartURL, "m"), endpoint("ep-stall", stallURL, "m"),
		endpoint("ep-steady", steadyURL, "m"),
	)

	t.Run("first chunk late: fall back", func(t *testing.T) {
		h := start(t, reg, dispatch.Config{FirstTokenTimeout: 50 * time.Millisecond, MaxAttemptsPerEndpoint: 1})
		got, err := streamAll(t, h.client, streamReq("ep-stuck", "ep-good"))
		require.NoError(t, err)
		assert.Equal(t, "ep-good", got[len(got)-1].GetEndpointId())
		assert.Contains(t, h.logs.String(), "no first chunk within 50ms")
	})
	t.Run("first chunk late: no fallback", func(t *testing.T) {
		before := hang.Stats().Requests
		h := start(t, reg, dispatch.Config{FirstTokenTimeout: 20 * time.Millisecond, RetryBackoff: time.Millisecond})
		_, err := streamAll(t, h.client, streamReq("ep-stuck"))
		assert.Equal(t, codes.DeadlineExceeded, status.Code(err))
		assert.Equal(t, before+2, hang.Stats().Requests, "a timeout is retried")
	})
	t.Run("a slow start is not idleness", func(t *testing.T) {
		h := start(t, reg, dispatch.Config{FirstTokenTimeout: 5 * time.Second, StreamIdleTimeout: 30 * time.Millisecond})
		got, err := streamAll(t, h.client, streamReq("ep-slow-start"))
		require.NoError(t, err)
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, got[len(got)-1].GetFinishReason())
	})
	t.Run("stalled after the first chunk", func(t *testing.T) {
		h := start(t, reg, dispatch.Config{StreamIdleTimeout: 50 * time.Millisecond})
		got, err := streamAll(t, h.client, streamReq("ep-stall", "ep-good"))
		assert.Equal(t, codes.Unavailable, status.Code(err), "no fallback once a chunk was sent")
		require.Len(t, got, 2, "one chunk, then the usage so far")
		assert.Equal(t, "Simulated ", got[0].GetTextDelta())
		assert.Contains(t, h.logs.String(), "no chunk within 50ms")
		require.Eventually(t, func() bool { return stall.Stats().Canceled == 1 }, 5*time.Second, time.Millisecond,
			"the stalled vendor request was cancelled")
	})
	t.Run("a stream as a whole is not bounded by Timeout", func(t *testing.T) {
		h := start(t, reg, dispatch.Config{Timeout: 20 * time.Millisecond})
		got, err := streamAll(t, h.client, streamReq("ep-steady"))
		require.NoError(t, err)
		assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, got[len(got)-1].GetFinishReason())
	})
}

func TestConnectionRefusedFallsBack(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + l.Addr().String() + "/v1"
	require.NoError(t, l.Close())
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-closed", closed, "m"), endpoint("ep-good", url, "good")),
		dispatch.Config{RetryBackoff: time.Millisecond})
	res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-closed", "ep-good"))
	require.NoError(t, err)
	assert.Equal(t, "ep-good", res.GetEndpointId())
	assert.Equal(t, 2, strings.Count(h.logs.String(), `"endpoint_id":"ep-closed"`), "connection errors are retried once, then fall back")
}

// TestConnectTimeout dials a loopback listener whose accept queue is full, so that the kernel
// drops further connection attempts (Linux) and a dial hangs: ConnectTimeout ends it, and the
// fallback answers long before the kernel's own connect timeout.
func TestConnectTimeout(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux dropping SYNs to a listener whose accept queue is full")
	}
	addr := fullListener(t)
	url, _ := startSim(t, simulator.Config{})
	h := start(t, newFakeRegistry(endpoint("ep-full", "http://"+addr+"/v1", "m"), endpoint("ep-good", url, "good")),
		// Timeout bounds the test should ConnectTimeout not apply.
		dispatch.Config{ConnectTimeout: 50 * time.Millisecond, Timeout: 2 * time.Second, RetryBackoff: time.Millisecond})
	began := time.Now()
	res, err := h.client.Generate(t.Context(), generateRequest("hi", "ep-full", "ep-good"))
	require.NoError(t, err)
	assert.Equal(t, "ep-good", res.GetEndpointId())
	assert.Less(t, time.Since(began), 900*time.Millisecond, "well before the first SYN retransmission (1s)")
	assert.Contains(t, h.logs.String(), `"failure":"timeout"`)
}

// fullListener returns the address of a loopback listener with a backlog of 0 that never
// accepts, after filling its accept queue.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	require.NoError(t, syscall.Listen(fd, 0))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; ; i++ {
		require.Less(t, i, 16, "the accept queue never filled")
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			require.True(t, isNetTimeoutErr(err), "%v", err)
			return addr
		}
		t.Cleanup(func() { _ = c.Close() })
	}
}

func isNetTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestMidStreamUsage checks that a stream failing after its first chunks tells the caller the
// usage so far, in a last message before the error.
func TestMidStreamUsage(t *testing.T) {
	url, _ := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"flaky": simulator.CutAfter(3)}})
	h := start(t, newFakeRegistry(endpoint("ep-flaky", url, "flaky")), dispatch.Config{})
	got, err := streamAll(t, h.client, streamReq("ep-flaky"))

	require.Equal(t, codes.Unavailable, status.Code(err))
	assert.Equal(t, "UPSTREAM_STREAM_INTERRUPTED", grpctest.ErrorInfo(err).GetReason())
	// The first three chunks (merged or not: chunkSender), then the usage so far.
	require.GreaterOrEqual(t, len(got), 2)
	var text strings.Builder
	for _, m := range got[:len(got)-1] {
		text.WriteString(m.GetTextDelta())
		assert.Nil(t, m.GetUsage())
	}
	assert.Equal(t, "Simulated answer from ", text.String())
	last := got[len(got)-1]
	want := int64(utf8.RuneCountInString(text.String())+3) / 4 // one token per four characters
	assert.Equal(t, int64(6), want)
	assert.Equal(t, want, last.GetUsage().GetOutputTokens())
	assert.Equal(t, want, last.GetUsage().GetTotalTokens())
	assert.Zero(t, last.GetUsage().GetInputTokens(), "unknown")
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_UNSPECIFIED, last.GetFinishReason(), "not a finished answer")
	assert.Empty(t, last.GetTextDelta())
	assert.Equal(t, "ep-flaky", last.GetEndpointId())
	assert.Equal(t, "flaky", last.GetResponseModel())
}

// TestCancelReachesVendorWithin100ms checks that a caller going away ends the vendor request
// within 100 ms, measured from the cancellation to the moment the simulator sees its client
// leave.
func TestCancelReachesVendorWithin100ms(t *testing.T) {
	hangURL, hang := startSim(t, simulator.Config{Faults: map[string]simulator.Fault{"stuck": simulator.Hang()}})
	stallURL, stall := startSim(t, simulator.Config{ChunkDelay: time.Hour})
	h := start(t, newFakeRegistry(endpoint("ep-stuck", hangURL, "stuck"), endpoint("ep-stall", stallURL, "m")), dispatch.Config{})

	for _, tc := range []struct {
		name string
		sim  *simulator.Simulator
		// call makes the request; a stream closes chunk when its first chunk arrives.
		call      func(ctx context.Context, chunk chan<- struct{}) error
		waitChunk bool
	}{
		{"generate", hang, func(ctx context.Context, _ chan<- struct{}) error {
			_, err := h.client.Generate(ctx, generateRequest("hi", "ep-stuck"))
			return err
		}, false},
		{"stream before the first chunk", hang, func(ctx context.Context, _ chan<- struct{}) error {
			st, err := h.client.StreamGenerate(ctx, streamReq("ep-stuck"))
			if err != nil {
				return err
			}
			_, err = st.Recv()
			return err
		}, false},
		{"stream after the first chunk", stall, func(ctx context.Context, chunk chan<- struct{}) error {
			st, err := h.client.StreamGenerate(ctx, streamReq("ep-stall"))
			if err != nil {
				return err
			}
			if _, err := st.Recv(); err != nil {
				return err
			}
			close(chunk) // the simulator now waits an hour before the next chunk
			_, err = st.Recv()
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.sim.Stats()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			chunk := make(chan struct{})
			go func() { done <- tc.call(ctx, chunk) }()
			require.Eventually(t, func() bool { return tc.sim.Stats().Requests == before.Requests+1 }, 5*time.Second, time.Millisecond,
				"the vendor received the request")
			if tc.waitChunk {
				select {
				case <-chunk:
				case err := <-done:
					t.Fatalf("stream ended before its first chunk: %v", err)
				}
			}

			cancelled := time.Now()
			cancel()
			var seen time.Time
			require.Eventually(t, func() bool {
				if tc.sim.Stats().Canceled == before.Canceled+1 {
					seen = time.Now()
					return true
				}
				return false
			}, 5*time.Second, time.Millisecond, "the vendor saw its client leave")
			assert.LessOrEqual(t, seen.Sub(cancelled), 100*time.Millisecond)
			assert.Equal(t, codes.Canceled, status.Code(<-done))
		})
	}
}
