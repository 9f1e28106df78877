package config

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFlagWinsOverEnvWinsOverDefault(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pg := fs.String("postgres.url", "", "")
	addr := fs.String("http.addr", ":8080", "")
	grace := fs.Duration("shutdown-grace", 0, "")
	env := map[string]string{
		"FMGATE_POSTGRES_URL":   "postgres://env",
		"FMGATE_HTTP_ADDR":      ":1",
		"FMGATE_SHUTDOWN_GRACE": "3s",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	require.NoError(t, Parse(fs, []string{"--http.addr=:2"}, lookup))
	assert.Equal(t, "postgres://env", *pg)
	assert.Equal(t, ":2", *addr)
	assert.Equal(t, "3s", grace.String())
}

func TestBadEnvValueIsNamed(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.Duration("shutdown.grace", 0, "")
	err := Parse(fs, nil, func(string) (string, bool) { return "soon", true })
	assert.ErrorContains(t, err, "FMGATE_SHUTDOWN_GRACE")
}

func TestRedact(t *testing.T) {
	assert.Equal(t, "postgres://u:***@h:5432/db", Redact("postgres://u:secret@h:5432/db"))
	assert.Equal(t, "redis://127.0.0.1:6379", Redact("redis://127.0.0.1:6379"))
	assert.Equal(t, "", Redact(""))
	assert.Equal(t, "***", Redact("host=x password=y"))
}
