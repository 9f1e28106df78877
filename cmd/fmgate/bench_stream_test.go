package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
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
	span       time.Duration // first text chunk to the last
	chunks     int           // text chunks received
}

// BenchmarkAddedStreamLatency streams answers at a fixed request rate straight from the
// simulator and through the all-in-one gateway, over the native API (gRPC StreamGenerate)
// and over the OpenAI-compatible API (server-sent events, the same request body the direct
// client sends), and reports what the gateway adds to the time to first token and to each
// chunk. The paths take turns in rounds of one second (streamRounds), so that each meets the
// machine as the others do. It runs twice:
//
//   - burst: the simulator sends every chunk of an answer at once. The worst case for the
//     gateway's per-chunk cost, and the figure reported for it; the first token then competes
//     for the two cores with the processing of the rest of the burst.
//   - paced: 2 ms between chunks (500 tokens/s per answer, faster than vendors stream), so
//     that the time to first token is measured under a realistic arrival of chunks. The
//     per-chunk figure is not reported for it: timer jitter dwarfs the gateway's share.
//
// The gateway merges chunks that reach it together (dispatch's chunkSender, the edge's
// coalescer), so a client can receive fewer chunks than the vendor sent; the added time per
// chunk is therefore the added stretch from the first token to the last, spread over the
// vendor's chunks, which is the per-chunk delay a client sees whatever the chunking.
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

	body := []byte(`{"model":"demo","stream":true,"messages":[{"role":"user","content":"` + streamPrompt + `"}]}`)
	paths := []string{"direct", "grpc-stream", "openai-stream"}
	calls := []func(ctx context.Context) (streamTiming, error){
		func(ctx context.Context) (streamTiming, error) { return sseStream(ctx, httpClient, sim.URL, "", body) },
		func(ctx context.Context) (streamTiming, error) { return gatewayStream(ctx, gw) },
		func(ctx context.Context) (streamTiming, error) {
			return sseStream(ctx, httpClient, s.http, mainKey, body)
		},
	}
	label := "burst"
	if pacing > 0 {
		label = "paced " + pacing.String()
	}
	for _, rate := range parseRates(b) {
		streamRounds(b, rate, time.Second/2, calls) // warm connections and caches
		res := streamRounds(b, rate, *benchDuration, calls)
		d := res[0]
		for i, g := range res[1:] {
			name := paths[i+1]
			perChunk := float64(g.spanP50-d.spanP50) / float64(max(d.chunks-1, 1)) / 1e3
			b.Run(fmt.Sprintf("rate=%d/%s/%s", rate, name, strings.ReplaceAll(label, " ", "-")), func(b *testing.B) {
				b.ReportMetric(float64(g.ttftP50-d.ttftP50)/1e3, "added-ttft-p50-µs")
				b.ReportMetric(float64(g.ttftP99-d.ttftP99)/1e3, "added-ttft-p99-µs")
				if pacing == 0 {
					b.ReportMetric(perChunk, "added-per-chunk-µs")
				}
				b.ReportMetric(float64(g.errors), "errors")
			})
			perChunkText := "n/a (paced)"
			if pacing == 0 {
				perChunkText = fmt.Sprintf("%.1f µs", perChunk)
			}
			fmt.Fprintf(os.Stdout, "rate %4d/s  %-13s %-12s  added TTFT p50 %7.1f µs  p99 %7.1f µs  added per chunk %s  (direct TTFT p50 %.1f µs; %d chunks sent, %d received; %d requests, %d errors)\n",
				rate, name, label, float64(g.ttftP50-d.ttftP50)/1e3, float64(g.ttftP99-d.ttftP99)/1e3, perChunkText,
				float64(d.ttftP50)/1e3, d.chunks, g.chunks, g.requests, g.errors)
		}
	}
}

type streamResult struct {
	ttftP50, ttftP99, spanP50 time.Duration
	chunks, requests, errors  int
}

// streamRounds drives each of calls in turn at rate streams a second, in rounds of one
// second each until d has passed for every call, and pools each call's figures across its
// rounds: every path meets the machine's slow drifts (garbage collection, other processes,
// timer jitter) as the others do, and only one path loads the machine at a time.
func streamRounds(b *testing.B, rate int, d time.Duration, calls []func(context.Context) (streamTiming, error)) []streamResult {
	round := min(d, time.Second)
	rounds := max(int(d/round), 1)
	timings := make([][]streamTiming, len(calls))
	errs := make([][]error, len(calls))
	for range rounds {
		for c, call := range calls {
			t, e := streamAtRate(rate, round, call)
			timings[c] = append(timings[c], t...)
			errs[c] = append(errs[c], e...)
		}
	}
	out := make([]streamResult, len(calls))
	for c := range calls {
		r := &out[c]
		var ttft, span []time.Duration
		for i, err := range errs[c] {
			r.requests++
			if err != nil {
				r.errors++
				if r.errors == 1 {
					b.Logf("first error: %v", err)
				}
				continue
			}
			ttft = append(ttft, timings[c][i].firstToken)
			span = append(span, timings[c][i].span)
			r.chunks = timings[c][i].chunks
		}
		if len(ttft) == 0 {
			b.Fatal("every request failed")
		}
		slices.Sort(ttft)
		slices.Sort(span)
		r.ttftP50, r.ttftP99 = ttft[len(ttft)*50/100], ttft[len(ttft)*99/100]
		r.spanP50 = span[len(span)/2]
	}
	return out
}

// streamAtRate starts call rate times a second for d (open loop: on schedule whether or not
// earlier calls finished) and returns what each call measured.
func streamAtRate(rate int, d time.Duration, call func(context.Context) (streamTiming, error)) ([]streamTiming, []error) {
	n := int(d.Seconds() * float64(rate))
	timings := make([]streamTiming, n)
	errs := make([]error, n)
	openLoop(n, rate, func(ctx context.Context, i int) { timings[i], errs[i] = call(ctx) })
	return timings, errs
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
	if t.chunks == 0 {
		return streamTiming{}, errors.New("no text chunk")
	}
	return streamTiming{firstToken: t.first.Sub(t.start), span: t.last.Sub(t.first), chunks: t.chunks}, nil
}

// sseStream posts an OpenAI chat completion request with stream set to baseURL (the
// simulator, or the gateway with key) and times the server-sent events of the answer.
func sseStream(ctx context.Context, c *http.Client, baseURL, key string, body []byte) (streamTiming, error) {
	t := timer{start: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		return streamTiming{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return streamTiming{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		// A text chunk: content that is not empty (the first chunk carries the role and "").
		if bytes.Contains(line, []byte(`"content":"`)) && !bytes.Contains(line, []byte(`"content":""`)) {
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
