#!/usr/bin/env bash
# Stop the SLURM test cluster started by ci/slurm/up.sh.
#
# Usage: ci/slurm/down.sh [DIR] [--purge]
#   DIR      defaults to $DASVIT_SLURM_DIR or /tmp/dasvit-slurm
#   --purge  also delete DIR (config, job state, accounting database, logs)
# DASVIT_SLURM_KEEP_DB=1 stops only the slurm daemons (munged and MariaDB keep running).
# Only processes recorded in DIR's pid files are signalled. Running jobs are
# cancelled first so that no slurmstepd is left behind. Safe to run twice.
set -uo pipefail

DIR=""
PURGE=0
for a in "$@"; do
    case "$a" in
        --purge) PURGE=1 ;;
        *) DIR=$a ;;
    esac
done
DIR=${DIR:-${DASVIT_SLURM_DIR:-/tmp/dasvit-slurm}}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
[ -d "$DIR" ] || { echo "[slurm-down] nothing at $DIR"; exit 0; }
export SLURM_CONF="$DIR/slurm.conf"

exec 9>"$DIR/.lock"
flock -w 120 9 || { echo "[slurm-down] $DIR/.lock is held" >&2; exit 1; }

pid_of() {  # pid_of PIDFILE NAME -> prints the pid if that process is alive and named NAME
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && running "$pid" && grep -q "$2" "/proc/$pid/comm" 2>/dev/null || return 1
    echo "$pid"
}

running() {  # alive and not a zombie (PID 1 here may reap orphans only every second or two)
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

stop() {  # stop PIDFILE NAME : SIGTERM, wait up to 15 s, then SIGKILL
    local pid i
    pid=$(pid_of "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 150); do
        running "$pid" || { echo "[slurm-down] stopped $2 ($pid)"; rm -f "$1"; return 0; }
        sleep 0.1
    done
    echo "[slurm-down] $2 ($pid) ignored SIGTERM, killing"
    kill -KILL "$pid" 2>/dev/null
    rm -f "$1"
}

# cancel the jobs of this cluster so their slurmstepd processes exit
if pid_of "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
    jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        echo "[slurm-down] cancelling jobs: $jobs"
        scancel $jobs 2>/dev/null
        for i in $(seq 50); do
            [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

for f in "$DIR"/run/slurmd.*.pid; do
    [ -e "$f" ] && stop "$f" slurmd
done
stop "$DIR/run/slurmctld.pid" slurmctld
stop "$DIR/run/slurmdbd.pid" slurmdbd
if [ "${DASVIT_SLURM_KEEP_DB:-0}" != 1 ]; then
    stop "$DIR/db/mysqld.pid" mariadbd
    stop "$DIR/munge/munged.pid" munged
fi

if [ "$PURGE" = 1 ]; then
    exec 9>&-
    rm -rf "$DIR"
    echo "[slurm-down] removed $DIR"
fi
exit 0
