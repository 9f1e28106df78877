package edge

import (
	"context"
	"time"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
)

// WatchRevocations keeps the principal cache honest until ctx ends: it follows identity's
// WatchRevocations stream and drops the cached principals of every revoked key at once, so
// that a revocation made through any replica is refused here within milliseconds rather
// than within the cache's TTL. Whenever the stream is not known to be delivering (before
// its first heartbeat, after it ends or fails, when heartbeats stop for twice their
// interval) the whole cache is dropped, since revocations may have been missed, and the
// stream is opened again with backoff. The TTL bounds staleness even if identity cannot be
// reached at all.
func (s *Server) WatchRevocations(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		healthy := s.watchOnce(ctx)
		s.principals.invalidate(nil)
		if ctx.Err() != nil {
			return
		}
		if healthy {
			backoff = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// watchOnce follows one stream until it fails, ends or falls silent, and reports whether it
// delivered at least one heartbeat.
func (s *Server) watchOnce(ctx context.Context) (healthy bool) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.d.Identity.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{})
	if err != nil {
		return false
	}
	// Until the first heartbeat says the subscription is in place, allow a generous wait.
	silence := 10 * time.Second
	watchdog := time.AfterFunc(silence, cancel)
	defer watchdog.Stop()
	for {
		msg, err := stream.Recv()
		if err != nil {
			if healthy && ctx.Err() == nil {
				s.d.Log.WarnContext(ctx, "revocation stream ended; principal cache dropped", "error", err)
			}
			return healthy
		}
		switch ev := msg.GetEvent().(type) {
		case *identityv1.WatchRevocationsResponse_Heartbeat:
			if iv := ev.Heartbeat.GetHeartbeatInterval().AsDuration(); iv > 0 {
				silence = 2 * iv
			}
			if !healthy {
				// The subscription is in place from here on; what was cached while it was
				// not (since the last drop) may hold a key revoked meanwhile.
				s.principals.invalidate(nil)
				healthy = true
			}
		case *identityv1.WatchRevocationsResponse_Revocation:
			org, key := ev.Revocation.GetOrganizationId(), ev.Revocation.GetApiKeyId()
			s.principals.invalidate(func(p *identityv1.Principal) bool {
				return p.GetApiKeyId() == key && p.GetOrganizationId() == org
			})
		}
		watchdog.Reset(silence)
	}
}
