package identity

import (
	"context"
	"sync"
)

// subscriberBuffer is how many revocations a subscriber may fall behind before Broadcaster
// drops it. Revocations are rare; a subscriber this far behind is stuck.
const subscriberBuffer = 1024

// Broadcaster fans revocations out to subscribers in process. Stores use it to implement
// Store.SubscribeRevocations. The zero value is ready to use; it is safe for concurrent use.
type Broadcaster struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

type subscriber struct {
	ch     chan Revocation
	closed bool
}

// Subscribe returns a channel that receives every revocation published from now until ctx
// ends, when the channel is closed. Publish closes it earlier if the subscriber falls
// subscriberBuffer events behind, so that one stuck subscriber neither blocks the others
// nor silently misses events.
func (b *Broadcaster) Subscribe(ctx context.Context) <-chan Revocation {
	s := &subscriber{ch: make(chan Revocation, subscriberBuffer)}
	b.mu.Lock()
	if b.subs == nil {
		b.subs = map[*subscriber]struct{}{}
	}
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.drop(s)
	})
	return s.ch
}

// Publish delivers r to every subscriber without blocking.
func (b *Broadcaster) Publish(r Revocation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- r:
		default:
			b.drop(s)
		}
	}
}

// Close closes every subscriber's channel, telling each that delivery is no longer promised.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		b.drop(s)
	}
}

// drop closes s's channel and forgets it. b.mu is held.
func (b *Broadcaster) drop(s *subscriber) {
	if s.closed {
		return
	}
	s.closed = true
	close(s.ch)
	delete(b.subs, s)
}
