//go:build cv_enclave

// Package egoenclave adapts EGo's enclave API to bootstrap.Enclave and keyrelease.Attester. Built only into the
// enclave image (build tag cv_enclave): it needs github.com/edgelesssys/ego (v1.9.0, MPL-2.0) and cgo, which the image
// build provides.
package egoenclave

import "github.com/edgelesssys/ego/enclave"

// Enclave calls EGo inside the running enclave.
type Enclave struct{}

// CreateAzureAttestationToken is enclave.CreateAzureAttestationToken: report data SHA-256(data), MAA at maaURL.
func (Enclave) CreateAzureAttestationToken(data []byte, maaURL string) (string, error) {
	return enclave.CreateAzureAttestationToken(data, maaURL)
}

// GetRemoteReport is enclave.GetRemoteReport: an SGX report carrying reportData (keyrelease's attestation of
// runtime data of type JSON).
func (Enclave) GetRemoteReport(reportData []byte) ([]byte, error) {
	return enclave.GetRemoteReport(reportData)
}
