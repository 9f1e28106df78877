// Package testenv reads the environment variables that point tests at real servers
// (Postgres, Redis). Where they are unset a test skips, except in CI (CI=true), where a
// missing server is a failure: the store suites must run there, never skip.
package testenv

import (
	"os"
	"testing"
)

// Get returns the value of name, skipping the test when it is unset outside CI and failing
// it in CI.
func Get(t testing.TB, name, example string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s must be set in CI (for example %s)", name, example)
	}
	t.Skipf("%s is not set (for example %s)", name, example)
	return ""
}
