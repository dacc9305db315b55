//go:build tools

// Package tools names the program that `make k8s-bin` builds.
package tools

import _ "go.etcd.io/etcd/server/v3"
