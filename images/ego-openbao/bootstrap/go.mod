// The attested-listener bootstrap: compiled into the OpenBao enclave binary by the image build (README.md here).
// Standard library only, so that `go vet` and `go test` run offline; the EGo adapter (build tag cv_enclave) and the
// OpenBao hook get their imports from OpenBao's module when the image builds them.
module confidential-vault.internal/bootstrap

go 1.25
