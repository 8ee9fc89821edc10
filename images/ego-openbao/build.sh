#!/usr/bin/env bash
# Build (and optionally push) the signed EGo-Vault image, then print the enclave identity for the stack config.
#
#   images/ego-vault/build.sh --key signing-key.pem --image ghcr.io/acme/ego-vault --tag 1.14.8-1 [--push]
#
# It runs `docker buildx build` twice against the same Dockerfile:
#   1. --target identity --output type=local: compiles and signs (the key goes in as the BuildKit secret
#      `signingkey`, never into a layer) and exports only identity.env (ego uniqueid / ego signerid);
#   2. the runtime image, with those IDs as build args for its labels. The build stage comes from the cache of
#      step 1; the runtime stage recomputes the IDs from its binary and fails if they differ from the labels.
#
# Options (defaults from SIGNING_KEY_FILE, EGO_VAULT_IMAGE, ENCLAVE_HEAP_MB, VAULT_REPO, VAULT_REF, VAULT_COMMIT,
# VAULT_UI):
#   --key FILE          signing key (RSA 3072, exponent 3): openssl genrsa -out signing-key.pem -3 3072
#   --image REPOSITORY  image repository, e.g. myregistry.azurecr.io/ego-vault
#   --tag TAG           image tag (repeatable); default: the Vault ref
#   --push              push to the registry (log in first); otherwise load into the local Docker engine
#   --heap-mb N         enclave heapSize in MB (default 1024)
#   --vault-repo URL, --vault-ref REF, --vault-commit SHA   source of Vault (default hashicorp/vault v1.14.8)
#   --vault-ui true|false  embed Vault's web UI (default true; false for OpenBao, see README.md "Web UI")
# Extra arguments after `--` go to both buildx calls (e.g. --cache-from/--cache-to, --builder).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
key="${SIGNING_KEY_FILE:-}"
image="${EGO_VAULT_IMAGE:-}"
tags=()
push=false
heap_mb="${ENCLAVE_HEAP_MB:-1024}"
vault_repo="${VAULT_REPO:-https://github.com/hashicorp/vault}"
vault_ref="${VAULT_REF:-v1.14.8}"
vault_commit="${VAULT_COMMIT:-}"
vault_ui="${VAULT_UI:-true}"
extra=()

die() {
    echo "build.sh: $*" >&2
    exit 2
}

value_of() {
    [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
    printf '%s' "$2"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --key) key="$(value_of "$@")"; shift 2 ;;
        --image) image="$(value_of "$@")"; shift 2 ;;
        --tag) tags+=("$(value_of "$@")"); shift 2 ;;
        --push) push=true; shift ;;
        --heap-mb) heap_mb="$(value_of "$@")"; shift 2 ;;
        --vault-repo) vault_repo="$(value_of "$@")"; shift 2 ;;
        --vault-ref) vault_ref="$(value_of "$@")"; shift 2 ;;
        --vault-commit) vault_commit="$(value_of "$@")"; shift 2 ;;
        --vault-ui) vault_ui="$(value_of "$@")"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

[[ -n "$key" ]] || die "--key is required (the enclave signing key; a new key means a new MRSIGNER)"
[[ -s "$key" ]] || die "signing key '$key' does not exist or is empty"
[[ -n "$image" ]] || die "--image is required (e.g. myregistry.azurecr.io/ego-vault)"
[[ ${#tags[@]} -gt 0 ]] || tags=("${vault_ref#v}")
# The Dockerfile picks the stage ui-$vault_ui: any other value would make BuildKit look for an image of that name.
[[ "$vault_ui" == true || "$vault_ui" == false ]] || die "--vault-ui must be true or false (got '$vault_ui')"
command -v openssl >/dev/null || die "openssl is needed to fingerprint the signing key"

# Public-key fingerprint: busts the cached signing step when the key changes, and is safe to show.
fingerprint="sha256:$(openssl rsa -in "$key" -pubout -outform DER 2>/dev/null | openssl dgst -sha256 -r | cut -d' ' -f1)"

common=(
    --platform linux/amd64
    --secret "id=signingkey,src=$key"
    --build-arg "VAULT_REPO=$vault_repo"
    --build-arg "VAULT_REF=$vault_ref"
    --build-arg "VAULT_COMMIT=$vault_commit"
    --build-arg "VAULT_UI=$vault_ui"
    --build-arg "ENCLAVE_HEAP_MB=$heap_mb"
    --build-arg "SIGNING_KEY_FINGERPRINT=$fingerprint"
    --file "$here/Dockerfile"
)

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== building and signing (${vault_repo} ${vault_ref}, web UI ${vault_ui}, key ${fingerprint}, heap ${heap_mb} MB)"
docker buildx build "${common[@]}" --target identity --output "type=local,dest=$out" ${extra[@]+"${extra[@]}"} "$here"

unique_id="$(sed -n 's/^ENCLAVE_UNIQUE_ID=//p' "$out/identity.env")"
signer_id="$(sed -n 's/^ENCLAVE_SIGNER_ID=//p' "$out/identity.env")"
[[ "$unique_id" =~ ^[0-9a-f]{64}$ && "$signer_id" =~ ^[0-9a-f]{64}$ ]] ||
    die "could not read the enclave identity from the build (got '$(cat "$out/identity.env")')"

tag_args=()
for tag in "${tags[@]}"; do
    tag_args+=(--tag "$image:$tag")
done
if $push; then
    output=(--push)
else
    output=(--load)
fi

echo "== building the runtime image"
docker buildx build "${common[@]}" \
    --build-arg "ENCLAVE_UNIQUE_ID=$unique_id" \
    --build-arg "ENCLAVE_SIGNER_ID=$signer_id" \
    --metadata-file "$out/metadata.json" \
    "${tag_args[@]}" "${output[@]}" ${extra[@]+"${extra[@]}"} "$here"

digest="$(sed -n 's/.*"containerimage.digest": *"\([^"]*\)".*/\1/p' "$out/metadata.json" | head -n1)"

cat <<SUMMARY

Enclave identity (also the image labels confidential-vault.enclave.unique-id / .signer-id):
  uniqueId (MRENCLAVE): $unique_id
  signerId (MRSIGNER):  $signer_id

Stack config:
  pulumi config set --path vault.image.repository $image
  pulumi config set --path vault.image.tag ${tags[0]}
SUMMARY
if $push && [[ -n "$digest" ]]; then
    echo "  pulumi config set --path vault.image.digest $digest"
fi
cat <<SUMMARY
  pulumi config set --path vault.enclave.uniqueId $unique_id
  pulumi config set --path vault.enclave.signerId $signer_id
SUMMARY

if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    {
        echo "unique-id=$unique_id"
        echo "signer-id=$signer_id"
        echo "digest=$digest"
    } >>"$GITHUB_OUTPUT"
fi
