//go:build tools

// Package tools pins the control-plane commands scripts/local-cluster builds, so that
// `go mod tidy` keeps their full dependency graph (and its checksums) in go.mod and go.sum.
// The build tag keeps it out of every real build; the commands are built by path with
// `go build <import path>` from this directory.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
