#!/usr/bin/env bash
# Lints protos (buf STANDARD), formatting and vet for every module.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/googleapis.sh
go run github.com/bufbuild/buf/cmd/buf@v1.75.0 lint
unformatted=$(gofmt -l $(git ls-files '*.go' | grep -v '^gen/'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./... 
(cd e2e && go vet ./...)
