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
# shellcheck source=scripts/stack-preflight.sh
source scripts/stack-preflight.sh
stack_preflight "$stack"

pulumi login "$PULUMI_BACKEND_URL"
pulumi install
pulumi stack select --create "$stack"
pulumi up --stack "$stack"
