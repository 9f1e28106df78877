package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	wait = 30 * time.Second
	tick = 50 * time.Millisecond
)

// binaries built once by TestMain.
var bin struct {
	fmgate string
	jaeger string
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fmgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.fmgate = filepath.Join(dir, "fmgate")
	bin.jaeger = filepath.Join(dir, "jaeger")
	for _, b := range []struct{ pkg, out, gowork string }{
		{"github.com/fmgate/fmgate/cmd/fmgate", bin.fmgate, ""},
		// Jaeger builds against the e2e module's own requirements: in the workspace, the
		// product module's newer OpenTelemetry versions would be selected for it too.
		{"github.com/jaegertracing/jaeger/cmd/jaeger", bin.jaeger, "GOWORK=off"},
	} {
		pkg, out := b.pkg, b.out
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Env = append(os.Environ(), b.gowork)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a child process whose output is kept for the test's failure report.
type proc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// start runs a binary until the test ends, then stops it with SIGTERM (SIGKILL after a
// grace period). When the test fails, the process's output is logged.
func start(t *testing.T, name, path string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	require.NoError(t, p.cmd.Start(), "start %s", name)
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			// fmgate stops gracefully on SIGTERM and says so with its exit code.
			if strings.HasPrefix(filepath.Base(path), "fmgate") && p.cmd.ProcessState.ExitCode() != 0 {
				t.Errorf("%s exited with code %d after SIGTERM", name, p.cmd.ProcessState.ExitCode())
			}
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Errorf("%s did not stop within 15s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, tail(p.output(), 60))
		}
	})
	return p
}

func tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())
	return addr
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, procs ...*proc) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, p := range procs {
			select {
			case <-p.done:
				t.Fatalf("%s exited early:\n%s", p.name, tail(p.output(), 40))
			default:
			}
		}
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, wait, tick, "%s did not answer 200", url)
}

// waitLine waits until the process printed a line containing substr and returns it.
func waitLine(t *testing.T, p *proc, substr string) string {
	t.Helper()
	var line string
	require.Eventually(t, func() bool {
		sc := bufio.NewScanner(strings.NewReader(p.output()))
		for sc.Scan() {
			if strings.Contains(sc.Text(), substr) {
				line = sc.Text()
				return true
			}
		}
		return false
	}, wait, tick, "%s never printed %q", p.name, substr)
	return line
}

func postJSON(ctx context.Context, url, key, body string, headers ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}
