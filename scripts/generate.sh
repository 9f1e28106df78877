#!/usr/bin/env bash
# Regenerates gen/ from proto/. Offline: buf runs from the Go module proxy at a pinned
# version, the plugins are go.mod tools, and the googleapis protos come from the Go module
# cache (grpc-gateway v1.16.0 ships them), because the buf schema registry is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=v1.75.0
GOOGLEAPIS_MODULE=github.com/grpc-ecosystem/grpc-gateway@v1.16.0

dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$GOOGLEAPIS_MODULE" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
rm -rf third_party/googleapis
mkdir -p third_party/googleapis/google
cp -r "$dir/third_party/googleapis/google/api" third_party/googleapis/google/
chmod -R u+w third_party/googleapis

buf() { go run "github.com/bufbuild/buf/cmd/buf@${BUF_VERSION}" "$@"; }
buf lint
buf generate
