package chunkmerge

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

func text(s string) *dispatchv1.StreamGenerateResponse {
	return &dispatchv1.StreamGenerateResponse{TextDelta: s, EndpointId: "ep-1", ResponseModel: "m"}
}

func call(args string) *dispatchv1.StreamGenerateResponse {
	return &dispatchv1.StreamGenerateResponse{ToolCalls: []*typev1.ToolCallDelta{{Index: 0, ArgumentsDelta: args}}}
}

func TestOnePieceIsKeptAsItIs(t *testing.T) {
	var b Builder
	assert.True(t, b.Empty())
	first := text("Hello")
	b.Add(first)
	assert.Equal(t, 5, b.TextLen())
	assert.Same(t, first, b.Take())
	assert.True(t, b.Empty())
}

func TestTextThenToolCallsJoin(t *testing.T) {
	var b Builder
	for _, p := range []*dispatchv1.StreamGenerateResponse{text("The "), text("answer"), call(`{"q":`), call(`1}`)} {
		require.True(t, b.CanAdd(p))
		b.Add(p)
	}
	assert.False(t, b.CanAdd(text("after")), "text after a tool call would be read before it")
	assert.True(t, b.CanAdd(call("more")))
	assert.Equal(t, 10, b.TextLen())
	m := b.Take()
	assert.Equal(t, "The answer", m.GetTextDelta())
	require.Len(t, m.GetToolCalls(), 2)
	assert.Equal(t, `{"q":1}`, m.GetToolCalls()[0].GetArgumentsDelta()+m.GetToolCalls()[1].GetArgumentsDelta())
	assert.Equal(t, "ep-1", m.GetEndpointId())
	assert.Equal(t, "m", m.GetResponseModel())
}

func TestTheEndClosesAMessage(t *testing.T) {
	for name, end := range map[string]*dispatchv1.StreamGenerateResponse{
		"finish":       {FinishReason: typev1.FinishReason_FINISH_REASON_STOP, Usage: &typev1.Usage{TotalTokens: 3}},
		"usage so far": {Usage: &typev1.Usage{OutputTokens: 2}},
	} {
		t.Run(name, func(t *testing.T) {
			var b Builder
			b.Add(text("done"))
			require.True(t, b.CanAdd(end))
			b.Add(end)
			assert.True(t, b.Closed())
			assert.False(t, b.CanAdd(call("{}")), "nothing joins after the end")
			m := b.Take()
			assert.Equal(t, "done", m.GetTextDelta())
			assert.Equal(t, end.GetFinishReason(), m.GetFinishReason())
			assert.Equal(t, end.GetUsage().GetTotalTokens(), m.GetUsage().GetTotalTokens())
			assert.Equal(t, end.GetUsage().GetOutputTokens(), m.GetUsage().GetOutputTokens())
		})
	}
}

func TestTakeStartsAfresh(t *testing.T) {
	var b Builder
	b.Add(text("a"))
	b.Add(text("b"))
	assert.Equal(t, "ab", b.Take().GetTextDelta())
	b.Add(text("c"))
	assert.Equal(t, "c", b.Take().GetTextDelta(), "nothing of the previous message is left")
}
