// Package hclog stands in for hashicorp/go-hclog v1.6.3 (the version OpenBao v2.6.2 requires).
package hclog

// Logger is hclog's logger interface (one of its methods shown).
type Logger interface {
	Info(msg string, args ...interface{})
}
