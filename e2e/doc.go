// Package e2e holds black-box tests of the built fmgate binary: the embedded default as a
// user starts it, and the mesh as seven processes on real Postgres and Redis, traced into a
// real Jaeger.
package e2e
