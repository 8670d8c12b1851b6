//go:build tools

// Package tools pins the kwok command scripts/local-cluster builds, so that `go mod tidy` keeps
// its full dependency graph (and its checksums) in go.mod and go.sum. The build tag keeps it out
// of every real build; the command is built by path with `go build sigs.k8s.io/kwok/cmd/kwok`.
package tools

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
