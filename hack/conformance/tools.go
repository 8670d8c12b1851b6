//go:build tools

// Package tools pins the OCI conformance suite that scripts/local-cluster builds (with
// `go build github.com/opencontainers/distribution-spec/conformance`), so that `go mod tidy`
// keeps its full dependency graph (and its checksums) in go.mod and go.sum. The build tag keeps
// it out of every real build.
package tools

import (
	_ "github.com/opencontainers/distribution-spec/conformance"
)
