//go:build tools

// Package tools pins the node commands scripts/local-cluster builds for `up --real-node`
// (kubelet and kube-proxy), so that `go mod tidy` keeps their full dependency graph in go.mod and
// go.sum. It is its own module, started as a copy of hack/k8s (same k8s.io/kubernetes release,
// same replaces, tidy only added what these two need), so that building the node never
// invalidates the cached control plane, and vice versa.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
