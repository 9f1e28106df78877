package dispatch

import (
	"sync"

	"google.golang.org/grpc"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	"github.com/fmgate/fmgate/internal/chunkmerge"
)

// maxPendingText bounds the text a stream holds for a caller that is not reading: past it,
// the vendor's reader waits (backpressure, as without coalescing).
const maxPendingText = 64 << 10

// chunkSender sends a stream's pieces to the caller from its own goroutine and merges the
// pieces that arrive while a send is in progress, so that the vendor's reader never waits
// for the caller and a burst of chunks goes out as one message.
//
// Why: vendors (and fast local models) often deliver several chunks at once, and one
// message per chunk costs the caller's side a receive, a moderation round trip and a send
// each. In process, where every hop is a goroutine hand-off, a burst of 60 chunks kept the
// pipeline busy for about half a millisecond before the gRPC transport flushed the first
// token to the client (it flushes a stream only when its queue runs empty:
// BenchmarkAddedStreamLatency). Merging never waits for a piece: the first piece goes out
// at once, and a merged message holds only what arrived during the previous send. At a
// vendor's usual pace nothing arrives during a send and every chunk goes out alone.
//
// Order is kept (chunkmerge): text that follows a tool-call piece starts a new message, so
// the caller sees text and tool calls in the order the model produced them.
type chunkSender struct {
	stream     grpc.ServerStreamingServer[dispatchv1.StreamGenerateResponse]
	endpointID string

	mu       sync.Mutex
	cond     sync.Cond // signalled when the sender takes the queue, stops, or fails
	queue    []*chunkmerge.Builder
	queued   int // text bytes in queue
	closing  bool
	err      error // the first failed send; every later piece is refused with it
	wake     chan struct{}
	finished chan struct{}
}

func newChunkSender(stream grpc.ServerStreamingServer[dispatchv1.StreamGenerateResponse], endpointID string) *chunkSender {
	s := &chunkSender{stream: stream, endpointID: endpointID, wake: make(chan struct{}, 1), finished: make(chan struct{})}
	s.cond.L = &s.mu
	go s.run()
	return s
}

// add queues a piece for the caller, merged into the last queued message when that keeps
// the order. It fails once a send has failed (the caller is gone).
func (s *chunkSender) add(d delta) error {
	s.mu.Lock()
	for s.err == nil && s.queued >= maxPendingText {
		s.cond.Wait()
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return sendError{err}
	}
	piece := &dispatchv1.StreamGenerateResponse{TextDelta: d.text, ToolCalls: d.toolCalls, EndpointId: s.endpointID, ResponseModel: d.model}
	if n := len(s.queue); n > 0 && s.queue[n-1].CanAdd(piece) {
		s.queue[n-1].Add(piece)
	} else {
		b := new(chunkmerge.Builder)
		b.Add(piece)
		s.queue = append(s.queue, b)
	}
	s.queued += len(d.text)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// flush waits until every queued piece has been sent (or a send failed) and stops the
// sender; the caller then sends the stream's last message itself. It returns the send
// failure, if any.
func (s *chunkSender) flush() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.finished
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return sendError{s.err}
	}
	return nil
}

func (s *chunkSender) run() {
	defer close(s.finished)
	for {
		<-s.wake
		for {
			s.mu.Lock()
			queue := s.queue
			s.queue, s.queued = nil, 0
			closing, failed := s.closing, s.err != nil
			s.cond.Broadcast()
			s.mu.Unlock()
			if failed || len(queue) == 0 {
				if closing || failed {
					return
				}
				break
			}
			for _, m := range queue {
				if err := s.stream.Send(m.Take()); err != nil {
					s.mu.Lock()
					s.err = err
					s.cond.Broadcast()
					s.mu.Unlock()
					return
				}
			}
		}
	}
}
