//go:build cv_enclave

package measured

import _ "embed"

// CABundle is the build stage's /etc/ssl/certs/ca-certificates.crt (the ego-dev image's Mozilla roots): the Dockerfile
// copies it here before `ego-go build`, so the roots every TLS connection of the enclave trusts (Entra, Key Vault,
// MAA, PostgreSQL) are measured with the binary. The file is not in git (.gitignore): a build without it fails.
//
//go:embed ca-certificates.crt
var CABundle []byte
