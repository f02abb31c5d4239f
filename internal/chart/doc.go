// Package chart renders charts/lrpdns with the helm binary (built from the
// module proxy by hack/helm-bin.sh, named by LRPDNS_HELM), the way
// `helm template` does. It only renders; it never installs. Its tests hold
// the chart to the kustomize manifests, object by object.
package chart
