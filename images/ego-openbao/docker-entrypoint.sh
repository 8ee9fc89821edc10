#!/bin/sh
# Entrypoint of the EGo-Vault image, a drop-in for the official Vault chart's server container, which runs
#   /usr/local/bin/docker-entrypoint.sh vault server -config=/tmp/storageconfig.hcl   (standalone/HA)
#   /usr/local/bin/docker-entrypoint.sh vault server -dev                             (dev mode)
# The binary was compiled and signed when the image was built: starting it must not build, sign or touch the
# network, so every start runs the same enclave identity. Everything after `vault` goes to the enclave unchanged.
#
# OE_SIMULATION=1 on the container runs the same image without SGX (read by ego-host, not by the enclave).
set -eu

readonly enclave_binary=/usr/local/lib/ego-vault/vault

# The chart names the program first, like the official image's entrypoint expects; ego run takes only its arguments.
if [ "$#" -gt 0 ] && [ "$1" = "vault" ]; then
    shift
fi

if [ "$#" -eq 0 ]; then
    echo "docker-entrypoint.sh: no Vault command given (e.g. 'vault server -config=/tmp/storageconfig.hcl')" >&2
    exit 64
fi

exec ego run "$enclave_binary" "$@"
