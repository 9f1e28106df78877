package edge

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	identityv1 "github.com/fmgate/fmgate/gen/fmgate/identity/v1"
)

// watchIdentity serves revocation streams fed from a channel.
type watchIdentity struct {
	identityv1.IdentityServiceClient
	streams chan chan *identityv1.WatchRevocationsResponse
}

func (w *watchIdentity) WatchRevocations(ctx context.Context, _ *identityv1.WatchRevocationsRequest, _ ...grpc.CallOption) (grpc.ServerStreamingClient[identityv1.WatchRevocationsResponse], error) {
	events := make(chan *identityv1.WatchRevocationsResponse)
	select {
	case w.streams <- events:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &feedStream{ctx: ctx, events: events}, nil
}

type feedStream struct {
	grpc.ClientStream
	ctx    context.Context
	events chan *identityv1.WatchRevocationsResponse
}

func (f *feedStream) Context() context.Context { return f.ctx }

func (f *feedStream) Recv() (*identityv1.WatchRevocationsResponse, error) {
	select {
	case <-f.ctx.Done():
		return nil, f.ctx.Err()
	case e, ok := <-f.events:
		if !ok {
			return nil, io.EOF
		}
		return e, nil
	}
}

func heartbeat() *identityv1.WatchRevocationsResponse {
	return &identityv1.WatchRevocationsResponse{Event: &identityv1.WatchRevocationsResponse_Heartbeat{
		Heartbeat: &identityv1.Heartbeat{HeartbeatInterval: durationpb.New(time.Minute)}}}
}

func revocation(org, key string) *identityv1.WatchRevocationsResponse {
	return &identityv1.WatchRevocationsResponse{Event: &identityv1.WatchRevocationsResponse_Revocation{
		Revocation: &identityv1.Revocation{OrganizationId: org, ApiKeyId: key}}}
}

// A revocation drops the revoked key's cached principal at once, long before the TTL; a
// revocation of another key drops nothing; a stream that ends drops everything, and so does
// the first heartbeat of the next one.
func TestRevocationsDropCachedPrincipals(t *testing.T) {
	id := &watchIdentity{streams: make(chan chan *identityv1.WatchRevocationsResponse)}
	s := NewServer(Deps{Identity: id, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, Config{PrincipalTTL: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.WatchRevocations(ctx) })
	defer func() { cancel(); wg.Wait() }()

	var fetches atomic.Int32
	get := func(key string) {
		t.Helper()
		_, err := s.principals.get(ctx, credentialKey("cred-"+key), func(context.Context) (*identityv1.Principal, error) {
			fetches.Add(1)
			return &identityv1.Principal{OrganizationId: "acme", ApiKeyId: key}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFetches := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for fetches.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("fetches = %d, want %d", fetches.Load(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	stream := <-id.streams
	stream <- heartbeat()
	stream <- heartbeat() // taken only after the first (which drops the cache) was processed
	get("k1")
	get("k2")
	get("k1")
	waitFetches(2)

	stream <- revocation("acme", "k3")   // another key
	stream <- revocation("globex", "k1") // the same id in another organisation
	stream <- heartbeat()                // processed after the revocations: they have been applied
	get("k1")
	get("k2")
	waitFetches(2)

	stream <- revocation("acme", "k1")
	stream <- heartbeat()
	get("k1")
	waitFetches(3)
	get("k2")
	waitFetches(3)

	// The stream ends: revocations may be missed until it is back, so nothing cached stays.
	close(stream)
	stream = <-id.streams // the watcher reconnects
	get("k2")
	waitFetches(4)
	// What was cached before the new subscription was in place is dropped once it is.
	stream <- heartbeat()
	stream <- heartbeat() // taken only after the first was processed
	get("k2")
	waitFetches(5)
	get("k2")
	waitFetches(5)
}
