#!/bin/sh
# shellcheck shell=sh
#
# /sbin/cw-bench — the guest side of scripts/bench-vm.sh (busybox sh). Installed only in the
# bench image (scripts/build-guest.sh --with-bench-tools), next to /usr/bin/iperf3; the
# default image does not have it.
#
#   cw-bench MODE PORT SECONDS [SERVER_PORT]
#   cw-bench                     (no arguments: reads cw.bench.mode, cw.bench.port,
#                                 cw.bench.time, cw.bench.sport from /proc/cmdline — how
#                                 plain QEMU runs it: cw.mode=dhcp-exec cw.exec=/sbin/cw-bench)
#
#   MODE g2h   iperf3 client to the default gateway (the engine's alias for the host's
#              loopback) port PORT for SECONDS; the host's iperf3 server reports the figure
#   MODE h2g   iperf3 one-off server on SERVER_PORT (default 5201); prints the READY marker
#              when it listens, so the host starts its client through the engine's forward
#   MODE both  g2h, then h2g, in one boot
#
# Markers, at column 0 on stdout (the console under plain QEMU, the host's stdout under
# `causeway run`):
#   CW-BENCH-START mtu <eth0 mtu> gw <gateway>
#   CW-BENCH g2h rc <rc>              client finished (rc 0: the host has a result)
#   CW-BENCH-READY h2g port <port>    server listening
#   CW-BENCH h2g rc <rc>              server finished (124: nobody came within the bound)
# Every wait is bounded. Nothing is sent anywhere but to the gateway.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

MODE=${1:-}
PORT=${2:-}
SECS=${3:-5}
SPORT=${4:-5201}
if [ -z "$MODE" ]; then
    # shellcheck disable=SC2013  # word splitting of the kernel command line is intended
    for arg in $(cat /proc/cmdline); do
        case "$arg" in
            cw.bench.mode=*)  MODE=${arg#cw.bench.mode=} ;;
            cw.bench.port=*)  PORT=${arg#cw.bench.port=} ;;
            cw.bench.time=*)  SECS=${arg#cw.bench.time=} ;;
            cw.bench.sport=*) SPORT=${arg#cw.bench.sport=} ;;
        esac
    done
fi
marker() { printf '\n%s\n' "$*"; }

case "$MODE" in
    g2h|h2g|both) ;;
    *) marker "CW-BENCH-FAIL unknown mode '$MODE' (g2h, h2g or both)"; exit 2 ;;
esac

gw=$(ip -4 route show default | awk '{ for (i = 1; i < NF; i++) if ($i == "via") { print $(i + 1); exit } }')
marker "CW-BENCH-START mtu $(cat /sys/class/net/eth0/mtu 2>/dev/null) gw ${gw:-none}"
status=0

if [ "$MODE" = g2h ] || [ "$MODE" = both ]; then
    if [ -z "$gw" ] || [ -z "$PORT" ]; then
        marker "CW-BENCH g2h rc 2 (no default gateway or no port)"
        status=1
    else
        timeout $((SECS + 20)) iperf3 -c "$gw" -p "$PORT" -t "$SECS" --connect-timeout 5000 \
            > /tmp/g2h.log 2>&1
        rc=$?
        marker "CW-BENCH g2h rc $rc"
        if [ "$rc" -ne 0 ]; then
            tail -n 5 /tmp/g2h.log
            status=1
        fi
    fi
fi

# true when something listens on TCP port $1 (IPv4 or IPv6 socket; state 0A = LISTEN)
listening() {
    hex=$(printf '%04X' "$1")
    grep -q ":$hex [0-9A-F:]* 0A " /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

if [ "$MODE" = h2g ] || [ "$MODE" = both ]; then
    iperf3 -s -1 -p "$SPORT" > /tmp/h2g.log 2>&1 &
    spid=$!
    i=0
    while ! listening "$SPORT" && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if listening "$SPORT"; then
        marker "CW-BENCH-READY h2g port $SPORT"
        # the host's client runs SECS seconds; allow it time to connect and finish
        i=0
        limit=$(( (SECS + 30) * 10 ))
        while kill -0 "$spid" 2>/dev/null && [ "$i" -lt "$limit" ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if kill -0 "$spid" 2>/dev/null; then
            kill "$spid" 2>/dev/null
            rc=124
        else
            wait "$spid"
            rc=$?
        fi
    else
        kill "$spid" 2>/dev/null
        rc=125
    fi
    marker "CW-BENCH h2g rc $rc"
    if [ "$rc" -ne 0 ]; then
        tail -n 5 /tmp/h2g.log
        status=1
    fi
fi
exit "$status"
