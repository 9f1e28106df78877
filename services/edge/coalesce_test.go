package edge

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// feed is an upstream whose chunks the test releases one at a time.
type feed chan upstreamItem

func (f feed) Recv() (*dispatchv1.StreamGenerateResponse, error) {
	it, ok := <-f
	if !ok {
		return nil, io.EOF
	}
	return it.chunk, it.err
}

// readAhead starts a coalescer on items, all released at once, and waits until its reader
// holds them all, as when a burst reached the edge while it was busy.
func readAhead(t *testing.T, items ...upstreamItem) *coalescer {
	t.Helper()
	f := make(feed, len(items))
	t.Cleanup(func() { close(f) }) // the upstream ends with the test; the reader must stop
	for _, it := range items {
		f <- it
	}
	c := newCoalescer(t.Context(), f)
	require.Eventually(t, func() bool { return len(c.items) == len(items) }, 5*time.Second, time.Millisecond)
	return c
}

func textChunk(s string) upstreamItem {
	return upstreamItem{chunk: &dispatchv1.StreamGenerateResponse{TextDelta: s, EndpointId: "ep-1", ResponseModel: "m"}}
}

func TestCoalescerMergesABurst(t *testing.T) {
	final := upstreamItem{chunk: &dispatchv1.StreamGenerateResponse{
		FinishReason: typev1.FinishReason_FINISH_REASON_STOP, Usage: &typev1.Usage{TotalTokens: 7}, EndpointId: "ep-1",
	}}
	c := readAhead(t, textChunk("The "), textChunk("quick "), textChunk("fox"), final)
	got, err := c.Recv()
	require.NoError(t, err)
	assert.Equal(t, "The quick fox", got.GetTextDelta())
	assert.Equal(t, typev1.FinishReason_FINISH_REASON_STOP, got.GetFinishReason(), "the last chunk closes the merge")
	assert.Equal(t, int64(7), got.GetUsage().GetTotalTokens())
	assert.Equal(t, "ep-1", got.GetEndpointId())
	assert.Equal(t, "m", got.GetResponseModel())
}

func TestCoalescerKeepsOrder(t *testing.T) {
	toolCall := upstreamItem{chunk: &dispatchv1.StreamGenerateResponse{
		ToolCalls: []*typev1.ToolCallDelta{{Index: 0, Id: "c1", Name: "look", ArgumentsDelta: "{}"}},
	}}
	broken := errors.New("upstream stream interrupted")
	c := readAhead(t, textChunk("Looking"), toolCall, textChunk("Found it"), upstreamItem{err: broken})

	first, err := c.Recv()
	require.NoError(t, err)
	assert.Equal(t, "Looking", first.GetTextDelta())
	require.Len(t, first.GetToolCalls(), 1, "a tool call may join the text before it")

	second, err := c.Recv()
	require.NoError(t, err)
	assert.Equal(t, "Found it", second.GetTextDelta(), "text after a tool call starts a new chunk")
	assert.Empty(t, second.GetToolCalls())

	_, err = c.Recv()
	assert.ErrorIs(t, err, broken, "the error comes after every chunk before it")
}

func TestCoalescerDoesNotMergePastUsageSoFar(t *testing.T) {
	soFar := upstreamItem{chunk: &dispatchv1.StreamGenerateResponse{Usage: &typev1.Usage{OutputTokens: 2}}}
	c := readAhead(t, soFar, textChunk("late"))
	got, err := c.Recv()
	require.NoError(t, err)
	assert.Equal(t, int64(2), got.GetUsage().GetOutputTokens())
	assert.Empty(t, got.GetTextDelta())
}

func TestCoalescerNeverWaitsToMerge(t *testing.T) {
	f := make(feed) // unbuffered: the next chunk exists only when the test sends it
	t.Cleanup(func() { close(f) })
	c := newCoalescer(t.Context(), f)
	f <- textChunk("first")
	got, err := c.Recv()
	require.NoError(t, err, "a chunk goes out with nothing behind it")
	assert.Equal(t, "first", got.GetTextDelta())
	f <- textChunk("second")
	got, err = c.Recv()
	require.NoError(t, err)
	assert.Equal(t, "second", got.GetTextDelta())
}

func TestCoalescerEndsWithTheRequest(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	f := make(feed) // an upstream that sends nothing
	t.Cleanup(func() { close(f) })
	c := newCoalescer(ctx, f)
	cancel()
	_, err := c.Recv()
	assert.Equal(t, codes.Canceled, status.Code(err))
}
