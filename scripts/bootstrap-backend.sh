#!/usr/bin/env bash
# Create the team's Pulumi state backend in Azure Blob Storage and print its URL:
#
#   scripts/bootstrap-backend.sh <storage account> [--resource-group cv-state] [--location westeurope]
#       [--container state] [--assignee <object id>]... [--key-vault <name>]
#
# Uses the az CLI only (no Pulumi): the backend must exist before any stack, and keeping it out of Pulumi
# means no platform stack can ever delete the state it is stored in. Safe to run again.
#
# - storage account: StorageV2, HTTPS/TLS 1.2 only, no anonymous access, no shared keys (Entra ID only; Pulumi's
#   azblob backend authenticates with `az login` or the workflow's OIDC login when the URL has storage_account=),
#   blob versioning and 30-day soft delete so a damaged state file can be restored;
# - the container for the state;
# - "Storage Blob Data Contributor" on the account for you and every --assignee (e.g. the CI app's principal);
# - with --key-vault: an RBAC Key Vault with purge protection and an RSA key `pulumi`, for
#   `--secrets-provider azurekeyvault://…` instead of a shared passphrase ("Key Vault Crypto Officer" granted).
set -euo pipefail

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

account="${1:-}"
[[ -n "$account" && "$account" != -* ]] || usage
shift
resource_group="cv-state"
location="westeurope"
container="state"
key_vault=""
assignees=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --resource-group) resource_group="${2:?}"; shift 2 ;;
        --location) location="${2:?}"; shift 2 ;;
        --container) container="${2:?}"; shift 2 ;;
        --assignee) assignees+=("${2:?}"); shift 2 ;;
        --key-vault) key_vault="${2:?}"; shift 2 ;;
        *) echo "error: unknown option $1" >&2; usage ;;
    esac
done
if [[ ! "$account" =~ ^[a-z0-9]{3,24}$ ]]; then
    echo "error: storage account name '$account' must be 3-24 lower-case letters and digits (globally unique)" >&2
    exit 2
fi
if [[ ! "$container" =~ ^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])$ ]]; then
    echo "error: container name '$container' must be 3-63 lower-case letters, digits and '-'" >&2
    exit 2
fi
command -v az >/dev/null || { echo "error: 'az' not found on PATH (Azure CLI)" >&2; exit 1; }
az account show --output none 2>/dev/null || { echo "error: not logged in to Azure: run 'az login'" >&2; exit 1; }

me="$(az ad signed-in-user show --query id --output tsv)"
assignees=("$me" "${assignees[@]}")

echo "== resource group $resource_group ($location)" >&2
az group create --name "$resource_group" --location "$location" --tags purpose=pulumi-state --output none

echo "== storage account $account" >&2
az storage account create --name "$account" --resource-group "$resource_group" --location "$location" \
    --kind StorageV2 --sku Standard_ZRS --https-only true --min-tls-version TLS1_2 \
    --allow-blob-public-access false --allow-shared-key-access false --tags purpose=pulumi-state --output none
az storage account blob-service-properties update --account-name "$account" --resource-group "$resource_group" \
    --enable-versioning true --enable-delete-retention true --delete-retention-days 30 \
    --enable-container-delete-retention true --container-delete-retention-days 30 --output none
account_id="$(az storage account show --name "$account" --resource-group "$resource_group" --query id --output tsv)"

for assignee in "${assignees[@]}"; do
    echo "== Storage Blob Data Contributor for $assignee" >&2
    az role assignment create --assignee "$assignee" --role "Storage Blob Data Contributor" \
        --scope "$account_id" --output none
done

echo "== container $container" >&2
# Role assignments take a minute or two to apply; retry instead of failing the first run.
for attempt in 1 2 3 4 5 6; do
    if az storage container create --name "$container" --account-name "$account" --auth-mode login --output none; then
        break
    fi
    [[ $attempt -lt 6 ]] || { echo "error: cannot create container $container (role assignment not active yet?)" >&2; exit 1; }
    sleep 20
done

secrets_provider=""
if [[ -n "$key_vault" ]]; then
    echo "== key vault $key_vault" >&2
    az keyvault create --name "$key_vault" --resource-group "$resource_group" --location "$location" \
        --enable-rbac-authorization true --enable-purge-protection true --output none
    vault_id="$(az keyvault show --name "$key_vault" --resource-group "$resource_group" --query id --output tsv)"
    for assignee in "${assignees[@]}"; do
        az role assignment create --assignee "$assignee" --role "Key Vault Crypto Officer" \
            --scope "$vault_id" --output none
    done
    for attempt in 1 2 3 4 5 6; do
        if az keyvault key create --vault-name "$key_vault" --name pulumi --kty RSA --size 4096 --output none; then
            break
        fi
        [[ $attempt -lt 6 ]] || { echo "error: cannot create key pulumi in $key_vault" >&2; exit 1; }
        sleep 20
    done
    secrets_provider="azurekeyvault://$key_vault.vault.azure.net/keys/pulumi"
fi

echo >&2
echo "Backend ready. Use it with:" >&2
echo "  export PULUMI_BACKEND_URL='azblob://$container?storage_account=$account'" >&2
if [[ -n "$secrets_provider" ]]; then
    echo "  pulumi stack init <stack> --secrets-provider '$secrets_provider'" >&2
fi
# stdout carries only the URL, for scripts: url="$(scripts/bootstrap-backend.sh cvstate123)"
echo "azblob://$container?storage_account=$account"
