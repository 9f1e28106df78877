package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// BenchmarkClosedLoopGenerate and BenchmarkClosedLoopStream send one request at a time
// through the all-in-one gateway: the figures to profile (-cpuprofile, -memprofile) when
// cutting the gateway's CPU and allocations per request. ns/op and allocs/op include the
// client and the simulator.
func BenchmarkClosedLoopGenerate(b *testing.B) {
	gw := closedLoopClient(b)
	ctx := withKey(context.Background(), mainKey)
	req := &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage(benchPrompt)}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		if _, err := gw.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

func BenchmarkClosedLoopStream(b *testing.B) {
	gw := closedLoopClient(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	var ttft time.Duration
	for range b.N {
		t, err := gatewayStream(ctx, gw)
		if err != nil {
			b.Fatal(err)
		}
		ttft += t.firstToken
	}
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(ttft.Microseconds())/float64(b.N), "ttft-µs")
}

// BenchmarkClosedLoopOpenAI and BenchmarkClosedLoopOpenAIStream are the same through the
// OpenAI-compatible API (JSON in, JSON or server-sent events out).
func BenchmarkClosedLoopOpenAI(b *testing.B) {
	closedLoopOpenAI(b, []byte(`{"model":"demo","messages":[{"role":"user","content":"`+benchPrompt+`"}]}`))
}

func BenchmarkClosedLoopOpenAIStream(b *testing.B) {
	closedLoopOpenAI(b, []byte(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"`+streamPrompt+`"}]}`))
}

func closedLoopOpenAI(b *testing.B, body []byte) {
	s := closedLoopStack(b)
	client := &http.Client{}
	b.Cleanup(client.CloseIdleConnections)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		if err := postOK(ctx, client, s.http+"/v1/chat/completions", mainKey, body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the CPU time (user and system) the process has used so far: the cost of a
// request, which closed-loop latency hides while a core is idle.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func closedLoopStack(b *testing.B) benchStack {
	sim := httptest.NewServer(simulator.New(simulator.Config{ChunkDelay: *benchChunkDelay}))
	b.Cleanup(sim.Close)
	return startBenchStack(b, sim.URL)
}

func closedLoopClient(b *testing.B) gatewayv1.GatewayServiceClient {
	s := closedLoopStack(b)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return gatewayv1.NewGatewayServiceClient(conn)
}

// BenchmarkClosedLoopDirectStream is BenchmarkClosedLoopStream's baseline: the same streamed
// answer straight from the simulator, one at a time; the difference of their ttft-µs is
// the time to first token the gateway adds when nothing else runs.
func BenchmarkClosedLoopDirectStream(b *testing.B) {
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	defer sim.Close()
	c := &http.Client{}
	body := []byte(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"` + streamPrompt + `"}]}`)
	var ttft time.Duration
	for range b.N {
		t, err := sseStream(context.Background(), c, sim.URL, "", body)
		if err != nil {
			b.Fatal(err)
		}
		ttft += t.firstToken
	}
	b.ReportMetric(float64(ttft.Microseconds())/float64(b.N), "ttft-µs")
}
