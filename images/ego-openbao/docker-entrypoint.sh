#!/usr/local/lib/ego-openbao/supervisor/bao
# shellcheck shell=dash
#
# Entrypoint of the EGo-OpenBao image, and the supervisor of its enclave. The openbao chart's server container runs
#   /bin/sh -ec '…; /usr/local/bin/docker-entrypoint.sh bao server -config=/tmp/storageconfig.hcl'   (standalone)
#   /bin/sh -ec '/usr/local/bin/docker-entrypoint.sh bao server -dev'                               (dev mode)
# and stops it with its preStop hook, `sleep N && kill -SIGTERM $(pidof bao)`.
#
# Start: the binary was compiled and signed when the image was built. This runs it with `ego run` and never builds,
# signs or touches the network, so every start runs the same enclave. Everything after `bao` reaches the enclave
# unchanged; inside it, `bao server` runs the measured configuration embedded in the enclave, not the -config file
# given here (bootstrap/launch.go; README.md, "Measured configuration").
#
# Stop: `ego run` starts `ego-host` as its child and forwards no signal (EGo v1.9.0, ego/internal/launch/launch.go).
# ego-host tears the enclave down in order only on SIGINT; any other signal kills it outright (Edgeless RT erthost.cpp),
# and OpenBao inside gets no signal at all. So this script stays in the foreground as the process the preStop finds
# (its interpreter is dash installed as .../supervisor/bao: argv[0] ends in `bao`, which is what `pidof bao` matches),
# turns SIGTERM or SIGINT into one SIGINT for ego-host, waits until ego-host has exited and exits with ego's status.
#
# OE_SIMULATION=1 on the container runs the same image without SGX (read by ego-host; the enclave, which gets it too,
# then marks its listener certificate as a simulation instead of attesting it).
set -u

readonly enclave_binary=/usr/local/lib/ego-openbao/bao

log() {
    echo "docker-entrypoint.sh: $*" >&2
}

# The chart names the program first, like the official image's entrypoint expects; ego run takes only its arguments.
if [ "$#" -gt 0 ] && [ "$1" = "bao" ]; then
    shift
fi
if [ "$#" -eq 0 ]; then
    log "no OpenBao command given (e.g. 'bao server -config=/tmp/storageconfig.hcl')"
    exit 64
fi

# running PID: the process exists and has not exited (a zombie has exited; its parent just has not reaped it yet).
# /proc/PID/stat is "PID (COMM) STATE PPID …"; COMM may contain spaces and parentheses, so parse after the last ") ".
running() {
    { IFS= read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    rest=${stat##*) }
    [ "${rest%% *}" != Z ]
}

# children_of PID: the running processes whose parent is PID.
children_of() {
    for stat_file in /proc/[0-9]*/stat; do
        { IFS= read -r stat <"$stat_file"; } 2>/dev/null || continue
        rest=${stat##*) }
        state=${rest%% *}
        rest=${rest#* }
        if [ "${rest%% *}" = "$1" ] && [ "$state" != Z ]; then
            echo "${stat%% *}"
        fi
    done
}

stop_requested=false
trap 'stop_requested=true' TERM INT
trap 'log "SIGHUP ignored: EGo passes no signals into the enclave, so OpenBao cannot reload its configuration; restart the pod instead"' HUP

# `&` makes the shell start ego with SIGINT ignored, and ego-host would inherit that until it installs its handler;
# env resets it, so a SIGINT that arrives while the enclave is still loading stops ego-host instead of being lost.
env --default-signal=INT ego run "$enclave_binary" "$@" &
ego_pid=$!

host_pids=
while :; do
    if "$stop_requested" && [ -z "$host_pids" ]; then
        host_pids=$(children_of "$ego_pid")
        if [ -n "$host_pids" ]; then
            log "stopping: SIGINT to ego-host (pid $host_pids), which tears the enclave down in order"
            # Once: ego-host restores the default action before the teardown, so a second SIGINT would cut it short.
            # shellcheck disable=SC2086 # one pid per word
            kill -INT $host_pids 2>/dev/null || true
        elif running "$ego_pid"; then
            sleep 0.1 # ego has not started ego-host yet
            continue
        fi
    fi
    # Returns when ego exits, or early when a trapped signal arrives (then ego is still there and we loop).
    wait "$ego_pid"
    status=$?
    [ -e "/proc/$ego_pid" ] || break
done

# ego returns when ego-host does; only if ego itself was killed can ego-host still be tearing the enclave down.
for pid in $host_pids; do
    while running "$pid"; do
        sleep 0.1
    done
done
log "ego exited with status $status$("$stop_requested" && echo " after a stop request")"
exit "$status"
