#!/usr/bin/env bash
# Destroy one stack and remove it: `scripts/down.sh <stack> [--release-protected] [--yes]`.
# Refuses a stack with protected resources (prod) unless given --release-protected; then it follows README
# "Teardown": state backup, destroy what is not protected, unprotect, destroy the rest, remove the stack.
# Afterwards it lists what Azure still bills or holds. Same backend and passphrase rules as scripts/up.sh.
set -euo pipefail

usage() {
    echo "usage: scripts/down.sh <stack> [--release-protected] [--yes]" >&2
    echo "  --release-protected  also delete protected resources (prod: cluster, SGX pool, IP, database, Key Vault)" >&2
    echo "  --yes                do not ask before each destroy (Pulumi's own --yes)" >&2
    exit 2
}

stack=""
release_protected=false
yes=()
for arg in "$@"; do
    case "$arg" in
        --release-protected) release_protected=true ;;
        --yes) yes=(--yes) ;;
        -*) echo "error: unknown option $arg" >&2; usage ;;
        *) [[ -z "$stack" ]] || usage; stack="$arg" ;;
    esac
done
[[ -n "$stack" ]] || usage
cd "$(dirname "$0")/.."
# shellcheck source=scripts/stack-preflight.sh
source scripts/stack-preflight.sh
stack_preflight "$stack"
# A cluster that is already gone must not block the destroy: its Kubernetes objects are dropped from the state.
export PULUMI_K8S_DELETE_UNREACHABLE=true

pulumi login "$PULUMI_BACKEND_URL"
state="$(pulumi stack export --stack "$stack")" || {
    echo "error: cannot read stack $stack in $PULUMI_BACKEND_URL (does it exist? 'pulumi stack ls')" >&2
    exit 1
}

# One line per finding, tab-separated: `protected <urn>`, `keyvault <name> <retention days> <purge protection>`,
# `postgresql <name> <backup retention days>`, `dnszone <zone>`.
findings="$(python3 -c '
import json, sys

def value(resource, *path):
    for side in ("outputs", "inputs"):
        node = resource.get(side) or {}
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            return node
    return ""

resources = (json.load(sys.stdin).get("deployment") or {}).get("resources") or []
zones = set()
for resource in resources:
    kind = resource.get("type", "")
    if resource.get("protect"):
        print("protected", resource["urn"], sep="\t")
    if kind == "azure-native:keyvault:Vault":
        print(
            "keyvault",
            value(resource, "name") or value(resource, "vaultName"),
            value(resource, "properties", "softDeleteRetentionInDays") or 90,
            str(value(resource, "properties", "enablePurgeProtection") is True).lower(),
            sep="\t",
        )
    elif kind == "azure-native:dbforpostgresql:Server":
        print(
            "postgresql",
            value(resource, "name") or value(resource, "serverName"),
            value(resource, "backup", "backupRetentionDays"),
            sep="\t",
        )
    elif kind == "azure-native:dns:RecordSet":
        zones.add(value(resource, "zoneName"))
for zone in sorted(zone for zone in zones if zone):
    print("dnszone", zone, sep="\t")
' <<<"$state")"

protected=()
while IFS=$'\t' read -r kind urn _; do
    [[ "$kind" == protected ]] && protected+=("$urn")
done <<<"$findings"

if ((${#protected[@]} > 0)); then
    if [[ "$release_protected" != true ]]; then
        echo "error: stack $stack has ${#protected[@]} protected resource(s); nothing was destroyed:" >&2
        printf '  %s\n' "${protected[@]}" >&2
        echo "Back up the secret store's data first (README \"Teardown\"), then run" >&2
        echo "  scripts/down.sh $stack --release-protected" >&2
        exit 1
    fi
    backup_dir="${XDG_STATE_HOME:-$HOME/.local/state}/confidential-vault"
    mkdir -p "$backup_dir"
    backup="$backup_dir/$stack-$(date -u +%Y%m%dT%H%M%SZ).json"
    printf '%s\n' "$state" >"$backup"
    echo "state of $stack saved to $backup (secrets in it stay encrypted)"
    pulumi destroy --stack "$stack" --exclude-protected "${yes[@]}"
    for urn in "${protected[@]}"; do
        pulumi state unprotect --stack "$stack" --yes "$urn"
    done
fi
pulumi destroy --stack "$stack" "${yes[@]}"
# The stack's settings file is part of the repository: keep it.
pulumi stack rm --stack "$stack" --preserve-config --yes

echo
echo "Stack $stack is destroyed and removed. Still billed or held in Azure:"
while IFS=$'\t' read -r kind name detail purge_protection; do
    case "$kind" in
        keyvault)
            if [[ "$purge_protection" == true ]]; then
                echo "  - Key Vault $name: soft-deleted with purge protection; its name and keys stay for $detail days" \
                    "and cannot be purged before (a new stack gets a new name)"
            else
                echo "  - Key Vault $name: soft-deleted for $detail days; purge it now with" \
                    "'az keyvault purge --name $name' to free the name"
            fi
            ;;
        postgresql)
            echo "  - PostgreSQL server $name: its automated backups are kept for their retention" \
                "(${detail:-?} days) after deletion"
            ;;
        dnszone)
            echo "  - Azure DNS zone $name: the records are deleted, the zone is yours and stays"
            ;;
    esac
done <<<"$findings"
echo "  - the state backend ($PULUMI_BACKEND_URL): the Blob account if you use one (scripts/bootstrap-backend.sh)"
echo "  - the EGo-OpenBao image in your registry (vault.image in Pulumi.$stack.yaml)"
echo "  - DNS records you created by hand (stacks without the dns setting): delete them, their address is released"
