// Package listenerutil stands in for openbao/openbao v2.6.2 helper/listenerutil/tls_acme.go.
package listenerutil

import "crypto/tls"

// ReloadableCertGetter serves the listener certificate and reloads it from its files.
type ReloadableCertGetter interface {
	Reload() error
	GetCertificate(clientHello *tls.ClientHelloInfo) (*tls.Certificate, error)
}
