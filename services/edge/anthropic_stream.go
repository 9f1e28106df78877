package edge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// stream answers with Anthropic's server-sent events, translated from StreamGenerate:
//
//	message_start            (usage.input_tokens 0: the gateway reports usage at the end)
//	ping
//	content_block_start      one per text run or tool call, in the order they come
//	content_block_delta*     text_delta, or input_json_delta for a tool call's arguments
//	content_block_stop
//	message_delta            stop_reason, stop_sequence null, usage (input and output tokens)
//	message_stop
//
// Each event is flushed as it is written. Refusals before the first event (authentication,
// policy, quota, moderation of the prompt...) are plain HTTP errors, since nothing has been
// sent yet; a failure after that is an `error` event with Anthropic's error body, and no
// message_stop, so that the client can tell a broken answer from a complete one.
func (h *anthropic) stream(ctx context.Context, w http.ResponseWriter, req *parsedAnthropic) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the upstream stream if the client goes away or a write fails
	up, err := h.gw.StreamGenerate(ctx, &gatewayv1.StreamGenerateRequest{Model: req.model, Messages: req.messages, Params: req.params})
	if err != nil {
		writeAnthropicError(w, err)
		return
	}
	first, err := up.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errStreamIncomplete
		}
		writeAnthropicError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // no proxy buffering of the events
	w.WriteHeader(http.StatusOK)

	s := &anthropicSSE{w: w, rc: http.NewResponseController(w), open: -1}
	if err := s.start(req.model, first.GetId()); err != nil {
		return
	}
	for ev := first; ; {
		done, err := s.event(ev)
		if err != nil || done {
			return
		}
		ev, err = up.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errStreamIncomplete
			}
			s.fail(err)
			return
		}
	}
}

// errStreamIncomplete is a stream that ended without a finish reason: the gateway turns
// this into an error itself, so it is only a guard.
var errStreamIncomplete = &anthropicError{status: statusOverloaded, typ: "overloaded_error",
	message: "the answer stream ended before the answer was complete"}

// anthropicSSE writes one streamed message.
type anthropicSSE struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// blocks is the number of content blocks started; the open one, if any, is blocks-1.
	blocks int
	// open is the gateway index of the tool call whose block is open; -1 when the open
	// block, if any, is text. textOpen tells whether a text block is open.
	open     int32
	textOpen bool
	// closed holds the gateway indexes of tool calls whose blocks have ended.
	closed map[int32]bool
}

