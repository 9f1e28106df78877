package dispatch

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	dispatchv1 "github.com/fmgate/fmgate/gen/fmgate/dispatch/v1"
	typev1 "github.com/fmgate/fmgate/gen/fmgate/type/v1"
)

// gatedStream is a caller whose first Send waits until the test opens the gate, so that
// pieces added meanwhile must wait for the sender; it fails every Send with err when set.
type gatedStream struct {
	grpc.ServerStream
	gate    chan struct{}
	sending chan struct{} // closed when the first Send starts
	once    sync.Once
	err     error

	mu   sync.Mutex
	sent []*dispatchv1.StreamGenerateResponse
}

func newGatedStream() *gatedStream {
	return &gatedStream{gate: make(chan struct{}), sending: make(chan struct{})}
}

func (g *gatedStream) Context() context.Context { return context.Background() }

func (g *gatedStream) Send(m *dispatchv1.StreamGenerateResponse) error {
	g.once.Do(func() { close(g.sending); <-g.gate })
	if g.err != nil {
		return g.err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.sent = append(g.sent, m)
	return nil
}

func (g *gatedStream) messages() []*dispatchv1.StreamGenerateResponse {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.sent
}

func call(index int32, args string) []*typev1.ToolCallDelta {
	return []*typev1.ToolCallDelta{{Index: index, ArgumentsDelta: args}}
}

func TestChunkSenderMergesWhatArrivesDuringASend(t *testing.T) {
	g := newGatedStream()
	s := newChunkSender(g, "ep-1")
	require.NoError(t, s.add(delta{model: "m", text: "Hel"}))
	<-g.sending // the first piece left alone, at once
	for _, p := range []string{"lo", ", ", "world"} {
		require.NoError(t, s.add(delta{model: "m", text: p}))
	}
	close(g.gate)
	require.NoError(t, s.flush())

	sent := g.messages()
	require.Len(t, sent, 2)
	assert.Equal(t, "Hel", sent[0].GetTextDelta())
	assert.Equal(t, "lo, world", sent[1].GetTextDelta(), "the pieces that arrived during the first send, as one")
	for _, m := range sent {
		assert.Equal(t, "ep-1", m.GetEndpointId())
		assert.Equal(t, "m", m.GetResponseModel())
	}
}

func TestChunkSenderKeepsTextAndToolCallsInOrder(t *testing.T) {
	g := newGatedStream()
	s := newChunkSender(g, "ep-1")
	require.NoError(t, s.add(delta{text: "first"}))
	<-g.sending
	require.NoError(t, s.add(delta{text: "Let me look"}))
	require.NoError(t, s.add(delta{toolCalls: call(0, `{"q":`)}))
	require.NoError(t, s.add(delta{toolCalls: call(0, `"x"}`)}))
	require.NoError(t, s.add(delta{text: "Done"}))
	close(g.gate)
	require.NoError(t, s.flush())

	sent := g.messages()
	require.Len(t, sent, 3)
	assert.Equal(t, "first", sent[0].GetTextDelta())
	// Text then tool calls may share a message (the caller relays text before calls)...
	assert.Equal(t, "Let me look", sent[1].GetTextDelta())
	require.Len(t, sent[1].GetToolCalls(), 2)
	assert.Equal(t, `{"q":"x"}`, sent[1].GetToolCalls()[0].GetArgumentsDelta()+sent[1].GetToolCalls()[1].GetArgumentsDelta())
	// ...but text after a tool call starts a new one.
	assert.Equal(t, "Done", sent[2].GetTextDelta())
	assert.Empty(t, sent[2].GetToolCalls())
}

func TestChunkSenderStopsAtTheFirstFailedSend(t *testing.T) {
	g := newGatedStream()
	g.err = errors.New("caller gone")
	s := newChunkSender(g, "ep-1")
	require.NoError(t, s.add(delta{text: "a"}))
	close(g.gate)
	var se sendError
	require.ErrorAs(t, s.flush(), &se)
	require.ErrorAs(t, s.add(delta{text: "b"}), &se, "pieces after a failed send are refused")
	assert.Empty(t, g.messages())
}

func TestChunkSenderHoldsBoundedText(t *testing.T) {
	g := newGatedStream()
	s := newChunkSender(g, "ep-1")
	require.NoError(t, s.add(delta{text: "x"}))
	<-g.sending
	piece := strings.Repeat("y", 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 2 * maxPendingText / len(piece) {
			if err := s.add(delta{text: piece}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Once the queue holds maxPendingText, the next piece waits for the sender, which is held.
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued >= maxPendingText
	}, 5*time.Second, time.Millisecond)
	assert.Never(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.queued >= maxPendingText+len(piece)
	}, 20*time.Millisecond, time.Millisecond, "the reader was not held back while the caller was not reading")
	select {
	case <-done:
		t.Fatal("the reader finished while the caller was not reading")
	default:
	}
	close(g.gate)
	<-done
	require.NoError(t, s.flush())
	var total int
	for _, m := range g.messages() {
		total += len(m.GetTextDelta())
	}
	assert.Equal(t, 1+2*maxPendingText, total, "every piece arrives")
}
