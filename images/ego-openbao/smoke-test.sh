#!/usr/bin/env bash
# Runs a built EGo-OpenBao image the way the openbao chart 0.29.2 runs it, in SGX simulation (OE_SIMULATION=1: no SGX
# needed, no protection), and checks what only the real binary can show (the image workflow runs it after each build):
#   - dev mode: the enclave starts, reports the OpenBao version it was built from, takes the dev root token from
#     BAO_DEV_ROOT_TOKEN_ID as the release sets it (so enclave.json forwards it), and serves the web UI (or says it
#     has none);
#   - standalone: the chart's command passes -config=/tmp/storageconfig.hcl, here a file that asks for plain HTTP and
#     in-memory storage; the enclave ignores it and runs its measured configuration: TLS on a key born in the enclave,
#     with a certificate marked as a simulation, which scripts/verify.py refuses unless told --simulation and then
#     pins; every API call after that verifies the server with the pinned CA certificate (no curl -k). Init and unseal
#     write storage "file" to /openbao/data; after a restart the data is still there, behind a new key;
#   - a server flag outside the measured configuration's allow-list (-recovery) stops the enclave before OpenBao runs;
#   - stop: the chart's preStop, run in the container, ends it in order (SIGINT to ego-host) well within the grace.
#
#   images/ego-openbao/smoke-test.sh IMAGE
# Needs docker, curl and a python3 with scripts/verify.py's dependencies (PyJWT, cryptography: requirements.txt).
# The version the server must report and whether it must serve the UI come from the image's own labels
# (confidential-vault.openbao.ref and .ui), so the test also shows that the labels describe the binary.
# SMOKE_VERIFIER replaces scripts/verify.py (tests/test_ego_openbao_image.py runs this script against stand-ins).
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
# The name the listener certificate carries (CV_LISTENER_NAMES, as the release sets it); it resolves to the published
# port for curl (--resolve) and the verifier (--address) alike.
readonly listener_name=openbao.smoke.test
readonly verifier="${SMOKE_VERIFIER:-$(cd "$(dirname "$0")/../.." && pwd)/scripts/verify.py}"
[[ -f "$verifier" ]] || die "no verifier at $verifier"
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
        -e SKIP_CHOWN=true -e SKIP_SETCAP=true -e BAO_ADDR=https://127.0.0.1:8200 \
        -e BAO_K8S_POD_NAME=openbao-0 -e BAO_K8S_NAMESPACE=vault -e "CV_LISTENER_NAMES=$listener_name" \
        "$@" --entrypoint /bin/sh "$image" -ec "$script" >/dev/null
}

# Where the API calls go: plain HTTP (dev mode's listener), or TLS verified with the CA certificate the verifier pinned.
api=
curl_options=()
use_plain_http() {
    api="http://127.0.0.1:$port"
    curl_options=()
}
use_verified_tls() {
    api="https://$listener_name:$port"
    curl_options=(--cacert "$work/ca.pem" --resolve "$listener_name:$port:127.0.0.1")
}

http_code() { # http_code PATH: the status of a GET, 000 when nothing answers
    curl -s "${curl_options[@]}" -o /dev/null -w '%{http_code}' "$api$1" || true
}

api_call() { # api_call [curl options...] PATH: the body, failing on an HTTP error
    local path=${*: -1}
    curl -fsS "${curl_options[@]}" "${@:1:$#-1}" "$api$path"
}

verify() { # verify [verify.py options...]: scripts/verify.py against the published port, pinning to $work/ca.pem
    python3 "$verifier" --host "$listener_name" --port "$port" --address 127.0.0.1 --ca-file "$work/ca.pem" "$@"
}

wait_for_verified_tls() { # until the verifier accepts the simulation listener and has pinned its CA certificate
    for _ in $(seq 1 180); do
        if verify --simulation >"$work/verify.out" 2>"$work/verify.err"; then
            grep -q 'runs in simulation' "$work/verify.err" || die "the verifier did not report the simulation"
            return 0
        fi
        if [[ "$(docker inspect -f '{{.State.Running}}' "$name")" != true ]]; then
            docker logs "$name" >&2 || true
            die "the container exited before its TLS listener answered"
        fi
        sleep 1
    done
    cat "$work/verify.err" >&2
    docker logs "$name" >&2 || true
    die "the verifier did not accept the listener after 180 s"
}

