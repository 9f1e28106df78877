package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

var (
	benchDuration = flag.Duration("duration", 5*time.Second, "how long each fixed-rate run lasts")
	benchRates    = flag.String("rates", "200", "comma-separated request rates (requests per second)")
)

const benchPrompt = "Summarise the quarterly report in three sentences for the finance team."

// BenchmarkAddedLatency drives non-streaming generations at fixed request rates (open loop:
// each request starts on schedule whether or not earlier ones finished) straight to the
// provider simulator, then through the all-in-one gateway over REST and over gRPC, and
// reports what the gateway adds: latency at p50 and p99, and heap allocations per request.
// Run it with `make bench`; it runs once whatever -benchtime says. Identity, registry and
// policy are served from memory; BenchmarkAddedLatencyPostgres measures them on Postgres.
func BenchmarkAddedLatency(b *testing.B) {
	sim := httptest.NewServer(simulator.New(simulator.Config{}))
	defer sim.Close()
	measureAddedLatency(b, "memory", sim.URL, startBenchStack(b, sim.URL))
}

// measureAddedLatency drives generations at each rate straight to the simulator at simURL
// and through the stack s over each ingress, and reports what the gateway adds; stores names
// where s keeps identity, registry and policy, for the printed lines.
func measureAddedLatency(b *testing.B, stores, simURL string, s benchStack) {
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	defer httpClient.CloseIdleConnections()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	gw := gatewayv1.NewGatewayServiceClient(conn)

	directBody := []byte(`{"model":"demo","messages":[{"role":"user","content":"` + benchPrompt + `"}]}`)
	gatewayBody := []byte(`{"model":"demo","messages":[{"role":"ROLE_USER","content":[{"text":"` + benchPrompt + `"}]}]}`)
	paths := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"direct", func(ctx context.Context) error {
			return postOK(ctx, httpClient, simURL+"/v1/chat/completions", "", directBody)
		}},
		{"rest", func(ctx context.Context) error {
			return postOK(ctx, httpClient, s.http+"/api/v1/generate", mainKey, gatewayBody)
		}},
		{"grpc", func(ctx context.Context) error {
			_, err := gw.Generate(withKey(ctx, mainKey), &gatewayv1.GenerateRequest{Model: "demo", Messages: userMessage(benchPrompt)})
			return err
		}},
		// The OpenAI-compatible API, with the same body a client sends straight to a vendor.
		{"openai", func(ctx context.Context) error {
			return postOK(ctx, httpClient, s.http+"/v1/chat/completions", mainKey, directBody)
		}},
	}
	for _, rate := range parseRates(b) {
		results := map[string]runResult{}
		for _, p := range paths {
			// Warm connections and caches, then measure.
			fixedRate(b, rate, time.Second/2, p.call)
			results[p.name] = fixedRate(b, rate, *benchDuration, p.call)
		}
		direct := results["direct"]
		for _, name := range []string{"rest", "grpc", "openai"} {
			r := results[name]
			b.Run(fmt.Sprintf("rate=%d/%s", rate, name), func(b *testing.B) {
				b.ReportMetric(float64(r.p50-direct.p50)/1e3, "added-p50-µs")
				b.ReportMetric(float64(r.p99-direct.p99)/1e3, "added-p99-µs")
				b.ReportMetric(r.allocs-direct.allocs, "added-allocs/req")
				b.ReportMetric(float64(r.p50)/1e3, "p50-µs")
				b.ReportMetric(float64(r.p99)/1e3, "p99-µs")
				b.ReportMetric(float64(r.errors), "errors")
			})
			fmt.Fprintf(os.Stdout, "%-8s rate %4d/s  %-6s  added latency p50 %7.1f µs  p99 %7.1f µs  added allocs/req %6.0f  (direct p50 %.1f µs p99 %.1f µs; %d requests, %d errors)\n",
				stores, rate, name, float64(r.p50-direct.p50)/1e3, float64(r.p99-direct.p99)/1e3, r.allocs-direct.allocs,
				float64(direct.p50)/1e3, float64(direct.p99)/1e3, r.requests, r.errors)
		}
	}
}

type benchStack struct {
	http     string
	grpcAddr string
}

// startBenchStack runs `fmgate serve` all in one with testResources on the simulator at
// simURL and extraArgs, and waits until it is ready.
func startBenchStack(b *testing.B, simURL string, extraArgs ...string) benchStack {
	res := filepath.Join(b.TempDir(), "resources.yaml")
	doc := testResources + `
  - {name: main-rps, organization: acme, api_key: main, scope: api_key, kind: requests, amount: 1000000, window: 1s}
`
	if err := os.WriteFile(res, []byte(fmt.Sprintf(doc, simURL)), 0o600); err != nil {
		b.Fatal(err)
	}
	b.Setenv("FMGATE_TEST_MAIN_KEY", mainKey)
	b.Setenv("FMGATE_TEST_LIMITED_KEY", limitedKey)
	httpAddr, grpcAddr := freeAddr(b), freeAddr(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		args := append([]string{"serve", "--http.addr=" + httpAddr, "--grpc.addr=" + grpcAddr, "--resources=" + res}, extraArgs...)
		done <- run(ctx, args, io.Discard, io.Discard)
	}()
	b.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("fmgate did not become ready")
		}
		time.Sleep(20 * time.Millisecond) // polling for start-up in a benchmark harness
	}
	return benchStack{http: "http://" + httpAddr, grpcAddr: grpcAddr}
}

type runResult struct {
	p50, p99         time.Duration
	allocs           float64
	requests, errors int
}

// fixedRate starts call rate times a second for d, waits for all calls, and returns the
// latency percentiles and heap allocations per call (of the whole process: client, gateway
// and simulator; the direct run's figure is subtracted to isolate the gateway).
func fixedRate(b *testing.B, rate int, d time.Duration, call func(context.Context) error) runResult {
	n := int(d.Seconds() * float64(rate))
	lat := make([]time.Duration, n)
	errs := make([]error, n)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	openLoop(n, rate, func(ctx context.Context, i int) {
		t0 := time.Now()
		errs[i] = call(ctx)
		lat[i] = time.Since(t0)
	})
	runtime.ReadMemStats(&after)
	r := runResult{requests: n, allocs: float64(after.Mallocs-before.Mallocs) / float64(n)}
	for i, err := range errs {
		if err != nil {
			r.errors++
			if r.errors == 1 {
				b.Logf("first error: %v", err)
			}
			lat[i] = 0
		}
	}
	slices.Sort(lat)
	r.p50, r.p99 = lat[n*50/100], lat[n*99/100]
	return r
}

// openLoop starts call(i) for i from 0 to n-1, rate times a second, each on schedule whether
// or not earlier calls finished (open loop), with a 10 s timeout each, and waits for all.
func openLoop(n, rate int, call func(ctx context.Context, i int)) {
	interval := time.Second / time.Duration(rate)
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
			call(ctx, i)
		}()
	}
	wg.Wait()
}

func postOK(ctx context.Context, c *http.Client, url, key string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}

func parseRates(b *testing.B) []int {
	var out []int
	for _, s := range strings.Split(*benchRates, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || r <= 0 {
			b.Fatalf("-rates: %q is not a positive number", s)
		}
		out = append(out, r)
	}
	return out
}
