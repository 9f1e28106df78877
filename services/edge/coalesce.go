package edge

import (
	"context"
	"strings"

	"google.golang.org/grpc/status"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// Coalescing limits: a merged chunk stops growing at either, so that one event never holds
// an unbounded share of an answer.
const (
	coalesceMaxChunks = 64
	coalesceMaxText   = 16 << 10
	// coalesceBuffer is how many upstream chunks are read ahead of the caller.
	coalesceBuffer = 64
)

type upstreamItem struct {
	chunk *dispatchv1.StreamGenerateResponse
	err   error
}

// coalescer reads dispatch's stream ahead of the caller, on its own goroutine, and hands the
// caller everything that has already arrived as one chunk: the text pieces concatenated,
// the tool-call pieces in order. It never waits for a chunk to merge: a chunk goes out as
// soon as the caller asks for one, together with only what came in while the caller was
// busy with the previous one.
//
// Why: a vendor (or a fast local model) can send a burst of chunks faster than they can be
// screened and sent one by one. One by one, each costs a moderation round trip and a
// message to the caller, and gRPC's transport flushes a server stream only when its queue
// runs empty, so the first token of a burst reached the caller only after the whole burst
// had been processed (about half a millisecond for 60 chunks, BenchmarkAddedStreamLatency).
// Merged, a burst is a few messages and the first token leaves at once. At a vendor's usual
// pace nothing is waiting and every chunk goes out as it came.
//
// The order of the answer is kept: text after a tool-call piece starts a new chunk (the
// caller sees text and tool calls in the order the model produced them), and the last chunk
// (finish reason and usage), an interrupted stream's usage-so-far and the error that ends a
// stream are delivered after everything before them.
type coalescer struct {
	ctx     context.Context
	items   chan upstreamItem
	pending *upstreamItem
	text    strings.Builder
}

// newCoalescer starts reading up; the reader stops when up fails or ends, or when ctx (the
// request's context, which also governs up) is done.
func newCoalescer(ctx context.Context, up interface {
	Recv() (*dispatchv1.StreamGenerateResponse, error)
},
) *coalescer {
	c := &coalescer{ctx: ctx, items: make(chan upstreamItem, coalesceBuffer)}
	go func() {
		for {
			chunk, err := up.Recv()
			select {
			case c.items <- upstreamItem{chunk, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

// Recv returns the next chunk, merged with the chunks already read behind it, or the error
// that ended the stream once every chunk before it has been returned, or the request's
// context error once it is done (the reader may then have stopped without a word).
func (c *coalescer) Recv() (*dispatchv1.StreamGenerateResponse, error) {
	var it upstreamItem
	if c.pending != nil {
		it, c.pending = *c.pending, nil
	} else {
		select {
		case it = <-c.items:
		case <-c.ctx.Done():
			return nil, status.FromContextError(c.ctx.Err()).Err()
		}
	}
	if it.err != nil {
		return nil, it.err
	}
	first := it.chunk
	var merged *dispatchv1.StreamGenerateResponse
	for n := 1; n < coalesceMaxChunks && !isLast(first) && c.text.Len() < coalesceMaxText; n++ {
		var next upstreamItem
		select {
		case next = <-c.items:
		default:
			return c.finish(first, merged), nil
		}
		if next.err != nil || !canMerge(current(first, merged), next.chunk) {
			c.pending = &next
			break
		}
		if merged == nil {
			merged = &dispatchv1.StreamGenerateResponse{ToolCalls: first.GetToolCalls()}
			c.text.Reset()
			c.text.WriteString(first.GetTextDelta())
			mergeMeta(merged, first)
		}
		c.text.WriteString(next.chunk.GetTextDelta())
		merged.ToolCalls = append(merged.ToolCalls, next.chunk.GetToolCalls()...)
		mergeMeta(merged, next.chunk)
		if isLast(next.chunk) {
			break
		}
	}
	return c.finish(first, merged), nil
}

func (c *coalescer) finish(first, merged *dispatchv1.StreamGenerateResponse) *dispatchv1.StreamGenerateResponse {
	if merged == nil {
		return first
	}
	merged.TextDelta = c.text.String()
	c.text.Reset()
	return merged
}

// current is the chunk being built: merged once a second chunk joined, first until then.
func current(first, merged *dispatchv1.StreamGenerateResponse) *dispatchv1.StreamGenerateResponse {
	if merged != nil {
		return merged
	}
	return first
}

func isLast(c *dispatchv1.StreamGenerateResponse) bool {
	return c.GetFinishReason() != typev1.FinishReason_FINISH_REASON_UNSPECIFIED
}

// canMerge reports whether next may join acc without reordering the answer: text never
// joins a chunk that already carries tool-call pieces, which would put it before them, and
// nothing joins a chunk carrying usage (a usage-so-far message ends what dispatch sends).
func canMerge(acc, next *dispatchv1.StreamGenerateResponse) bool {
	if acc.GetUsage() != nil {
		return false
	}
	return next.GetTextDelta() == "" || len(acc.GetToolCalls()) == 0
}

// mergeMeta copies what a later chunk says about the whole answer.
func mergeMeta(dst, src *dispatchv1.StreamGenerateResponse) {
	if src.GetEndpointId() != "" {
		dst.EndpointId = src.GetEndpointId()
	}
	if src.GetResponseModel() != "" {
		dst.ResponseModel = src.GetResponseModel()
	}
	if src.GetFinishReason() != typev1.FinishReason_FINISH_REASON_UNSPECIFIED {
		dst.FinishReason = src.GetFinishReason()
	}
	if src.GetUsage() != nil {
		dst.Usage = src.GetUsage()
	}
}