expect_log() { # expect_log TEXT: the container's log contains TEXT
    docker logs "$name" >"$work/logs" 2>&1
    grep -qF -- "$1" "$work/logs" || { cat "$work/logs" >&2; die "the log does not say: $1"; }
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
# OpenBao reads first: the token that works must be the release's. Dev mode is OpenBao's own plain-HTTP listener.
use_plain_http
run_like_the_chart "$chart_dev_args" -e VAULT_DEV_ROOT_TOKEN_ID=root -e BAO_DEV_ROOT_TOKEN_ID=smoke-root-token \
    -e 'VAULT_DEV_LISTEN_ADDRESS=[::]:8200'
wait_for_health 200
running_version="$(api_call /v1/sys/seal-status | json_field version)"
echo "   OpenBao $running_version is up"
[[ "$running_version" == "$version" ]] || die "the server reports version $running_version, not $version"
api_call -o /dev/null -H "X-Vault-Token: smoke-root-token" /v1/auth/token/lookup-self ||
    die "the dev root token from BAO_DEV_ROOT_TOKEN_ID is not valid: the variable did not reach the enclave"
api_call /ui/ >"$work/ui.html" || die "/ui/ did not answer"
if [[ "$ui" == true ]]; then
    grep -q '<title>OpenBao</title>' "$work/ui.html" || die "/ui/ does not serve the web UI"
else
    grep -q 'UI is not available in this binary' "$work/ui.html" || die "/ui/ serves something in a build without UI"
fi
echo "   dev root token and /ui/ (web UI $ui) as expected"
stop_like_the_chart

echo "== standalone (the measured configuration; the chart's /tmp/storageconfig.hcl is ignored)"
mkdir -p "$work/config"
# What the host hands the enclave: plain HTTP and in-memory storage. Were it used, the listener would answer plain
# HTTP and nothing would survive the restart below.
cat >"$work/config/extraconfig-from-values.hcl" <<'HCL'
ui = true
listener "tcp" {
  address     = "[::]:8200"
  tls_disable = 1
}
storage "inmem" {}
HCL
chmod -R a+rX "$work/config"
docker volume create "$name-data" >/dev/null
data_and_config=(-v "$name-data:/openbao/data" -v "$work/config:/openbao/config:ro")
run_like_the_chart "$chart_standalone_args" "${data_and_config[@]}"
wait_for_verified_tls
echo "   TLS listener up; verify.py accepted it as a simulation and pinned its CA certificate"
expect_log "attested-listener: ignoring -config=/tmp/storageconfig.hcl from the host"
if verify >"$work/verify.out" 2>"$work/verify.err"; then
    die "verify.py accepted a simulation enclave without --simulation"
fi
grep -q 'NOT TRUSTED: the enclave runs in simulation' "$work/verify.err" ||
    { cat "$work/verify.err" >&2; die "verify.py refused for another reason than the simulation"; }
use_plain_http
plain="$(http_code /v1/sys/health)"
[[ "$plain" == 400 || "$plain" == 000 ]] || die "plain HTTP got an answer from OpenBao ($plain): TLS is not enforced"
use_verified_tls
wait_for_health 501
init="$(api_call -X PUT -d '{"secret_shares": 1, "secret_threshold": 1}' /v1/sys/init)"
unseal_key="$(json_field keys_base64 0 <<<"$init")"
unseal() {
    [[ "$(api_call -X PUT -d "{\"key\": \"$unseal_key\"}" /v1/sys/unseal | json_field sealed)" == False ]] ||
        die "unseal did not unseal"
}
unseal
wait_for_health 200
echo "   plain HTTP refused; initialised and unsealed over verified TLS"
stop_like_the_chart

cp "$work/ca.pem" "$work/first-ca.pem"
run_like_the_chart "$chart_standalone_args" "${data_and_config[@]}"
wait_for_verified_tls
if cmp -s "$work/ca.pem" "$work/first-ca.pem"; then
    die "the restarted enclave serves the same CA certificate: its listener key is not new"
fi
wait_for_health 503
unseal
wait_for_health 200
echo "   restarted on the same data, behind a new listener key: sealed, then unsealed with the same key"
stop_like_the_chart

echo "== a server flag outside the measured configuration (-recovery) is refused"
run_like_the_chart "${chart_standalone_args%$'\n'} -recovery" "${data_and_config[@]}"
status="$(timeout 300 docker wait "$name")" || die "the container was still running 300 s after it started"
[[ "$status" != 0 ]] || die "the enclave accepted -recovery (exit status 0)"
expect_log "attested-listener: refusing to start OpenBao"
expect_log "flag -recovery is not allowed"
docker rm "$name" >/dev/null
echo "   refused before OpenBao ran (exit status $status)"
echo "== smoke test passed"
