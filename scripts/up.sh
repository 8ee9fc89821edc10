#!/usr/bin/env bash
# Set up and deploy one stack: `scripts/up.sh <stack>` (e.g. dev, prod).
# Uses Pulumi's local file backend unless PULUMI_BACKEND_URL names another (e.g. azblob://state?storage_account=...).
set -euo pipefail
stack="${1:-}"
if [[ -z "$stack" ]]; then
    echo "usage: scripts/up.sh <stack>   (a Pulumi.<stack>.yaml must exist)" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
if [[ ! -f "Pulumi.$stack.yaml" ]]; then
    stacks=()
    for file in Pulumi.*.yaml; do stacks+=("${file#Pulumi.}"); done
    echo "error: Pulumi.$stack.yaml not found; stacks here: ${stacks[*]%.yaml}" >&2
    exit 2
fi
for tool in pulumi az python3; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found on PATH (see README prerequisites)" >&2; exit 1; }
done
az account show --output none 2>/dev/null || { echo "error: not logged in to Azure: run 'az login'" >&2; exit 1; }

export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$HOME/.pulumi-confidential-vault}"
if [[ "$PULUMI_BACKEND_URL" == file://* ]]; then
    mkdir -p "${PULUMI_BACKEND_URL#file://}"
fi
if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
    echo "error: set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE: it encrypts this stack's secrets" >&2
    exit 1
fi

pulumi login "$PULUMI_BACKEND_URL"
pulumi install
pulumi stack select --create "$stack"
pulumi up --stack "$stack"