// send writes one event and flushes it.
func (s *anthropicSSE) send(name string, data any) error {
	body, err := json.Marshal(data)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(name)+len(body)+16)
	buf = append(buf, "event: "...)
	buf = append(buf, name...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, body...)
	buf = append(buf, "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

type sseMessageStart struct {
	Type    string           `json:"type"`
	Message anthropicMessage `json:"message"`
}

type sseBlockStart struct {
	Type         string            `json:"type"`
	Index        int               `json:"index"`
	ContentBlock anthropicOutBlock `json:"content_block"`
}

type sseBlockDelta struct {
	Type  string   `json:"type"`
	Index int      `json:"index"`
	Delta sseDelta `json:"delta"`
}

type sseDelta struct {
	Type        string  `json:"type"`
	Text        *string `json:"text,omitempty"`
	PartialJSON *string `json:"partial_json,omitempty"`
}

type sseIndex struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

type sseMessageDelta struct {
	Type  string                `json:"type"`
	Delta sseStop               `json:"delta"`
	Usage anthropicMessageUsage `json:"usage"`
}

type sseStop struct {
	StopReason   string  `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

type sseType struct {
	Type string `json:"type"`
}

func (s *anthropicSSE) start(model, id string) error {
	err := s.send("message_start", sseMessageStart{Type: "message_start", Message: anthropicMessage{
		ID: anthropicMessageID(id), Type: "message", Role: "assistant", Model: model, Content: []anthropicOutBlock{},
	}})
	if err != nil {
		return err
	}
	return s.send("ping", sseType{Type: "ping"})
}

// event translates one gateway event; done is true after the last one.
func (s *anthropicSSE) event(ev *gatewayv1.StreamGenerateResponse) (done bool, err error) {
	if text := ev.GetTextDelta(); text != "" {
		if err := s.text(text); err != nil {
			return true, err
		}
	}
	for _, d := range ev.GetToolCalls() {
		if err := s.toolCall(d); err != nil {
			return true, err
		}
	}
	if ev.GetFinishReason() == typev1.FinishReason_FINISH_REASON_UNSPECIFIED {
		return false, nil
	}
	if err := s.closeBlock(); err != nil {
		return true, err
	}
	usage := ev.GetUsage()
	if err := s.send("message_delta", sseMessageDelta{
		Type:  "message_delta",
		Delta: sseStop{StopReason: anthropicStopReason(ev.GetFinishReason())},
		// Usage counts are whole-message totals: input tokens are known only now.
		Usage: anthropicMessageUsage{InputTokens: usage.GetInputTokens(), OutputTokens: usage.GetOutputTokens()},
	}); err != nil {
		return true, err
	}
	return true, s.send("message_stop", sseType{Type: "message_stop"})
}

func (s *anthropicSSE) text(text string) error {
	if !s.textOpen {
		if err := s.closeBlock(); err != nil {
			return err
		}
		empty := ""
		if err := s.send("content_block_start", sseBlockStart{Type: "content_block_start", Index: s.blocks,
			ContentBlock: anthropicOutBlock{Type: "text", Text: &empty}}); err != nil {
			return err
		}
		s.blocks++
		s.textOpen = true
	}
	return s.send("content_block_delta", sseBlockDelta{Type: "content_block_delta", Index: s.blocks - 1,
		Delta: sseDelta{Type: "text_delta", Text: &text}})
}

// toolCall streams a piece of a tool call. Pieces of one call come together (every vendor
// streams calls one after the other); a piece of a call whose block has ended cannot be
// placed in Anthropic's sequence of blocks and fails the stream rather than corrupt it.
func (s *anthropicSSE) toolCall(d *typev1.ToolCallDelta) error {
	if s.textOpen || s.open != d.GetIndex() {
		if s.closed[d.GetIndex()] {
			err := &anthropicError{status: http.StatusBadGateway, typ: "api_error",
				message: "the model interleaved the pieces of several tool calls"}
			s.fail(err)
			return err
		}
		if err := s.closeBlock(); err != nil {
			return err
		}
		if err := s.send("content_block_start", sseBlockStart{Type: "content_block_start", Index: s.blocks,
			ContentBlock: anthropicOutBlock{Type: "tool_use", ID: d.GetId(), Name: d.GetName(), Input: json.RawMessage(`{}`)}}); err != nil {
			return err
		}
		s.blocks++
		s.open = d.GetIndex()
	}
	if args := d.GetArgumentsDelta(); args != "" {
		return s.send("content_block_delta", sseBlockDelta{Type: "content_block_delta", Index: s.blocks - 1,
			Delta: sseDelta{Type: "input_json_delta", PartialJSON: &args}})
	}
	return nil
}

// closeBlock ends the open block, if any.
func (s *anthropicSSE) closeBlock() error {
	if !s.textOpen && s.open < 0 {
		return nil
	}
	if s.open >= 0 {
		if s.closed == nil {
			s.closed = map[int32]bool{}
		}
		s.closed[s.open] = true
	}
	s.textOpen, s.open = false, -1
	return s.send("content_block_stop", sseIndex{Type: "content_block_stop", Index: s.blocks - 1})
}

// fail ends the stream with an error event.
func (s *anthropicSSE) fail(err error) {
	_ = s.send("error", anthropicErrorBodyOf(anthropicErrorOf(err)))
}
