# `vault.storage: file`, measured: compiled into the enclave binary (go:embed) and written to
# /etc/openbao/storage-file.hcl; the bootstrap adds it after openbao.hcl when the host's CV_STORAGE is `file` (or unset). Plain files on the data volume, the
# read-write hostfs mount of enclave.json; everything written there is encrypted with OpenBao's barrier key. One
# server only. OpenBao 2.6 deprecates `storage "file"` for removal in 2.7.0.
storage "file" {
  path = "/openbao/data"
}
