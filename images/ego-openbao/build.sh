#!/usr/bin/env bash
# Build (and optionally push) the signed EGo-OpenBao image, then print the enclave identity for the stack config.
#
#   images/ego-openbao/build.sh --key signing-key.pem --image ghcr.io/acme/ego-openbao [--tag 2.6.2-ego1.9.0] [--push]
#
# It runs `docker buildx build` twice against the same Dockerfile:
#   1. --target identity --output type=local: compiles and signs (the key goes in as the BuildKit secret
#      `signingkey`, never into a layer) and exports only identity.env (ego uniqueid / ego signerid);
#   2. the runtime image, with those IDs as build args for its labels. The build stage comes from the cache of
#      step 1; the runtime stage recomputes the IDs from its binary and fails if they differ from the labels.
#
# Options (defaults from SIGNING_KEY_FILE, EGO_OPENBAO_IMAGE, ENCLAVE_HEAP_MB, OPENBAO_REPO, OPENBAO_REF,
# OPENBAO_COMMIT, OPENBAO_UI, then from the Dockerfile):
#   --key FILE              signing key (RSA 3072, exponent 3): openssl genrsa -out signing-key.pem -3 3072
#   --image REPOSITORY      image repository, e.g. myregistry.azurecr.io/ego-openbao
#   --tag TAG               image tag (repeatable); default <OpenBao version>-ego<EGo version>, e.g. 2.6.2-ego1.9.0
#   --push                  push to the registry (log in first); otherwise load into the local Docker engine
#   --heap-mb N             enclave heapSize in MB (default 1024)
#   --openbao-repo URL      source repository (default https://github.com/openbao/openbao)
#   --openbao-ref TAG       release tag to build (default v2.6.2); needs --openbao-commit too
#   --openbao-commit SHA    the commit the tag must resolve to (the build refuses any other)
#   --ui true|false         embed OpenBao's web UI (default true)
# Extra arguments after `--` go to both buildx calls (e.g. --cache-from/--cache-to, --builder).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"

die() {
    echo "build.sh: $*" >&2
    exit 2
}

value_of() {
    [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
    printf '%s' "$2"
}

# The Dockerfile holds the pinned versions; read them rather than keeping a second copy here.
dockerfile_arg() {
    sed -n "s/^ARG $1=//p" "$here/Dockerfile" | head -n1
}

key="${SIGNING_KEY_FILE:-}"
image="${EGO_OPENBAO_IMAGE:-}"
tags=()
push=false
heap_mb="${ENCLAVE_HEAP_MB:-1024}"
openbao_repo="${OPENBAO_REPO:-$(dockerfile_arg OPENBAO_REPO)}"
openbao_ref="${OPENBAO_REF:-}"
openbao_commit="${OPENBAO_COMMIT:-}"
openbao_ui="${OPENBAO_UI:-true}"
extra=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --key) key="$(value_of "$@")"; shift 2 ;;
        --image) image="$(value_of "$@")"; shift 2 ;;
        --tag) tags+=("$(value_of "$@")"); shift 2 ;;
        --push) push=true; shift ;;
        --heap-mb) heap_mb="$(value_of "$@")"; shift 2 ;;
        --openbao-repo) openbao_repo="$(value_of "$@")"; shift 2 ;;
        --openbao-ref) openbao_ref="$(value_of "$@")"; shift 2 ;;
        --openbao-commit) openbao_commit="$(value_of "$@")"; shift 2 ;;
        --ui) openbao_ui="$(value_of "$@")"; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# A ref and its commit travel together: the Dockerfile's default commit belongs to its default ref only.
if [[ -n "$openbao_ref" && -z "$openbao_commit" ]]; then
    die "--openbao-ref $openbao_ref needs --openbao-commit (the commit that tag must resolve to)"
fi
[[ -n "$openbao_ref" ]] || openbao_ref="$(dockerfile_arg OPENBAO_REF)"
[[ -n "$openbao_commit" ]] || openbao_commit="$(dockerfile_arg OPENBAO_COMMIT)"
[[ "$openbao_commit" =~ ^[0-9a-f]{40}$ ]] || die "--openbao-commit must be a full 40-hex commit id (got '$openbao_commit')"
ego_version="$(sed -n 's|^FROM ghcr\.io/edgelesssys/ego-deploy:v\([0-9][0-9.]*\) AS runtime$|\1|p' "$here/Dockerfile")"
[[ -n "$ego_version" ]] || die "could not read the EGo version from the Dockerfile's runtime stage"

[[ -n "$key" ]] || die "--key is required (the enclave signing key; a new key means a new MRSIGNER)"
[[ -s "$key" ]] || die "signing key '$key' does not exist or is empty"
[[ -n "$image" ]] || die "--image is required (e.g. myregistry.azurecr.io/ego-openbao)"
[[ ${#tags[@]} -gt 0 ]] || tags=("${openbao_ref#v}-ego${ego_version}")
# The Dockerfile picks the stage ui-$openbao_ui: any other value would make BuildKit look for an image of that name.
[[ "$openbao_ui" == true || "$openbao_ui" == false ]] || die "--ui must be true or false (got '$openbao_ui')"
command -v openssl >/dev/null || die "openssl is needed to fingerprint the signing key"

# Public-key fingerprint: busts the cached signing step when the key changes, and is safe to show.
fingerprint="sha256:$(openssl rsa -in "$key" -pubout -outform DER 2>/dev/null | openssl dgst -sha256 -r | cut -d' ' -f1)"

common=(
    --platform linux/amd64
    --secret "id=signingkey,src=$key"
    --build-arg "OPENBAO_REPO=$openbao_repo"
    --build-arg "OPENBAO_REF=$openbao_ref"
    --build-arg "OPENBAO_COMMIT=$openbao_commit"
    --build-arg "OPENBAO_UI=$openbao_ui"
    --build-arg "ENCLAVE_HEAP_MB=$heap_mb"
    --build-arg "SIGNING_KEY_FINGERPRINT=$fingerprint"
    --file "$here/Dockerfile"
)

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "== building and signing (OpenBao ${openbao_ref} at ${openbao_commit}, EGo v${ego_version}, web UI ${openbao_ui}," \
    "key ${fingerprint}, heap ${heap_mb} MB)"
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
# The identity ego sign measured: productID and securityVersion come from the enclave.json the image was signed with.
product_id="$(sed -n 's/^ *"productID": *\([0-9][0-9]*\),*$/\1/p' "$here/enclave.json")"
security_version="$(sed -n 's/^ *"securityVersion": *\([0-9][0-9]*\),*$/\1/p' "$here/enclave.json")"

cat <<SUMMARY

Enclave identity (also the image labels confidential-vault.enclave.unique-id / .signer-id):
  uniqueId (MRENCLAVE): $unique_id
  signerId (MRSIGNER):  $signer_id
  productID:            $product_id
  securityVersion:      $security_version (clients require at least the configured vault.enclave.securityVersion)

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
  pulumi config set --path vault.enclave.productId $product_id
  pulumi config set --path vault.enclave.securityVersion $security_version
SUMMARY

if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
    {
        echo "unique-id=$unique_id"
        echo "signer-id=$signer_id"
        echo "digest=$digest"
        echo "image=$image:${tags[0]}"
    } >>"$GITHUB_OUTPUT"
fi
