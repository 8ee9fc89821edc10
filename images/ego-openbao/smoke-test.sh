#!/usr/bin/env bash
# Runs a built EGo-OpenBao image the way the openbao chart 0.29.2 runs it, in SGX simulation (OE_SIMULATION=1: no SGX
# needed, no protection), and checks what only the real binary can show (the image workflow runs it after each build):
#   - dev mode: the enclave starts, reports the OpenBao version it was built from, takes the dev root token from
#     BAO_DEV_ROOT_TOKEN_ID as the release sets it (so enclave.json forwards it), and serves the web UI (or says it
#     has none);
#   - standalone: the chart's command copies the config to /tmp/storageconfig.hcl, which the enclave reads through its
#     hostfs mount; init and unseal write storage "file" to /openbao/data; after a restart the data is still there;
#   - stop: the chart's preStop, run in the container, ends it in order (SIGINT to ego-host) well within the grace.
#
#   images/ego-openbao/smoke-test.sh IMAGE
# The version the server must report and whether it must serve the UI come from the image's own labels
# (confidential-vault.openbao.ref and .ui), so the test also shows that the labels describe the binary.
set -euo pipefail

die() {
    echo "smoke-test.sh: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: smoke-test.sh IMAGE"
image=$1
docker image inspect "$image" >/dev/null 2>&1 || docker pull --quiet "$image" >/dev/null
label() {
    docker image inspect -f "{{ index .Config.Labels \"confidential-vault.openbao.$1\" }}" "$image"
}
version="$(label ref)"
version=${version#v}
ui="$(label ui)"
[[ -n "$version" && ( "$ui" == true || "$ui" == false ) ]] || die "$image lacks the labels build.sh sets"

# The chart's server command (templates/_helpers.tpl "openbao.args", server.extraArgs empty) and preStop
# (templates/server-statefulset.yaml, server.preStopSleepSeconds 0), as the chart renders them; the tests in
# tests/test_ego_openbao_image.py check that they are the chart's.
# shellcheck disable=SC2016 # expanded by the container's /bin/sh, not here
readonly chart_standalone_args='cp /openbao/config/extraconfig-from-values.hcl /tmp/storageconfig.hcl;
[ -n "${HOST_IP}" ] && sed -Ei "s|HOST_IP|${HOST_IP?}|g" /tmp/storageconfig.hcl;
[ -n "${POD_IP}" ] && sed -Ei "s|POD_IP|${POD_IP?}|g" /tmp/storageconfig.hcl;
[ -n "${HOSTNAME}" ] && sed -Ei "s|HOSTNAME|${HOSTNAME?}|g" /tmp/storageconfig.hcl;
[ -n "${API_ADDR}" ] && sed -Ei "s|API_ADDR|${API_ADDR?}|g" /tmp/storageconfig.hcl;
[ -n "${TRANSIT_ADDR}" ] && sed -Ei "s|TRANSIT_ADDR|${TRANSIT_ADDR?}|g" /tmp/storageconfig.hcl;
[ -n "${RAFT_ADDR}" ] && sed -Ei "s|RAFT_ADDR|${RAFT_ADDR?}|g" /tmp/storageconfig.hcl;
/usr/local/bin/docker-entrypoint.sh bao server -config=/tmp/storageconfig.hcl
'
readonly chart_dev_args='/usr/local/bin/docker-entrypoint.sh bao server -dev
'
# shellcheck disable=SC2016 # expanded by the container's /bin/sh, not here
readonly chart_pre_stop='sleep 0 && kill -SIGTERM $(pidof bao)'

readonly port=18200
readonly api="http://127.0.0.1:$port"
name="ego-openbao-smoke-$$"
work="$(mktemp -d)"
cleanup() {
    docker rm -f "$name" >/dev/null 2>&1 || true
    docker volume rm -f "$name-data" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# What the chart's pod sets: uid/gid, no privilege escalation, the container's variables (dev ones in dev mode).
run_like_the_chart() { # run_like_the_chart ARGS_SCRIPT [docker run options...]
    local script=$1
    shift
    docker run -d --name "$name" --user 100:1000 --cap-drop ALL --security-opt no-new-privileges \
        -p "127.0.0.1:$port:8200" -e OE_SIMULATION=1 -e HOSTNAME=openbao-0 -e HOME=/home/openbao \
        -e SKIP_CHOWN=true -e SKIP_SETCAP=true -e BAO_ADDR=http://127.0.0.1:8200 \
        -e BAO_K8S_POD_NAME=openbao-0 -e BAO_K8S_NAMESPACE=vault \
        "$@" --entrypoint /bin/sh "$image" -ec "$script" >/dev/null
}

http_code() { # http_code PATH: the status of a GET, 000 when nothing answers
    curl -s -o /dev/null -w '%{http_code}' "$api$1" || true
}

wait_for_health() { # wait_for_health CODE...: until /v1/sys/health answers one of them (200 active, 501 uninit, 503 sealed)
    local code
    for _ in $(seq 1 180); do
        code="$(http_code /v1/sys/health)"
        for want in "$@"; do
            [[ "$code" == "$want" ]] && return 0
        done
        if [[ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]]; then
            docker logs "$name" >&2 || true
            die "the container exited before /v1/sys/health answered $*"
        fi
        sleep 1
    done
    docker logs "$name" >&2 || true
    die "/v1/sys/health answered $code, not $*, after 180 s"
}

json_field() { # json_field FIELD [INDEX] < JSON
    python3 -c 'import json, sys; v = json.load(sys.stdin)[sys.argv[1]]; print(v[int(sys.argv[2])] if sys.argv[2:] else v)' "$@"
}

stop_like_the_chart() {
    local started status
    started=$SECONDS
    docker exec "$name" /bin/sh -c "$chart_pre_stop" || die "the chart's preStop failed in the container"
    status="$(timeout 60 docker wait "$name")" || die "the container was still running 60 s after the preStop"
    docker logs "$name" >"$work/logs" 2>&1
    grep -q 'stopping: SIGINT to ego-host' "$work/logs" || { cat "$work/logs" >&2; die "no SIGINT reached ego-host"; }
    echo "   stopped in order in $((SECONDS - started)) s (container exit status $status)"
    docker rm "$name" >/dev/null
}

echo "== dev mode (bao server -dev)"
# The chart sets VAULT_DEV_ROOT_TOKEN_ID from its values; the release sets BAO_DEV_ROOT_TOKEN_ID (from a Secret), which
# OpenBao reads first: the token that works must be the release's.
run_like_the_chart "$chart_dev_args" -e VAULT_DEV_ROOT_TOKEN_ID=root -e BAO_DEV_ROOT_TOKEN_ID=smoke-root-token \
    -e 'VAULT_DEV_LISTEN_ADDRESS=[::]:8200'
wait_for_health 200
running_version="$(curl -fsS "$api/v1/sys/seal-status" | json_field version)"
echo "   OpenBao $running_version is up"
[[ "$running_version" == "$version" ]] || die "the server reports version $running_version, not $version"
curl -fsS -o /dev/null -H "X-Vault-Token: smoke-root-token" "$api/v1/auth/token/lookup-self" ||
    die "the dev root token from BAO_DEV_ROOT_TOKEN_ID is not valid: the variable did not reach the enclave"
curl -fsS "$api/ui/" >"$work/ui.html" || die "/ui/ did not answer"
if [[ "$ui" == true ]]; then
    grep -q '<title>OpenBao</title>' "$work/ui.html" || die "/ui/ does not serve the web UI"
else
    grep -q 'UI is not available in this binary' "$work/ui.html" || die "/ui/ serves something in a build without UI"
fi
echo "   dev root token and /ui/ (web UI $ui) as expected"
stop_like_the_chart

echo "== standalone (storage \"file\" on /openbao/data, config through /tmp/storageconfig.hcl)"
mkdir -p "$work/config"
cat >"$work/config/extraconfig-from-values.hcl" <<'HCL'
ui = true
disable_mlock = true
listener "tcp" {
  address         = "[::]:8200"
  cluster_address = "[::]:8201"
  tls_disable     = 1
}
storage "file" {
  path = "/openbao/data"
}
HCL
chmod -R a+rX "$work/config"
docker volume create "$name-data" >/dev/null
data_and_config=(-v "$name-data:/openbao/data" -v "$work/config:/openbao/config:ro")
run_like_the_chart "$chart_standalone_args" "${data_and_config[@]}"
wait_for_health 501
init="$(curl -fsS -X PUT -d '{"secret_shares": 1, "secret_threshold": 1}' "$api/v1/sys/init")"
unseal_key="$(json_field keys_base64 0 <<<"$init")"
unseal() {
    [[ "$(curl -fsS -X PUT -d "{\"key\": \"$unseal_key\"}" "$api/v1/sys/unseal" | json_field sealed)" == False ]] ||
        die "unseal did not unseal"
}
unseal
wait_for_health 200
echo "   initialised and unsealed"
stop_like_the_chart

run_like_the_chart "$chart_standalone_args" "${data_and_config[@]}"
wait_for_health 503
unseal
wait_for_health 200
echo "   restarted on the same data: sealed, then unsealed with the same key"
stop_like_the_chart
echo "== smoke test passed"
