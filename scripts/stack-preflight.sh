# shellcheck shell=bash
# Sourced by scripts/up.sh and scripts/down.sh, from the repository root: the checks both make before they touch a
# stack. `stack_preflight <stack>` returns only when Pulumi.<stack>.yaml exists, pulumi, az and python3 are on PATH,
# az is logged in and the stacks' passphrase is set; it exports PULUMI_BACKEND_URL (Pulumi's local file backend
# unless it names another, e.g. azblob://state?storage_account=...).
stack_preflight() {
    local stack="$1" file tool
    if [[ ! -f "Pulumi.$stack.yaml" ]]; then
        local stacks=()
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
}
