#!/bin/sh
# shellcheck shell=sh
#
# /init of causeway's test guest (busybox sh; installed as /init by scripts/build-guest.sh).
#
# Purpose: bring up a tiny Linux guest whose network is provided by causeway (or, for
# comparison, QEMU's -netdev user) and report what it sees as grep-able marker lines on the
# console (ttyS0), then power off. Every marker line starts with "CW-" at column 0:
#
#   CW-BOOT <kernel release> uptime <s>           init started, /proc etc. mounted
#   CW-MODULE-FAIL <module> rc <rc>               a module from /lib/modules/load.list failed
#   CW-NET-UP eth0 mac <mac>                       eth0 exists and is up
#   CW-NET-FAIL <reason>                           no eth0 / cannot bring it up
#   CW-LEASE <ip>/<prefix> gw <gw> dns <dns> mtu <mtu>   DHCP lease obtained and configured
#   CW-LEASE-FAIL                                  udhcpc got no lease
#   CW-FETCH-OK <first line of body>               cw.url fetched with busybox wget
#   CW-FETCH-SUM <bytes> <md5>                     size and md5 of the fetched body
#   CW-FETCH-FAIL rc <rc> <wget error>             fetch failed
#   CW-HTTPD-READY port <port>                     (dhcp-httpd mode) guest httpd listening
#   CW-EXEC-RC <rc>                                (dhcp-exec mode) cw.exec's exit status
#   CW-TIME <event> <uptime seconds>               guest-side timing of lease/fetch
#   CW-DONE <mode> result <ok|fail>                last line before poweroff
#
# Kernel command line parameters (all optional):
#   cw.mode=dhcp-test   DHCP on eth0, print CW-LEASE, fetch cw.url (if given), power off
#   cw.mode=dhcp-httpd  DHCP on eth0, serve /www with busybox httpd on cw.port (default 8080),
#                       stay up until cw.hold seconds (default 60) have passed, power off
#   cw.mode=shell       DHCP attempt, then an interactive shell on the console (default mode)
#   cw.mode=off         power off right after bringing the links up
#   cw.mode=dhcp-exec   DHCP on eth0, run the program cw.exec (an absolute path in the image;
#                       it reads its own cw.* parameters from /proc/cmdline), print
#                       CW-EXEC-RC <rc>, power off (scripts/bench-vm.sh: cw.exec=/sbin/cw-bench)
#   cw.exec=PATH        what dhcp-exec runs
#   cw.url=URL          what dhcp-test fetches
#   cw.port=N, cw.hold=S  see dhcp-httpd
#   cw.debug=1          set -x and list loaded modules
#
# It never sends traffic anywhere except through eth0 to the addresses given on the command
# line / by the DHCP server (10.0.2.x in slirp's scheme).

# No "set -e": this is PID 1, and init exiting panics the kernel; every failure is reported
# as a marker instead and the guest powers off.
PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

marker() {
    # Markers are written straight to the console so they are never interleaved with other
    # output mid-line (the kernel may print asynchronously too; a leading newline keeps
    # the marker at column 0).
    printf '\n%s\n' "$*" > /dev/console
}

log() {
    printf 'cw-init: %s\n' "$*" > /dev/console
}

uptime_s() {
    read -r up _ < /proc/uptime
    echo "$up"
}

# ---------------------------------------------------------------- mounts
mkdir -p /proc /sys /dev /tmp /run /var/run /etc /www
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
exec < /dev/console > /dev/console 2>&1
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

