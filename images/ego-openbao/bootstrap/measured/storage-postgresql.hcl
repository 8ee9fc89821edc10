# `vault.storage: postgresql`, measured: compiled into the enclave binary (go:embed) and
# written to /etc/openbao/storage-postgresql.hcl; the bootstrap adds it after openbao.hcl when the host's CV_STORAGE is `postgresql`. Every entry is encrypted with
# OpenBao's barrier key before it reaches the database: the database (and whoever administers it) sees ciphertext.
#
# No connection_url: OpenBao reads it from BAO_PG_CONNECTION_URL (physical/postgresql connectionURL), which the pod
# gets from the Kubernetes Secret `openbao-storage`. The URL says sslmode=verify-full: the driver (pgx) verifies the
# server's certificate and name against the CA bundle compiled into the enclave (go:embed, measured), which
# holds the roots Azure's servers chain to. A host-supplied URL can point at another database, which is the
# documented substitution/rollback risk (README "Attested endpoint and threat model"), never a way to read secrets.
# OpenBao creates its tables (openbao_kv_store, openbao_ha_locks) on first start.
storage "postgresql" {
  # One active server holds the lock (openbao_ha_locks, 15 s TTL); standbys take over when it lapses.
  ha_enabled           = "true"
  max_parallel         = "16"
  max_idle_connections = "4"
  # A new server or a failover of the database takes a while: retry the first connection instead of exiting.
  max_connect_retries  = "20"
}

# The active server labels its pod `openbao-active: "true"` (standbys "false"), which the chart's `openbao-active`
# Service and so the route select. It reads the pod's service-account token and the API server's CA from the
# read-only hostfs mount /var/run/secrets/kubernetes.io/serviceaccount and the API server's address from
# KUBERNETES_SERVICE_HOST/_PORT (enclave.json). All of that is host-supplied, and harmless: it only decides labels,
# that is where clients are routed (availability), never what the server holds or whom it trusts.
service_registration "kubernetes" {}
