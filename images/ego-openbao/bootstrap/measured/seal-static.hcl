# The static seal of attested unseal, measured: compiled into the enclave binary (go:embed) and
# written to /etc/openbao/seal-static.hcl; the bootstrap adds it to the server's command line after openbao.hcl (OpenBao merges the two) exactly when the host names
# a Key Vault key (CV_SEAL_KEY_ID); without it OpenBao has no seal stanza and unseals with Shamir shares. The keys are
# not here and not the host's: the bootstrap has Key Vault release the HSM key to this attested enclave, derives the
# 32-byte seal keys from it and writes them, 64 hex digits without a newline, into enclave memory (/run/bao-seal,
# never mounted from the host) before OpenBao starts (bootstrap/keyrelease/README.md).
seal "static" {
  current_key  = "file:///run/bao-seal/seal.key"
  # Outside a rotation this file holds the current key under the current id, which the static seal accepts.
  previous_key = "file:///run/bao-seal/previous-seal.key"
  # current_key_id and previous_key_id come from the bootstrap (BAO_STATIC_SEAL_CURRENT_KEY_ID/_PREVIOUS_KEY_ID, set
  # inside the enclave after every host-supplied BAO_STATIC_SEAL_* and BAO_SEAL_TYPE is removed): they change with
  # the Key Vault key version, which this measured file cannot.
}
