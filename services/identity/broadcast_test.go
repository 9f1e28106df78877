package identity

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBroadcasterDropsALaggingSubscriber(t *testing.T) {
	var b Broadcaster
	slow := b.Subscribe(t.Context())
	fast := b.Subscribe(t.Context())
	got := 0
	for i := range subscriberBuffer + 1 {
		b.Publish(Revocation{OrganizationID: "o", KeyID: "k", RevokeTime: time.Unix(int64(i), 0)})
		<-fast
		got++
	}
	assert.Equal(t, subscriberBuffer+1, got, "a subscriber that keeps up misses nothing")
	n := 0
	for range slow {
		n++
	}
	assert.Equal(t, subscriberBuffer, n, "the lagging subscriber gets what fitted, then a closed channel")
	b.Publish(Revocation{KeyID: "after"})
	assert.Equal(t, "after", (<-fast).KeyID)
}

func TestBroadcasterClose(t *testing.T) {
	var b Broadcaster
	ctx, cancel := context.WithCancel(t.Context())
	ch := b.Subscribe(ctx)
	b.Close()
	_, ok := <-ch
	require.False(t, ok)
	cancel() // closing again on cancel must not panic
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.subs) == 0
	}, time.Second, time.Millisecond)
}
