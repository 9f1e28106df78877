// Package grpctest runs gRPC servers for tests: a real grpc.Server on an in-memory bufconn
// listener, reached through a real client connection (Go's httptest pattern). It also gives
// tests a JSON logger whose output they can read while server goroutines write to it, and
// reads the google.rpc details that servers attach to errors.
package grpctest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// bufSize is the bufconn buffer: large enough that no test message blocks on it.
const bufSize = 1 << 20

// Serve starts a grpc.Server built with opts, lets register add services to it, and returns
// a client connection to it. When the test ends the connection is closed and the server
// stopped, and Serve waits for the server's goroutine to return, so goleak stays quiet.
func Serve(t testing.TB, register func(grpc.ServiceRegistrar), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(opts...)
	register(srv)
	conn, err := grpc.NewClient("passthrough:///bufnet", Start(t, srv),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpctest: dial bufconn: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Start serves srv on a new bufconn listener until the test ends, then stops it and waits
// for it to return. It returns the dial option that reaches the listener, for tests that
// build the server or the client themselves.
func Start(t testing.TB, srv *grpc.Server) grpc.DialOption {
	t.Helper()
	lis := bufconn.Listen(bufSize)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("grpctest: serve: %v", err)
		}
	})
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return lis.DialContext(ctx)
	})
}

// LogBuffer collects log output. It is safe for concurrent use, so a test can read what
// server goroutines are still writing.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a JSON logger, as production uses, writing into the returned buffer at
// debug level so that every line the code under test could write is captured. If the test
// fails, the captured lines are added to its output.
func Logger(t testing.TB) (*slog.Logger, *LogBuffer) {
	t.Helper()
	logs := &LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("grpctest: captured logs:\n%s", logs.String())
		}
	})
	return slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), logs
}

// ErrorInfo returns the first ErrorInfo detail of err's status, or nil if there is none.
// Its getters are nil-safe: ErrorInfo(err).GetReason() is "" when err carries no reason.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// BadRequestFields returns the field of every field violation in the BadRequest details of
// err's status, in order; nil if there are none.
func BadRequestFields(err error) []string {
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}
