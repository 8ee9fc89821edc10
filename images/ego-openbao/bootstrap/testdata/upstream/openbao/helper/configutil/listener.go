// Package configutil stands in for openbao/openbao v2.6.2 helper/configutil/listener.go.
package configutil

// Listener is the listener configuration (the fields the hook reads).
type Listener struct {
	Type        string
	TLSCertFile string `hcl:"tls_cert_file"`
	TLSKeyFile  string `hcl:"tls_key_file"`
}
