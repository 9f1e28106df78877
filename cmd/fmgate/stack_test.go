package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	gatewayv1 "github.com/fmgate/fmgate/gen/fmgate/gateway/v1"
	"github.com/fmgate/fmgate/internal/simulator"
)

// The vendor stack: `fmgate serve` all in one, in this test process, whose endpoints speak
// every vendor dialect to the provider simulator with real credentials, and whose logs are
// kept so that tests can search them for secrets.

// Vendor credentials. They look like the real thing, so that a leak would be recognisable.
const (
	vendorKey      = "sk-fmgate-test-vendor-5f1e0c2a9b7d4e63a1"
	awsAccessKeyID = "AKIAFMGATETEST7Q2ZX4"
	awsSecretKey   = "wJalrXUtnFEMI/K7MDENG/fmgateTestSecret42xyz"
	vendorKeyEnv   = "FMGATE_TEST_VENDOR_KEY"
	awsCredEnv     = "FMGATE_TEST_AWS_CREDENTIALS"
)

// secrets are the strings that must never appear in the stack's logs.
var secrets = []string{vendorKey, awsAccessKeyID, awsSecretKey, mainKey, limitedKey}

// syncBuffer is a bytes.Buffer safe for the stack's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// vendorStack is a running stack and the simulators behind its endpoints.
type vendorStack struct {
	*stack
	// sim serves every dialect but Bedrock, expecting vendorKey; bedrock serves Bedrock,
	// expecting the AWS credentials (one simulator key cannot be both).
	sim, bedrock *simulator.Simulator
	// logs holds everything the stack wrote, to stdout and stderr, at debug level.
	logs *syncBuffer
}

// startVendorStack writes resources (with {SIM} and {BEDROCK} replaced by the simulators'
// URLs), starts two simulators with cfg (faults, latency) and the stack on them, and waits
// until it is ready. The stack logs at debug level into the returned buffer.
func startVendorStack(t *testing.T, resources string, cfg simulator.Config, extraArgs ...string) *vendorStack {
	t.Helper()
	var logs syncBuffer
	// Registered first, so it runs last: after the stack has stopped and written its last
	// line. Every test on this stack thereby proves that no secret reached its logs.
	t.Cleanup(func() { assertNoSecrets(t, logs.String()) })
	// Vendor SDKs (genai) print through the standard logger rather than the stack's: their
	// lines are the stack's logs too. Tests of this package do not run in parallel.
	prevLog := log.Writer()
	log.SetOutput(&logs)
	t.Cleanup(func() { log.SetOutput(prevLog) })
	simCfg, bedrockCfg := cfg, cfg
	simCfg.APIKey = vendorKey
	bedrockCfg.APIKey = awsAccessKeyID + ":" + awsSecretKey
	vs := &vendorStack{sim: simulator.New(simCfg), bedrock: simulator.New(bedrockCfg), logs: &logs}
	simSrv := httptest.NewServer(vs.sim)
	t.Cleanup(simSrv.Close)
	bedrockSrv := httptest.NewServer(vs.bedrock)
	t.Cleanup(bedrockSrv.Close)

	res := filepath.Join(t.TempDir(), "resources.yaml")
	doc := strings.NewReplacer("{SIM}", simSrv.URL, "{BEDROCK}", bedrockSrv.URL).Replace(resources)
	require.NoError(t, os.WriteFile(res, []byte(doc), 0o600))
	t.Setenv("FMGATE_TEST_MAIN_KEY", mainKey)
	t.Setenv("FMGATE_TEST_LIMITED_KEY", limitedKey)
	t.Setenv(vendorKeyEnv, vendorKey)
	t.Setenv(awsCredEnv, awsAccessKeyID+":"+awsSecretKey)

	httpAddr, grpcAddr := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		args := append([]string{"serve", "--http.addr=" + httpAddr, "--grpc.addr=" + grpcAddr, "--resources=" + res, "--log.level=debug"}, extraArgs...)
		done <- run(ctx, args, vs.logs, vs.logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(wait):
			t.Error("fmgate did not stop")
		}
	})
	vs.stack = &stack{http: "http://" + httpAddr}
	require.Eventually(t, func() bool {
		resp, err := http.Get(vs.http + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, wait, tick, "fmgate did not become ready: %s", vs.logs)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	vs.grpc, vs.client = conn, gatewayv1.NewGatewayServiceClient(conn)
	return vs
}

// postRaw sends body to url with the gateway key and extra headers, and returns the response
// with its body read.
func postRaw(t *testing.T, ctx context.Context, url, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+mainKey)
	req.Header.Set("Content-Type", "application/json")
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// assertNoSecrets checks that logs, the stack's whole output, holds none of the credentials
// the stack was given, whole or in the parts a vendor SDK might print on its own.
func assertNoSecrets(t *testing.T, logs string) {
	t.Helper()
	require.NotEmpty(t, logs, "the stack logged nothing: the check would prove nothing")
	for _, secret := range append(secrets, wrongKey, wrongAWSSecret, awsAccessKeyID+":"+awsSecretKey) {
		assert.NotContains(t, logs, secret, "a credential reached the logs")
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
