package dispatch_test

import (
	"io"
	"log/slog"
	"testing"

	registryv1 "github.com/fmgate/fmgate/gen/fmgate/registry/v1"
	"github.com/fmgate/fmgate/internal/simulator"
	"github.com/fmgate/fmgate/services/dispatch"
)

// BenchmarkGenerate calls the server directly (no gRPC) against the simulator on loopback:
// dispatch's own cost plus the SDK and one local HTTP round trip.
func BenchmarkGenerate(b *testing.B) {
	b.Setenv(secretEnv, secret)
	url, _ := startSim(b, simulator.Config{})
	srv := dispatch.NewServer(newFakeRegistry(endpoint("ep-1", url, "gpt-sim")), slog.New(slog.NewTextHandler(io.Discard, nil)), dispatch.Config{})
	b.Cleanup(srv.Close)
	req := generateRequest("a short question for the benchmark", "ep-1")
	ctx := b.Context()
	if _, err := srv.Generate(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := srv.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

var _ registryv1.RegistryServiceClient = (*fakeRegistry)(nil)
