//go:build tools

// Package tools names the program that `make k8s-bin` builds.
package tools

import _ "github.com/aws/amazon-eks-pod-identity-webhook"
