// Package enclave stands in for edgelesssys/ego v1.9.0 enclave/enclave.go (CreateAzureAttestationToken) and
// enclave/ert.go (GetRemoteReport).
package enclave

import "errors"

// CreateAzureAttestationToken creates a Microsoft Azure Attestation token (here: never).
func CreateAzureAttestationToken(data []byte, url string) (string, error) {
	return "", errors.New("stand-in: no enclave")
}

// GetRemoteReport gets a report signed by the enclave platform (here: never).
func GetRemoteReport(reportData []byte) ([]byte, error) {
	return nil, errors.New("stand-in: no enclave")
}
