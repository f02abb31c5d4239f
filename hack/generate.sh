#!/usr/bin/env bash
# Regenerates what is derived from code: the controller's Role from the
# +kubebuilder:rbac markers in pkg/lrp, and the rendered install manifest.
set -o errexit -o nounset -o pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"
CONTROLLER_GEN_VERSION=v0.20.1
cg="$BIN/controller-gen-$CONTROLLER_GEN_VERSION"
if [[ ! -x "$cg" ]]; then
  GOBIN="$BIN/.cg" go install "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION"
  mv "$BIN/.cg/controller-gen" "$cg"
fi
"$cg" rbac:roleName=lrpdns-controller paths=./pkg/lrp/... output:rbac:dir=manifests/controller
if [[ -f manifests/kustomization.yaml ]]; then
  go run ./hack/render-manifests > manifests/install.yaml
fi