# ---------------------------------------------------------------- command line
CW_MODE=shell
CW_URL=
CW_PORT=8080
CW_HOLD=60
CW_DEBUG=0
CW_EXEC=
# shellcheck disable=SC2013  # word splitting of the kernel command line is intended
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        cw.mode=*)  CW_MODE=${arg#cw.mode=} ;;
        cw.url=*)   CW_URL=${arg#cw.url=} ;;
        cw.port=*)  CW_PORT=${arg#cw.port=} ;;
        cw.hold=*)  CW_HOLD=${arg#cw.hold=} ;;
        cw.debug=*) CW_DEBUG=${arg#cw.debug=} ;;
        cw.exec=*)  CW_EXEC=${arg#cw.exec=} ;;
    esac
done
[ "$CW_DEBUG" = 1 ] && set -x

marker "CW-BOOT $(uname -r) uptime $(uptime_s)"

# ---------------------------------------------------------------- modules
# load.list holds module paths (relative to /lib/modules/<release>) in dependency order,
# computed from modules.dep at build time.
KDIR=/lib/modules/$(uname -r)
if [ -f /lib/modules/load.list ]; then
    while read -r mod; do
        [ -n "$mod" ] || continue
        name=${mod##*/}
        name=${name%.ko}
        # Already loaded (or built in)? insmod would fail with EEXIST; skip quietly.
        if [ -d "/sys/module/$(echo "$name" | tr - _)" ]; then
            continue
        fi
        out=$(insmod "$KDIR/$mod" 2>&1)
        rc=$?
        if [ "$rc" -ne 0 ]; then
            marker "CW-MODULE-FAIL $name rc $rc $out"
        fi
    done < /lib/modules/load.list
fi
[ "$CW_DEBUG" = 1 ] && cat /proc/modules > /dev/console

# ---------------------------------------------------------------- links
ip link set lo up

# The virtio-net device is probed asynchronously after the driver is loaded: wait (bounded)
# for eth0 to appear.
i=0
while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done

NET_OK=0
if [ -e /sys/class/net/eth0 ]; then
    if ip link set eth0 up; then
        NET_OK=1
        marker "CW-NET-UP eth0 mac $(cat /sys/class/net/eth0/address)"
    else
        marker "CW-NET-FAIL cannot set eth0 up"
    fi
else
    marker "CW-NET-FAIL no eth0 after 5 s ($(cd /sys/class/net && echo *))"
fi

# ---------------------------------------------------------------- DHCP
# udhcpc's hook (/etc/udhcpc.script) configures the address, default route and resolv.conf
# and writes the lease to /run/lease.env.
do_dhcp() {
    [ "$NET_OK" = 1 ] || return 1
    rm -f /run/lease.env
    # -q: quit after the lease, -n: exit if no lease, -t 5: five discover attempts
    # -T 1: one second between them, -f: foreground.
    # -O mtu: also ask for option 26 (the hook applies it).
    udhcpc -i eth0 -f -q -n -t 5 -T 1 -O mtu -s /etc/udhcpc.script > /run/udhcpc.log 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && [ -f /run/lease.env ]; then
        # shellcheck disable=SC1091
        . /run/lease.env
        marker "CW-LEASE ${LEASE_IP}/${LEASE_PREFIX} gw ${LEASE_GW:-none} dns ${LEASE_DNS:-none} mtu ${LEASE_MTU:-?}"
        marker "CW-TIME lease $(uptime_s)"
        return 0
    fi
    marker "CW-LEASE-FAIL rc $rc"
    sed 's/^/udhcpc: /' /run/udhcpc.log > /dev/console
    return 1
}

case "$CW_MODE" in
    dhcp-test)
        result=ok
        if do_dhcp; then
            if [ -n "$CW_URL" ]; then
                # Bounded by busybox timeout, not wget -T: Debian's busybox 1.35 wget
                # segfaults whenever -T is given.
                out=$(timeout 15 wget -q -O /tmp/body "$CW_URL" 2>&1)
                rc=$?
                if [ "$rc" -eq 0 ]; then
                    first=$(head -n 1 /tmp/body)
                    marker "CW-FETCH-OK ${first}"
                    marker "CW-FETCH-SUM $(wc -c < /tmp/body) $(md5sum < /tmp/body | cut -d' ' -f1)"
                    marker "CW-TIME fetch $(uptime_s)"
                else
                    marker "CW-FETCH-FAIL rc $rc $(echo "$out" | tr '\n' ' ')"
                    result=fail
                fi
            fi
        else
            result=fail
        fi
        marker "CW-DONE dhcp-test result $result"
        ;;
    dhcp-httpd)
        if do_dhcp; then
            echo "causeway-guest $(uname -r)" > /www/index.html
            httpd -p "0.0.0.0:${CW_PORT}" -h /www
            marker "CW-HTTPD-READY port ${CW_PORT}"
            sleep "$CW_HOLD"
            marker "CW-DONE dhcp-httpd result ok"
        else
            marker "CW-DONE dhcp-httpd result fail"
        fi
        ;;
    dhcp-exec)
        result=fail
        if do_dhcp; then
            if [ -n "$CW_EXEC" ] && [ -x "$CW_EXEC" ]; then
                "$CW_EXEC"
                rc=$?
                marker "CW-EXEC-RC $rc"
                [ "$rc" -eq 0 ] && result=ok
            else
                marker "CW-EXEC-FAIL cw.exec '${CW_EXEC}' is not an executable in this image"
            fi
        fi
        marker "CW-DONE dhcp-exec result $result"
        ;;
    off)
        marker "CW-DONE off result ok"
        ;;
    shell|*)
        do_dhcp || true
        log "mode '$CW_MODE': interactive shell on the console; exit to power off"
        setsid cttyhack sh -l
        marker "CW-DONE shell result ok"
        ;;
esac

sync
poweroff -f
# poweroff -f should not return; if it does (no ACPI), fall back to sysrq.
sleep 5
echo o > /proc/sysrq-trigger
