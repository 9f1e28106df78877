// Package chunkmerge joins consecutive pieces of a streamed answer (dispatch's
// StreamGenerateResponse messages) into one message without reordering the answer. Dispatch
// merges the pieces a vendor delivers while a send is in progress, and the edge the messages
// that reach it together; both follow the rules here.
package chunkmerge

import (
	"strings"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// Builder is one message being merged; the zero value is empty. It keeps the first piece
// as it is and copies only once a second piece joins, building the text once rather than
// concatenating it per piece.
type Builder struct {
	msg    *dispatchv1.StreamGenerateResponse
	merged bool
	text   strings.Builder
}

// Empty reports whether no piece has been added since the last Take.
func (b *Builder) Empty() bool { return b.msg == nil }

// Closed reports whether nothing may join any more: the message ends the answer (a finish
// reason) or carries usage (a broken stream's usage-so-far, the last thing dispatch sends).
func (b *Builder) Closed() bool {
	return b.msg != nil && (b.msg.GetFinishReason() != typev1.FinishReason_FINISH_REASON_UNSPECIFIED || b.msg.GetUsage() != nil)
}

// CanAdd reports whether next may join without reordering the answer: anything may start a
// message; nothing joins a closed one; text never joins a message that already carries
// tool-call pieces, which would put it before them.
func (b *Builder) CanAdd(next *dispatchv1.StreamGenerateResponse) bool {
	if b.msg == nil {
		return true
	}
	return !b.Closed() && (next.GetTextDelta() == "" || len(b.msg.GetToolCalls()) == 0)
}

// Add joins next, which CanAdd allowed: its text and tool-call pieces after those before,
// and what it says about the whole answer (endpoint, model, finish reason, usage) over what
// earlier pieces said. The first piece is kept, not copied: the caller gives it up.
func (b *Builder) Add(next *dispatchv1.StreamGenerateResponse) {
	if b.msg == nil {
		b.msg = next
		return
	}
	if !b.merged {
		b.merged = true
		b.text.Reset()
		b.text.WriteString(b.msg.GetTextDelta())
	}
	b.text.WriteString(next.GetTextDelta())
	b.msg.ToolCalls = append(b.msg.ToolCalls, next.GetToolCalls()...)
	if next.GetEndpointId() != "" {
		b.msg.EndpointId = next.GetEndpointId()
	}
	if next.GetResponseModel() != "" {
		b.msg.ResponseModel = next.GetResponseModel()
	}
	if next.GetFinishReason() != typev1.FinishReason_FINISH_REASON_UNSPECIFIED {
		b.msg.FinishReason = next.GetFinishReason()
	}
	if next.GetUsage() != nil {
		b.msg.Usage = next.GetUsage()
	}
}

// TextLen is the length of the message's text so far.
func (b *Builder) TextLen() int {
	if b.merged {
		return b.text.Len()
	}
	return len(b.msg.GetTextDelta())
}

// Take returns the merged message and empties the builder.
func (b *Builder) Take() *dispatchv1.StreamGenerateResponse {
	m := b.msg
	if b.merged {
		m.TextDelta = b.text.String()
	}
	b.msg, b.merged = nil, false
	b.text.Reset()
	return m
}
