#!/usr/bin/env bash
# Regenerates gen/ and the edge's OpenAPI document from proto/. Offline: buf runs from the Go
# module proxy at a pinned version and the plugins are go.mod tools.
set -euo pipefail
cd "$(dirname "$0")/.."
# One generation at a time: buf's clean step empties gen/ first.
exec 9>"${TMPDIR:-/tmp}/fmgate-generate.lock"
flock 9
./scripts/googleapis.sh
buf() { go run github.com/bufbuild/buf/cmd/buf@v1.75.0 "$@"; }
buf lint
buf generate
