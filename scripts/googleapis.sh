#!/usr/bin/env bash
# Fills third_party/googleapis (git-ignored) with the google/api protos fmgate's contracts
# import. They come from the Go module cache (grpc-gateway v1.16.0 ships them), because the
# buf schema registry is unreachable from CI.
set -euo pipefail
cd "$(dirname "$0")/.."
GOOGLEAPIS_MODULE=github.com/grpc-ecosystem/grpc-gateway@v1.16.0
[ -f third_party/googleapis/google/api/annotations.proto ] && exit 0
dir=$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$GOOGLEAPIS_MODULE" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
rm -rf third_party/googleapis
mkdir -p third_party/googleapis/google
cp -r "$dir/third_party/googleapis/google/api" third_party/googleapis/google/
chmod -R u+w third_party/googleapis
