#!/usr/bin/env bash
# Builds the two binaries into bin/: static, trimmed, version stamped.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
for cmd in node-cache lrpdns; do
  [[ -d "cmd/$cmd" ]] || continue
  CGO_ENABLED=0 go build -trimpath -ldflags "$LDFLAGS" -o "$BIN/$cmd" "./cmd/$cmd"
  echo "built $BIN/$cmd ($VERSION)"
done
