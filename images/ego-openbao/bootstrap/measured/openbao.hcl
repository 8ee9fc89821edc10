# The OpenBao server configuration, measured: compiled into the enclave binary (go:embed, package measured), so it
# is part of MRENCLAVE, and written by the bootstrap to /etc/openbao/openbao.hcl in the enclave's memory; and the bootstrap (bootstrap/launch.go) starts `bao server`
# with it and the other measured files only (storage, and the static seal for attested unseal): the -config the chart passes (/tmp/storageconfig.hcl, rendered from values/openbao.yaml) is
# ignored. Changing anything here is a new enclave identity. README.md, "Measured configuration", says what the host
# still supplies and why none of it weakens what is written here.
# No api_addr: it comes from BAO_API_ADDR (host-supplied: it only tells clients where to go).
# No disable_mlock: OpenBao 2.x ignores `true` and refuses `false`. No plugin_directory: EGo cannot exec plugins.

ui = true

listener "tcp" {
  address         = "[::]:8200"
  cluster_address = "[::]:8201"
  # TLS ends here, inside the enclave, on a key generated in it: the bootstrap writes both files to enclave memory
  # (memfs) before OpenBao starts, and renews the certificate with a fresh attestation token (bootstrap/README.md).
  tls_cert_file = "/run/bao-tls/listener.crt"
  tls_key_file  = "/run/bao-tls/listener.key"
  # Already OpenBao 2.6's defaults, stated so no upgrade can change them silently: rekey and generate-root need a
  # token (unauthenticated, anyone reaching the port could cancel them: CVE-2025-4656, CVE-2026-5807).
  disable_unauthed_rekey_endpoints         = true
  disable_unauthed_generate_root_endpoints = true
  telemetry {
    # Prometheus scrapes /v1/sys/metrics?format=prometheus without a token (operational counters, no secrets).
    unauthenticated_metrics_access = true
  }
}

# No storage here: the bootstrap adds one of two measured files, storage-file.hcl or storage-postgresql.hcl, as the
# host's CV_STORAGE names (bootstrap/launch.go; README.md, "Storage"). Raft (and BoltDB) memory-map their files,
# which EGo enclaves do not support.

# The audit trail, declared here because OpenBao refuses to create audit devices over the API by default
# (CVE-2025-6000). stdout is the container log; entries carry HMAC-SHA256 digests of tokens and secret values, not
# the values. OpenBao fails a request it cannot audit.
audit "file" "stdout" {
  description = "Audit log on the container's standard output"
  options {
    file_path = "stdout"
  }
}

telemetry {
  # Enables the Prometheus format at /v1/sys/metrics and keeps samples this long in memory.
  prometheus_retention_time = "24h"
  # Metric names stay stable across pod restarts (the pod name is the host name).
  disable_hostname = true
}
