package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

var benchChunkDelay = flag.Duration("chunk-delay", 0, "time between the simulator's streamed chunks (0: as fast as it can)")

// A prompt long enough that the streamed answer (which echoes it) has about 60 chunks.
var streamPrompt = strings.TrimSpace(strings.Repeat("the quarterly report shows steady growth in every region ", 6))

// streamTiming is what one streamed request measured.
type streamTiming struct {
	firstToken time.Duration // request start to the first text chunk
	perChunk   time.Duration // mean time between text chunks after the first
	chunks     int
}

// BenchmarkAddedStreamLatency streams answers at a fixed request rate straight from the
// simulator and through the all-in-one gateway (gRPC StreamGenerate), and reports what the
// gateway adds to the time to first token and to each later chunk. It runs twice:
//
//   - burst: the simulator sends every chunk of an answer at once. The worst case for the
//     gateway's per-chunk cost, and the figure reported for it; the first token then competes
//     for the two cores with the processing of the rest of the burst.
//   - paced: 2 ms between chunks (500 tokens/s per answer, faster than vendors stream), so
//     that the time to first token is measured under a realistic arrival of chunks. The
//     per-chunk figure is not reported for it: timer jitter dwarfs the gateway's share.
//
// -chunk-delay runs one configuration with that pacing instead.
func BenchmarkAddedStreamLatency(b *testing.B) {
	pacings := []time.Duration{0, 2 * time.Millisecond}
	if *benchChunkDelay > 0 {
		pacings = []time.Duration{*benchChunkDelay}
	}
	for _, pacing := range pacings {
		benchStreams(b, pacing)
	}
}

func benchStreams(b *testing.B, pacing time.Duration) {
	sim := httptest.NewServer(simulator.New(simulator.Config{ChunkDelay: pacing}))
	defer sim.Close()
	s := startBenchStack(b, sim.URL)
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	defer httpClient.CloseIdleConnections()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	gw := gatewayv1.NewGatewayServiceClient(conn)

	directBody := []byte(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"` + streamPrompt + `"}]}`)
	paths := []struct {
		name string
		call func(ctx context.Context) (streamTiming, error)
	}{
		{"direct", func(ctx context.Context) (streamTiming, error) {
			return directStream(ctx, httpClient, sim.URL, directBody)
		}},
		{"grpc", func(ctx context.Context) (streamTiming, error) { return gatewayStream(ctx, gw) }},
	}
	label := "burst"
	if pacing > 0 {
		label = "paced " + pacing.String()
	}
	for _, rate := range parseRates(b) {
		results := map[string]streamResult{}
		for _, p := range paths {
			streamAtRate(b, rate, time.Second/2, p.call)
			results[p.name] = streamAtRate(b, rate, *benchDuration, p.call)
		}
		d, g := results["direct"], results["grpc"]
		b.Run(fmt.Sprintf("rate=%d/grpc-stream/%s", rate, strings.ReplaceAll(label, " ", "-")), func(b *testing.B) {
			b.ReportMetric(float64(g.ttftP50-d.ttftP50)/1e3, "added-ttft-p50-µs")
			b.ReportMetric(float64(g.ttftP99-d.ttftP99)/1e3, "added-ttft-p99-µs")
			if pacing == 0 {
				b.ReportMetric(float64(g.chunkP50-d.chunkP50)/1e3, "added-per-chunk-µs")
			}
			b.ReportMetric(float64(g.errors), "errors")
		})
		perChunk := "n/a (paced)"
		if pacing == 0 {
			perChunk = fmt.Sprintf("%.1f µs", float64(g.chunkP50-d.chunkP50)/1e3)
		}
		fmt.Fprintf(os.Stdout, "rate %4d/s  grpc-stream %-12s  added TTFT p50 %7.1f µs  p99 %7.1f µs  added per chunk %s  (direct TTFT p50 %.1f µs; %d chunks/answer; %d requests, %d errors)\n",
			rate, label, float64(g.ttftP50-d.ttftP50)/1e3, float64(g.ttftP99-d.ttftP99)/1e3, perChunk,
			float64(d.ttftP50)/1e3, g.chunks, g.requests, g.errors)
	}
}

type streamResult struct {
	ttftP50, ttftP99, chunkP50 time.Duration
	chunks, requests, errors   int
}

func streamAtRate(b *testing.B, rate int, d time.Duration, call func(context.Context) (streamTiming, error)) streamResult {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	timings := make([]streamTiming, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			timings[i], errs[i] = call(ctx)
		}()
	}
	wg.Wait()
	r := streamResult{requests: n}
	var ttft, chunk []time.Duration
	for i, t := range timings {
		if errs[i] != nil {
			r.errors++
			if r.errors == 1 {
				b.Logf("first error: %v", errs[i])
			}
			continue
		}
		ttft = append(ttft, t.firstToken)
		chunk = append(chunk, t.perChunk)
		r.chunks = t.chunks
	}
	if len(ttft) == 0 {
		b.Fatal("every request failed")
	}
	slices.Sort(ttft)
	slices.Sort(chunk)
	r.ttftP50, r.ttftP99 = ttft[len(ttft)*50/100], ttft[len(ttft)*99/100]
	r.chunkP50 = chunk[len(chunk)/2]
	return r
}

// timer records the arrival of text chunks.
type timer struct {
	start, first, last time.Time
	chunks             int
}

func (t *timer) chunk() {
	now := time.Now()
	if t.chunks == 0 {
		t.first = now
	}
	t.last = now
	t.chunks++
}

func (t *timer) timing() (streamTiming, error) {
	if t.chunks < 2 {
		return streamTiming{}, fmt.Errorf("only %d chunks", t.chunks)
	}
	return streamTiming{
		firstToken: t.first.Sub(t.start),
		perChunk:   t.last.Sub(t.first) / time.Duration(t.chunks-1),
		chunks:     t.chunks,
	}, nil
}

func directStream(ctx context.Context, c *http.Client, simURL string, body []byte) (streamTiming, error) {
	t := timer{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, simURL+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return streamTiming{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return streamTiming{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if bytes.Contains(line, []byte(`"content":"`)) {
			t.chunk()
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return t.timing()
}

func gatewayStream(ctx context.Context, gw gatewayv1.GatewayServiceClient) (streamTiming, error) {
	t := timer{start: time.Now()}
	stream, err := gw.StreamGenerate(withKey(ctx, mainKey), &gatewayv1.StreamGenerateRequest{Model: "demo", Messages: userMessage(streamPrompt)})
	if err != nil {
		return streamTiming{}, err
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return streamTiming{}, err
		}
		if ev.GetTextDelta() != "" {
			t.chunk()
		}
	}
	return t.timing()
}
