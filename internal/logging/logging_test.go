package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestLogCarriesTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info")
	require.NoError(t, err)
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.With("service", "edge").InfoContext(ctx, "hello")
	span.End()

	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
	assert.Equal(t, span.SpanContext().TraceID().String(), rec["trace_id"])
	assert.Equal(t, span.SpanContext().SpanID().String(), rec["span_id"])
	assert.Equal(t, "edge", rec["service"])
}

func TestBadLevel(t *testing.T) {
	_, err := New(&bytes.Buffer{}, "loud")
	assert.ErrorContains(t, err, "loud")
}
