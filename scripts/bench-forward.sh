#!/usr/bin/env bash
# bench-forward.sh — host -> guest port forwarding: how fast a guest listener becomes reachable
# on the host's localhost (auto-forward detection latency), and what a forward carries (TCP
# throughput, connections/s, 1-byte round trips), for causeway and its peers, interleaved in
# one run.  See --help.
#
# Topology (everything stays on this machine):
#
#   sink ns  <--veth-->  "host" ns  (the engines and every host-side client run here)
#   (forwards nothing)       |
#                            +-- causeway / slirp4netns / pasta  -->  guest ns (the servers)
#                            +-- veth (kernel path, the physical limit) --> guest ns
#
# How the host reaches the guest's server:
#   causeway          127.0.0.1:P      automatic forward (guest listener detected by causeway)
#   causeway-manual   127.0.0.1:P+2500 `-p 127.0.0.1:P+2500:P --no-auto-forward`
#   causeway-attach   127.0.0.1:P      automatic forward, `--attach /run/netns/NAME` (detection only)
#   causeway-vm       127.0.0.1:P      automatic forward from a VM (`causeway run`, QEMU/TCG here;
#                                      the guest agent reports listeners over vsock; detection only)
#   pasta             192.0.2.1:P      `-t P`; a non-loopback source address: pasta's tap path
#   pasta-splice      127.0.0.1:P      `-t P`; a loopback source: pasta splices to guest loopback
#                                      (detection: `-t auto -T auto`, see below)
#   slirp4netns       127.0.0.1:P      add_hostfwd through --api-socket (guest 10.0.2.100:P)
#   veth              10.0.3.2:P       the guest's end of a veth pair
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=SCRIPTDIR/lib/bench-common.sh
. "$SCRIPT_DIR/lib/bench-common.sh"

BENCH_ARGS=("$@")
DETECT_CONTENDERS="causeway,causeway-attach,causeway-vm,pasta"
FWD_CONTENDERS="causeway,causeway-manual,pasta,pasta-splice,slirp4netns,veth"
ALL_CONTENDERS="causeway,causeway-attach,causeway-vm,causeway-manual,pasta,pasta-splice,slirp4netns,veth"
ALL_ROWS="detect,tcp,cps,rr"
RUNS=3
DURATION=5
LISTENS=50
GAP_MS=1000
BOUND_MS=5000
MTU=65520
RR_COUNT=10000
CONNS=8
ROWS=$ALL_ROWS
CONTENDERS=$ALL_CONTENDERS
JSON_OUT=""

usage() {
    cat <<EOF
Usage: $0 [options]

Host -> guest port forwarding, guest = a network namespace.  Rows:
  detect  auto-forward detection latency: guest listen() returns -> host 127.0.0.1:PORT accepts.
          Per run 2N listens on distinct ports, alternating a listener on 0.0.0.0 and one on the
          guest's 127.0.0.1 only, each after a random pause of 0..GAP ms (so listens fall at
          random phases of any periodic scan); the host polls connect() every ~0.5 ms and gives
          up after BOUND ms.  Contenders:
            causeway         \$CAUSEWAY netns -- python3 guest.py   (seccomp trap + sock_diag)
            causeway-attach  \$CAUSEWAY netns --attach /run/netns/NAME  (sock_diag poll only)
            causeway-vm      \$CAUSEWAY run -- causeway-netprobe listen-series ...  (a VM under
                             QEMU; the agent's trap + sock_diag, reported over vsock). Guest and
                             host clocks differ, so the latency runs from the moment the host
                             reads the guest's "listening" line (it travels the same ordered
                             vsock stream as the listener report) to the first accepted connect
            pasta            pasta -t auto -T auto  (pasta rescans /proc once a second; with
                             -T none, Debian's 2023 pasta never rescans, so -T auto is needed)
  tcp     iperf3 TCP throughput host -> guest through the forward (Gbit/s)
  cps     connections/s through the forward: wrk -t1 -c$CONNS with "Connection: close" against a
          tiny epoll HTTP server in the guest
  rr      1-byte TCP ping-pong through the forward, $RR_COUNT round trips (microseconds each)
          tcp/cps/rr contenders: causeway (automatic forward), causeway-manual (-p), pasta (tap
          path), pasta-splice, slirp4netns (add_hostfwd), veth (the kernel, the limit)
Runs are interleaved round-robin (every contender once per round, the starting contender
rotating).  Tables: median [min-max] over runs (detection: of the per-run medians / maxima),
runs, and causeway's median divided by each contender's (for ms and us lower is better).

Options:
  --runs N            repetitions per contender and row (default $RUNS)
  --duration SECONDS  length of each throughput and conn/s run (default $DURATION)
  --listens N         listens per listener address per detection run (default $LISTENS)
  --gap MS            largest random pause before a listen (default $GAP_MS)
  --bound MS          a listen not reachable after MS counts as never detected (default $BOUND_MS)
  --rr-count N        round trips per rr run (default $RR_COUNT)
  --mtu MTU           guest MTU for the engines and veth (default $MTU)
  --rows LIST         comma-separated subset of: $ALL_ROWS
  --contenders LIST   comma-separated subset of: $ALL_CONTENDERS
  --json FILE         also write every row as JSON to FILE (metrics autofwd_ms, autofwd_max_ms,
                      autofwd_missed and autofwd_lo_* for 127.0.0.1-only listeners,
                      tcp_h2g_gbps, conn_per_s, rr_us)
  --keep-logs         keep the per-run logs (temp directory is printed at exit)
  -h, --help          this text

Needs root (it creates namespaces).  Debian packages:
  apt-get install iperf3 passt slirp4netns wrk gcc python3 util-linux iproute2
Everything runs inside a private "host" namespace whose only uplink goes to a namespace that
forwards nothing; no traffic leaves the machine.
EOF
}

die_usage() { printf 'bench-forward.sh: %s\n(see --help)\n' "$1" >&2; exit 2; }

while (( $# > 0 )); do
    opt=$1 val=""
    case $opt in
        --runs|--duration|--listens|--gap|--bound|--rr-count|--mtu|--rows|--contenders|--json)
            [[ $# -ge 2 ]] || die_usage "$opt needs a value"
            val=$2; shift 2 ;;
        --*=*) val=${opt#*=}; opt=${opt%%=*}; shift ;;
        --keep-logs) BENCH_KEEP_TMP=1; shift; continue ;;
        -h|--help) usage; exit 0 ;;
        *) die_usage "unknown argument: $opt" ;;
    esac
    case $opt in
        --runs) RUNS=$val ;;
        --duration) DURATION=$val ;;
        --listens) LISTENS=$val ;;
        --gap) GAP_MS=$val ;;
        --bound) BOUND_MS=$val ;;
        --rr-count) RR_COUNT=$val ;;
        --mtu) MTU=$val ;;
        --rows) ROWS=$val ;;
        --contenders) CONTENDERS=$val ;;
        --json) JSON_OUT=$val ;;
        *) die_usage "unknown argument: $opt" ;;
    esac
done

posint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
posint "$RUNS" || die_usage "--runs must be a positive integer"
posint "$DURATION" || die_usage "--duration must be a positive integer (seconds)"
{ posint "$LISTENS" && (( LISTENS <= 1000 )); } || die_usage "--listens must be 1..1000"
[[ $GAP_MS =~ ^[0-9]+$ ]] || die_usage "--gap must be a whole number of milliseconds"
{ posint "$BOUND_MS" && (( BOUND_MS <= 60000 )); } || die_usage "--bound must be 1..60000 ms"
posint "$RR_COUNT" || die_usage "--rr-count must be a positive integer"
if ! [[ $MTU =~ ^[0-9]+$ ]] || (( MTU < 1280 || MTU > 65520 )); then
    die_usage "--mtu must be between 1280 and 65520"
fi
IFS=',' read -r -a ROWLIST <<< "$ROWS"
(( ${#ROWLIST[@]} > 0 )) || die_usage "--rows is empty"
for x in "${ROWLIST[@]}"; do
    [[ ,$ALL_ROWS, == *",$x,"* ]] || die_usage "unknown row '$x' (known: $ALL_ROWS)"
done
IFS=',' read -r -a CLIST <<< "$CONTENDERS"
(( ${#CLIST[@]} > 0 )) || die_usage "--contenders is empty"
for x in "${CLIST[@]}"; do
    [[ ,$ALL_CONTENDERS, == *",$x,"* ]] || die_usage "unknown contender '$x' (known: $ALL_CONTENDERS)"
done
want_row() { [[ ,$ROWS, == *",$1,"* ]]; }
# contenders_of ROW: the selected contenders that take part in ROW, in the canonical order
contenders_of() {
    local set=$FWD_CONTENDERS c out=()
    [[ $1 == detect ]] && set=$DETECT_CONTENDERS
    IFS=',' read -r -a all <<< "$set"
    for c in "${all[@]}"; do [[ ,$CONTENDERS, == *",$c,"* ]] && out+=("$c"); done
    printf '%s\n' "${out[@]}"
}

bench_require_root
bench_check_tools REQUIRED ip:iproute2 ss:iproute2 iperf3:iperf3 timeout:coreutils awk:mawk \
    python3:python3 nsenter:util-linux
HAVE_WRK=1 HAVE_CC=1
if want_row cps && ! bench_have wrk; then
    HAVE_WRK=0; bench_warn "wrk not found: the cps row is reported as missing  (Debian: apt-get install wrk)"
fi
if { want_row cps || want_row rr; } && ! bench_have cc; then
    HAVE_CC=0; bench_warn "no C compiler (cc) for the cps/rr helpers: those rows are reported as missing  (Debian: apt-get install gcc)"
fi

if [[ -n ${CAUSEWAY:-} ]]; then
    [[ $CAUSEWAY == /* ]] || CAUSEWAY=$PWD/$CAUSEWAY
else
    CAUSEWAY=$REPO_DIR/build/causeway
fi
PYTHON=$(command -v python3)
if [[ -n $JSON_OUT ]]; then
    : > "$JSON_OUT" || bench_die "cannot write $JSON_OUT"
fi

contender_binary() {
    case $1 in
        causeway*) printf '%s' "$CAUSEWAY" ;;
        pasta|pasta-splice) command -v pasta || printf 'pasta' ;;
        slirp4netns) command -v slirp4netns || printf 'slirp4netns' ;;
        veth) printf '' ;;
    esac
}
contender_package() {
    case $1 in
        pasta|pasta-splice) echo passt ;;
        slirp4netns) echo slirp4netns ;;
    esac
}
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }

bench_init

# Others may rebuild build/causeway while this runs (a relink removes the file for a moment and
# changes it between runs): measure one snapshot, copied now, for the whole run.
CAUSEWAY_ORIG=$CAUSEWAY
if [[ -f $CAUSEWAY && -x $CAUSEWAY ]]; then
    cp -p -- "$CAUSEWAY" "$BENCH_TMPDIR/causeway" || bench_die "cannot copy $CAUSEWAY"
    CAUSEWAY=$BENCH_TMPDIR/causeway
fi
# availability is decided once, so a contender never silently drops out of a round
declare -A AVAILABLE=()
for c in "${CLIST[@]}"; do
    bin=$(contender_binary "$c")
    if [[ -z $bin ]] || [[ $bin == /* && -x $bin && -f $bin ]]; then AVAILABLE[$c]=1; fi
done
contender_available() { [[ -n ${AVAILABLE[$1]:-} ]]; }
# causeway-vm: the default guest image plus the static netprobe (an initramfs overlay).
VM_GUEST_DIR=${CAUSEWAY_GUEST_DIR:-$REPO_DIR/build/guest}
VM_NETPROBE=$REPO_DIR/build/tests/tools/causeway-netprobe-guest
VM_INITRD=$BENCH_TMPDIR/vm-initrd.cpio.gz
if [[ -n ${AVAILABLE[causeway-vm]:-} ]]; then
    why=""
    bench_have qemu-system-x86_64 || why="qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
    [[ -z $why && ! -f $VM_GUEST_DIR/initramfs.cpio.gz ]] && why="no guest image in $VM_GUEST_DIR (scripts/build-guest.sh)"
    [[ -z $why && ! -x $VM_NETPROBE ]] && why="no $VM_NETPROBE (cmake --build build --target causeway_netprobe_guest)"
    if [[ -z $why ]]; then
        mkdir -p "$BENCH_TMPDIR/vm-overlay/usr/bin"
        cp "$VM_NETPROBE" "$BENCH_TMPDIR/vm-overlay/usr/bin/causeway-netprobe"
        (cd "$BENCH_TMPDIR/vm-overlay" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0) | gzip -1 > "$VM_INITRD.extra"
        cat "$VM_GUEST_DIR/initramfs.cpio.gz" "$VM_INITRD.extra" > "$VM_INITRD"
    else
        unset 'AVAILABLE[causeway-vm]'
        bench_warn "causeway-vm is not available: $why"
    fi
fi

HOST_NS=cwfwd-$$-host
SINK_NS=cwfwd-$$-sink
GUEST_NS=cwfwd-$$-guest
HOST_UPLINK_ADDR=192.0.2.1      # set by bench_setup_host_ns
CLIENT_TIMEOUT=$((DURATION + 25))
# a detection run: 2N listens, each at most GAP + BOUND + ~2.5 s (the "reached the guest" check)
DETECT_TIMEOUT=$(( 2 * LISTENS * (GAP_MS + BOUND_MS + 3000) / 1000 + 30 ))

# ---------------------------------------------------------------------------------------------
# Helpers written to the temp directory: the detection prober (python3) and a C tool for the
# cps/rr servers and the rr client (python would dominate a 10 us round trip).

AUTOFWD_PY=$BENCH_TMPDIR/autofwd.py
FWDTOOL=$BENCH_TMPDIR/fwdtool
cat > "$AUTOFWD_PY" <<'EOF'
"""Auto-forward detection latency, for bench-forward.sh.

guest role (inside the guest namespace):  autofwd.py guest CTRL N GAP_MS PORT_BASE SEED
  2N listens on ports PORT_BASE.., alternating 0.0.0.0 and 127.0.0.1, each after a random pause
  of 0..GAP_MS.  Right after listen() returns it sends "L ADDR PORT T" (T = CLOCK_MONOTONIC) over
  the unix socket CTRL, answers each connection with one byte, and closes the listener when the
  host says "N".
host role (host namespace, started first):  autofwd.py host CTRL BOUND_MS OUT
  For each "L": connect() to 127.0.0.1:PORT every 0.5 ms until it succeeds or BOUND_MS have
  passed since T, then waits up to 2 s for the guest's byte (did the connection reach the guest
  server?).  Writes "ADDR PORT LATENCY_MS|none REACHED(0|1)" to OUT.
CLOCK_MONOTONIC is the same in every network namespace, so T compares across them.
"""
import random, select, socket, sys, time


def guest(ctrl, n, gap_ms, port_base, seed):
    rng = random.Random(seed)
    c = socket.socket(socket.AF_UNIX)
    deadline = time.monotonic() + 10
    while True:
        try:
            c.connect(ctrl)
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("guest: cannot reach the control socket " + ctrl)
            time.sleep(0.02)
    f = c.makefile("rw")
    for i in range(2 * n):
        addr = "0.0.0.0" if i % 2 == 0 else "127.0.0.1"
        port = port_base + i
        time.sleep(rng.uniform(0, gap_ms / 1000.0))
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(16)
        t = time.monotonic()
        f.write("L %s %d %.9f\n" % (addr, port, t))
        f.flush()
        while True:
            r, _, _ = select.select([s, c], [], [], 30)
            if not r:
                sys.exit("guest: no word from the host side for 30 s")
            if s in r:
                a, _ = s.accept()
                try:
                    a.sendall(b"x")
                except OSError:
                    pass
                a.close()
            if c in r:
                if not f.readline():
                    sys.exit("guest: the host side went away")
                break
        s.close()
    f.write("E\n")
    f.flush()


def probe(o, addr, port, t, bound_ms):
    """connect() to 127.0.0.1:PORT every 0.5 ms until it succeeds or BOUND_MS have passed
    since T; then wait up to 2 s for the guest's byte. Writes one result line to O."""
    deadline = t + bound_ms / 1000.0
    lat, reached = None, 0
    while True:
        p = socket.socket()
        try:
            p.connect(("127.0.0.1", port))
            lat = (time.monotonic() - t) * 1000.0
        except OSError:
            p.close()
            if time.monotonic() >= deadline:
                break
            time.sleep(0.0005)
            continue
        p.settimeout(2)
        try:
            reached = 1 if p.recv(1) == b"x" else 0
        except OSError:
            pass
        p.close()
        break
    o.write("%s %d %s %d\n" % (addr, port, "none" if lat is None else "%.3f" % lat, reached))
    o.flush()


def host(ctrl, bound_ms, out):
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(ctrl)
    ls.listen(1)
    ls.settimeout(60)
    c, _ = ls.accept()
    f = c.makefile("rw")
    with open(out, "w") as o:
        while True:
            line = f.readline()
            if not line or line.startswith("E"):
                break
            _, addr, port, t = line.split()
            port, t = int(port), float(t)
            probe(o, addr, port, t, bound_ms)
            f.write("N\n")
            f.flush()


def vmhost(fifo, bound_ms, out):
    """The VM variant: "L ADDR PORT" lines on stdin (the guest command's stdout through
    causeway run); "N" to the command's stdin (FIFO) after each measurement. T is the
    arrival of the line here: the guest's clock is not ours."""
    w = open(fifo, "w")
    with open(out, "w") as o:
        for line in sys.stdin:
            if line.startswith("E"):
                break
            if not line.startswith("L "):
                continue
            t = time.monotonic()
            _, addr, port = line.split()
            port = int(port)
            probe(o, addr, port, t, bound_ms)
            w.write("N\n")
            w.flush()


if __name__ == "__main__":
    if sys.argv[1] == "vmhost":
        vmhost(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "guest":
        guest(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1] == "host":
        host(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    else:
        sys.exit("usage: autofwd.py guest|host ...")
EOF

cat > "$FWDTOOL.c" <<'EOF'
/* fwdtool, for bench-forward.sh
 *   fwdtool http PORT        epoll HTTP server on 0.0.0.0:PORT: every request gets a 2-byte body
 *                            with "Connection: close", then the server closes
 *   fwdtool echo PORT        echoes bytes on 0.0.0.0:PORT (TCP_NODELAY), one client at a time
 *   fwdtool rr ADDR PORT N   N one-byte round trips after 100 warm-up ones; prints us per trip */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int listen_on(int port, int flags) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | flags, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (s < 0) { perror("socket"); exit(1); }
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); exit(1); }
    if (listen(s, 4096) < 0) { perror("listen"); exit(1); }
    return s;
}

static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
static unsigned char state[1 << 16]; /* per fd: how much of "\r\n\r\n" has been seen */

static int http(int port) {
    int ls = listen_on(port, SOCK_NONBLOCK), ep = epoll_create1(EPOLL_CLOEXEC), one = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    if (c >= (int)sizeof state) { close(c); continue; }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    state[c] = 0;
                    struct epoll_event ce = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            char buf[4096];
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            int done = 0;
            for (ssize_t k = 0; k < r && !done; k++) {
                static const char end[] = "\r\n\r\n";
                state[fd] = buf[k] == end[state[fd]] ? state[fd] + 1 : (buf[k] == '\r' ? 1 : 0);
                done = state[fd] == 4;
            }
            if (done) (void)!write(fd, RESP, sizeof RESP - 1); /* fits any socket buffer */
            if (done || r <= 0) close(fd);                    /* also leaves the epoll set */
        }
    }
}

static int echo(int port) {
    int ls = listen_on(port, 0), one = 1;
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) { if (errno == EINTR) continue; perror("accept"); return 1; }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        char b[4096];
        ssize_t r;
        while ((r = read(c, b, sizeof b)) > 0)
            if (write(c, b, r) != r) break;
        close(c);
    }
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int rr(const char *addr, int port, long count) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) { fprintf(stderr, "bad address %s\n", addr); return 2; }
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = 0;
    for (long i = 0; i < count + 100; i++) {
        if (i == 100) t0 = now_us();
        char c = 'x';
        if (write(s, &c, 1) != 1) { perror("write"); return 1; }
        ssize_t r = read(s, &c, 1);
        if (r != 1) {
            fprintf(stderr, "round trip %ld: %s\n", i, r == 0 ? "connection closed by the peer" : strerror(errno));
            return 1;
        }
    }
    printf("%.3f\n", (now_us() - t0) / count);
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && !strcmp(argv[1], "http")) return http(atoi(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "echo")) return echo(atoi(argv[2]));
    if (argc == 5 && !strcmp(argv[1], "rr")) return rr(argv[2], atoi(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: fwdtool http PORT | echo PORT | rr ADDR PORT COUNT\n");
    return 2;
}
EOF
if (( HAVE_CC )) && { want_row cps || want_row rr; }; then
    if ! cc -O2 -o "$FWDTOOL" "$FWDTOOL.c" 2> "$BENCH_TMPDIR/fwdtool.cc.log"; then
        HAVE_CC=0
        bench_warn "compiling the cps/rr helper failed: those rows are reported as missing"
        sed 's/^/    /' "$BENCH_TMPDIR/fwdtool.cc.log" >&2
    fi
fi

# ---------------------------------------------------------------------------------------------
# Header

header_lines=(
    "test:    host -> guest forwarding, guest = network namespace; rows: $ROWS; ${RUNS} runs per contender and row, interleaved")
want_row detect && header_lines+=(
    "         detect: $((2 * LISTENS)) listens per run ($LISTENS on 0.0.0.0, $LISTENS on 127.0.0.1), random pause 0-${GAP_MS} ms before each, bound ${BOUND_MS} ms")
header_lines+=(
    "         tcp: iperf3 ${DURATION}s; cps: wrk -t1 -c${CONNS} ${DURATION}s, Connection: close; rr: ${RR_COUNT} 1-byte round trips; MTU ${MTU}"
    "peers:   iperf3 $(pkg_version iperf3), passt/pasta $(pkg_version passt), slirp4netns $(pkg_version slirp4netns), wrk $(pkg_version wrk)"
)
if [[ -x $CAUSEWAY ]]; then
    cw_version=$(timeout 5 "$CAUSEWAY" --version 2>/dev/null | head -n 1 || true)
    header_lines+=("causeway: $CAUSEWAY_ORIG (${cw_version:-version unknown}, $(date -u -r "$CAUSEWAY" '+built %Y-%m-%d %H:%M:%S UTC'); a copy taken at start is measured)")
    cw_help=$(timeout 5 "$CAUSEWAY" --help 2>/dev/null || true)
    if ! grep -qE '^ +run +' <<< "$cw_help"; then
        header_lines+=("attach:  netns only (this causeway has no \`run\` subcommand: no VM attachment to measure)")
    else
        header_lines+=("attach:  netns only (the VM attachment is not measured by this script yet)")
    fi
else
    header_lines+=("causeway: $CAUSEWAY_ORIG (not found)")
fi
busy=$(bench_cpu_busy 1)
busy_note=
if [[ $busy != '?' ]] && (( busy > 25 )); then
  busy_note='  <- someone else is using the machine (builds?): expect noisy numbers'
fi
header_lines+=("others:  CPUs ${busy}% busy in the second before the first run${busy_note}")
bench_header "causeway bench-forward: host -> guest port forwarding" "${header_lines[@]}"

for c in "${CLIST[@]}"; do
    if ! contender_available "$c"; then
        if [[ $c == causeway* ]]; then
            bench_warn "contender $c: $CAUSEWAY_ORIG not found; reported as missing  (build it, or set CAUSEWAY=/path/to/causeway)"
        else
            bench_warn "contender $c: $(contender_binary "$c") not found; reported as missing  (Debian: apt-get install $(contender_package "$c"))"
        fi
    fi
done

bench_setup_host_ns "$HOST_NS" "$SINK_NS" "$MTU"

# ---------------------------------------------------------------------------------------------
# Engines, servers and forwards.  Each measurement gets a fresh guest namespace and a fresh
# engine; run_* functions must not run in subshells (the EXIT trap must know every PID/ns).

ENGINE_PID="" SERVER_PID="" POLLER_PID=""
TARGET_ADDR="" TARGET_PORT=""
SLIRP_API=$BENCH_TMPDIR/slirp.sock

# start_engine LOG causeway|plain CMD...: CMD in the host namespace, in the background.  For
# causeway, CMD's guest command writes to LOG.server and causeway's log goes to LOG.engine.
start_engine() {
    local log=$1 kind=$2
    shift 2
    if [[ $kind == causeway ]]; then
        ip netns exec "$HOST_NS" "$@" > "$log.server" 2> "$log.engine" &
    else
        ip netns exec "$HOST_NS" "$@" > "$log.engine" 2>&1 &
    fi
    ENGINE_PID=$!
    bench_track_pid "$ENGINE_PID"
}

engine_gone() { # LOG WHAT: notes an engine that exited early; 0 if it did
    if ! kill -0 "$ENGINE_PID" 2>/dev/null || \
        [[ $(awk '{print $3}' "/proc/$ENGINE_PID/stat" 2>/dev/null) == Z ]]; then
        echo "the engine exited early ($2)" >> "$1.err"
        return 0
    fi
    return 1
}

# start_guest_server LOG CMD...: CMD in the guest namespace, in the background
start_guest_server() {
    local log=$1
    shift
    ip netns exec "$GUEST_NS" "$@" > "$log.server" 2>&1 &
    SERVER_PID=$!
    bench_track_pid "$SERVER_PID"
}

wait_guest_route() { # LOG ENGINE-NAME
    bench_wait_default_route "$GUEST_NS" 10 && return 0
    engine_gone "$1" "before configuring the guest" || \
        echo "$2 did not configure the guest within 10 s" >> "$1.err"
    return 1
}

wait_guest_listen() { # LOG PORT
    bench_wait_tcp_listen "$GUEST_NS" "$2" 10 && return 0
    echo "the guest server did not listen on port $2 within 10 s" >> "$1.err"
    return 1
}

# _cw_guest_listening PID PORT: a child of causeway PID (its COMMAND) sees a listener on PORT in
# its own network namespace.  Called through bench_wait_for.
# shellcheck disable=SC2317
_cw_guest_listening() {
    local kid kids
    kids=$(cat "/proc/$1/task/"*/children 2>/dev/null) || return 1
    for kid in $kids; do
        [[ -n $(nsenter --net="/proc/$kid/ns/net" ss -Hltn "sport = :$2" 2>/dev/null) ]] && return 0
    done
    return 1
}

# slirp4netns's API: add_hostfwd host 127.0.0.1:PORT -> guest (10.0.2.100):PORT
slirp_add_hostfwd() { # PORT
    ip netns exec "$HOST_NS" timeout 10 "$PYTHON" - "$SLIRP_API" "$1" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(json.dumps({"execute": "add_hostfwd", "arguments": {"proto": "tcp",
    "host_addr": "127.0.0.1", "host_port": int(sys.argv[2]), "guest_port": int(sys.argv[2])}}).encode())
s.shutdown(socket.SHUT_WR)
reply = s.recv(4096).decode()
if "error" in json.loads(reply):
    sys.exit("add_hostfwd: " + reply)
EOF
}

# setup_forward CONTENDER LOG PORT SERVER_CMD...: starts the engine and the guest server (which
# listens on 0.0.0.0:PORT or [::]:PORT), waits until the forward is usable and sets
# TARGET_ADDR/TARGET_PORT for the host-side client.  1 on failure (reason in LOG.err).
setup_forward() {
    local c=$1 log=$2 port=$3 hp
    shift 3
    TARGET_ADDR=127.0.0.1 TARGET_PORT=$port
    case $c in
        veth)
            bench_ns_add "$GUEST_NS"
            bench_veth_pair "$HOST_NS" vguest0 10.0.3.1/24 "$GUEST_NS" eth0 10.0.3.2/24 "$MTU"
            start_guest_server "$log" "$@"
            wait_guest_listen "$log" "$port" || return 1
            TARGET_ADDR=10.0.3.2 ;;
        slirp4netns)
            bench_ns_add "$GUEST_NS"
            rm -f "$SLIRP_API"
            start_engine "$log" plain slirp4netns --configure --mtu="$MTU" --api-socket "$SLIRP_API" \
                --netns-type=path "/run/netns/$GUEST_NS" tap0
            wait_guest_route "$log" slirp4netns || return 1
            if ! slirp_add_hostfwd "$port" >> "$log.err" 2>&1; then
                echo "slirp4netns add_hostfwd for port $port failed" >> "$log.err"
                return 1
            fi
            start_guest_server "$log" "$@"
            wait_guest_listen "$log" "$port" || return 1 ;;
        pasta|pasta-splice)
            bench_ns_add "$GUEST_NS"
            # --runas 0: as root, pasta otherwise drops to nobody and cannot enter the namespace
            start_engine "$log" plain pasta --runas 0 -f -q --config-net --mtu "$MTU" \
                -t "$port" -u none -T none -U none --netns "/run/netns/$GUEST_NS"
            wait_guest_route "$log" pasta || return 1
            start_guest_server "$log" "$@"
            wait_guest_listen "$log" "$port" || return 1
            if ! bench_wait_tcp_listen "$HOST_NS" "$port" 10; then
                echo "pasta did not bind host port $port within 10 s" >> "$log.err"
                return 1
            fi
            # pasta splices connections whose source is loopback; from the host's own
            # non-loopback address it takes the tap path
            if [[ $c == pasta ]]; then TARGET_ADDR=$HOST_UPLINK_ADDR; fi ;;
        causeway)
            start_engine "$log" causeway "$CAUSEWAY" netns --mtu "$MTU" -- "$@"
            if ! bench_wait_tcp_listen "$HOST_NS" "$port" 10 127.0.0.1; then
                engine_gone "$log" "before the forward appeared" || \
                    echo "the automatic forward of guest port $port did not appear on the host's 127.0.0.1 within 10 s" >> "$log.err"
                return 1
            fi ;;
        causeway-manual)
            hp=$((port + 2500))
            start_engine "$log" causeway "$CAUSEWAY" netns --mtu "$MTU" --no-auto-forward \
                -p "127.0.0.1:$hp:$port" -- "$@"
            if ! bench_wait_for 10 _cw_guest_listening "$ENGINE_PID" "$port"; then
                engine_gone "$log" "before the guest server listened" || \
                    echo "the guest server did not listen on port $port within 10 s" >> "$log.err"
                return 1
            fi
            if ! bench_wait_tcp_listen "$HOST_NS" "$hp" 10 127.0.0.1; then
                echo "causeway did not open host port 127.0.0.1:$hp (-p) within 10 s" >> "$log.err"
                return 1
            fi
            TARGET_PORT=$hp ;;
        *) echo "contender $c does not take part in this row" >> "$log.err"; return 1 ;;
    esac
}

# teardown LOG: stops everything the measurement started, deletes the guest namespace
teardown() {
    local log=$1
    if [[ -n $ENGINE_PID ]]; then bench_kill_pid "$ENGINE_PID"; ENGINE_PID=""; fi
    if [[ -n $SERVER_PID ]]; then bench_kill_pid "$SERVER_PID"; SERVER_PID=""; fi
    if [[ -n $POLLER_PID ]]; then bench_kill_pid "$POLLER_PID"; POLLER_PID=""; fi
    bench_ns_del "$GUEST_NS"
    rm -f "$SLIRP_API"
    : "$log"
}

# in_host LOG SECONDS CMD...: runs CMD in the host namespace, bounded; stdout is the caller's
in_host() {
    local log=$1 secs=$2 rc=0
    shift 2
    bench_run ip netns exec "$HOST_NS" timeout -k 5 "$secs" "$@" 2>> "$log.err" || rc=$?
    if (( rc == 124 || rc == 137 )); then
        echo "$1 timed out after ${secs}s" >> "$log.err"
    fi
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Measurements.  Each sets VALUE (and may set NOTE) and returns 0, or returns 1 with the reason
# in LOG.err.  Teardown always runs.

VALUE="" NOTE=""

# peer_seen LOG: the client address the guest's iperf3 server saw (tells the tap and splice
# paths apart)
peer_seen() {
    "$PYTHON" - "$1.server" 2>/dev/null <<'EOF' || echo '?'
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
print(d["start"]["connected"][0]["remote_host"])
EOF
}

measure_tcp() { # CONTENDER LOG PORT
    local c=$1 log=$2 port=$3 rc=0
    if setup_forward "$c" "$log" "$port" iperf3 -s -p "$port" -1 -J; then
        in_host "$log" "$CLIENT_TIMEOUT" iperf3 -c "$TARGET_ADDR" -p "$TARGET_PORT" \
            -t "$DURATION" -J --connect-timeout 5000 > "$log.json" || rc=$?
        # let the one-shot server write its report (it exits after the test; causeway with it)
        bench_wait_pid_exit "${SERVER_PID:-$ENGINE_PID}" 5 || true
    else
        rc=1
    fi
    teardown "$log"
    (( rc == 0 )) || return 1
    VALUE=$(bench_iperf3_gbps "$log.json" sum_received 2>> "$log.err") || return 1
    PEERS[$c]="${PEERS[$c]:-} $(peer_seen "$log")"
}

measure_cps() { # CONTENDER LOG PORT
    local c=$1 log=$2 port=$3 rc=0 errs non2xx
    if setup_forward "$c" "$log" "$port" "$FWDTOOL" http "$port"; then
        in_host "$log" "$CLIENT_TIMEOUT" wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 2s \
            -H 'Connection: close' "http://$TARGET_ADDR:$TARGET_PORT/" > "$log.wrk" || rc=$?
    else
        rc=1
    fi
    teardown "$log"
    (( rc == 0 )) || return 1
    VALUE=$(awk '/^Requests\/sec:/ {print $2}' "$log.wrk")
    if [[ -z $VALUE ]] || awk -v v="$VALUE" 'BEGIN { exit !(v <= 0) }'; then
        { echo "wrk completed no request:"; cat "$log.wrk"; } >> "$log.err"
        return 1
    fi
    errs=$(awk '/Socket errors:/ {gsub(",", ""); print "connect " $4 ", read " $6 ", write " $8 ", timeout " $10}' "$log.wrk")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$log.wrk")
    [[ -n $errs ]] && NOTE="socket errors: $errs"
    [[ -n $non2xx ]] && NOTE="${NOTE:+$NOTE; }non-2xx: $non2xx"
    return 0
}

measure_rr() { # CONTENDER LOG PORT
    local c=$1 log=$2 port=$3 rc=0
    if setup_forward "$c" "$log" "$port" "$FWDTOOL" echo "$port"; then
        in_host "$log" 120 "$FWDTOOL" rr "$TARGET_ADDR" "$TARGET_PORT" "$RR_COUNT" > "$log.rr" || rc=$?
    else
        rc=1
    fi
    teardown "$log"
    (( rc == 0 )) || return 1
    VALUE=$(head -n 1 "$log.rr")
    [[ $VALUE =~ ^[0-9.]+$ ]] || { echo "rr printed no result" >> "$log.err"; return 1; }
}

# measure_detect CONTENDER LOG ROUND: one detection run (2N listens).  Leaves the per-listen
# results in LOG.out ("ADDR PORT LATENCY_MS|none REACHED").
measure_detect() {
    local c=$1 log=$2 round=$3 rc=0 ctrl base lines
    ctrl=$BENCH_TMPDIR/ctl.$c.$round
    base=$((20000 + (round % 3) * 2000))
    rm -f "$ctrl"
    POLLER_PID=
    if [[ $c != causeway-vm ]]; then  # the VM's prober reads the guest's stdout instead
        ip netns exec "$HOST_NS" timeout -k 5 "$DETECT_TIMEOUT" \
            "$PYTHON" "$AUTOFWD_PY" host "$ctrl" "$BOUND_MS" "$log.out" > "$log.poller" 2>&1 &
        POLLER_PID=$!
        bench_track_pid "$POLLER_PID"
    fi
    local guest=("$PYTHON" "$AUTOFWD_PY" guest "$ctrl" "$LISTENS" "$GAP_MS" "$base" "$((round + 1))")
    case $c in
        causeway)
            # the guest program is causeway's COMMAND (so the bind/listen trap applies)
            bench_run ip netns exec "$HOST_NS" timeout -k 5 "$DETECT_TIMEOUT" \
                "$CAUSEWAY" netns --mtu "$MTU" -- "${guest[@]}" \
                > "$log.guest" 2> "$log.engine" || rc=$? ;;
        causeway-vm)
            # The guest program prints "L ADDR PORT" after each listen; the host side answers on
            # the command's stdin. Both ends run in the host namespace (QEMU needs no network).
            local fifo=$BENCH_TMPDIR/vmin.$round
            rm -f "$fifo"; mkfifo "$fifo"
            bench_run ip netns exec "$HOST_NS" timeout -k 5 "$DETECT_TIMEOUT" bash -c '
                "$1" run -q --guest-dir "$2" --initrd "$3" -- causeway-netprobe listen-series "$4" "$5" "$6" "$7" \
                    < "$8" 2> "$9" | "${10}" "${11}" vmhost "$8" "${12}" "${13}"' _ \
                "$CAUSEWAY" "$VM_GUEST_DIR" "$VM_INITRD" "$LISTENS" "$GAP_MS" "$base" "$((round + 1))" \
                "$fifo" "$log.engine" "$PYTHON" "$AUTOFWD_PY" "$BOUND_MS" "$log.out" > "$log.guest" 2>&1 || rc=$?
            rm -f "$fifo" ;;
        causeway-attach|pasta)
            bench_ns_add "$GUEST_NS"
            if [[ $c == pasta ]]; then
                # -t auto needs -T auto here: with -T none this pasta never rescans
                start_engine "$log" plain pasta --runas 0 -f -q --config-net --mtu "$MTU" \
                    -t auto -u none -T auto -U none --netns "/run/netns/$GUEST_NS"
            else
                start_engine "$log" causeway "$CAUSEWAY" netns --mtu "$MTU" --attach "/run/netns/$GUEST_NS"
            fi
            if wait_guest_route "$log" "$c"; then
                bench_run ip netns exec "$GUEST_NS" timeout -k 5 "$DETECT_TIMEOUT" "${guest[@]}" \
                    > "$log.guest" 2>&1 || rc=$?
            else
                rc=1
            fi ;;
    esac
    if (( rc == 124 || rc == 137 )); then
        echo "the detection run timed out after ${DETECT_TIMEOUT}s" >> "$log.err"
    elif (( rc != 0 )); then
        echo "the guest side exited with status $rc" >> "$log.err"
        [[ -s $log.guest ]] && tail -n 5 "$log.guest" >> "$log.err"
    fi
    if [[ -n $POLLER_PID ]]; then
        bench_wait_pid_exit "$POLLER_PID" 10 || echo "the host-side prober did not finish" >> "$log.err"
    fi
    teardown "$log"
    rm -f "$ctrl"
    lines=$(wc -l < "$log.out" 2>/dev/null || echo 0)
    if (( rc != 0 || lines != 2 * LISTENS )); then
        echo "detection run incomplete: $lines of $((2 * LISTENS)) listens measured" >> "$log.err"
        [[ -s $log.poller ]] && tail -n 5 "$log.poller" >> "$log.err"
        return 1
    fi
}

# det_values FILE ADDR: per-listen latencies for ADDR, a never-detected listen counted as BOUND
det_values() {
    awk -v a="$2" -v b="$BOUND_MS" '$1 == a { printf "%s ", ($3 == "none" ? b : $3) }' "$1"
}
det_count() { # FILE ADDR missed|unreached
    awk -v a="$2" -v w="$3" '
        $1 == a && w == "missed" && $3 == "none" { n++ }
        $1 == a && w == "unreached" && $3 != "none" && $4 == 0 { n++ }
        END { print n + 0 }' "$1"
}

# failure_text LOG: what a failed run printed, for the report
failure_text() {
    local log=$1 f
    for f in "$log.err" "$log.engine" "$log.server" "$log.guest" "$log.poller" "$log.json" "$log.wrk"; do
        [[ -s $f ]] || continue
        printf '    --- %s (last 15 lines)\n' "${f##*.}"
        tail -n 15 "$f" | sed 's/^/    | /'
    done
}

# ---------------------------------------------------------------------------------------------
# Rows: round r starts at contender r (mod count), so no contender is always first.

declare -A VALUES=() FAILS=() FIRST_FAIL=() NOTES=() PEERS=()
declare -A DMED=() DMAX=() DMISS=() DRUNS=()
JSON_PARTS=()
any_failed=0
counter=0
BENCH_NAME_WIDTH=16

row_unit() {
    case $1 in tcp) echo "Gbit/s" ;; cps) echo "conn/s" ;; rr) echo "us/trip" ;; esac
}
row_metric() {
    case $1 in tcp) echo tcp_h2g_gbps ;; cps) echo conn_per_s ;; rr) echo rr_us ;; esac
}
row_title() {
    case $1 in
        detect) echo "Auto-forward detection latency: guest listen() returns -> host 127.0.0.1:PORT accepts" ;;
        tcp) echo "TCP throughput host -> guest through the forward (iperf3, higher is better)" ;;
        cps) echo "Connections/s host -> guest through the forward (wrk -t1 -c$CONNS, Connection: close; higher is better)" ;;
        rr) echo "1-byte TCP round trip host -> guest through the forward ($RR_COUNT trips; lower is better)" ;;
    esac
}
# row_missing ROW: why the whole row cannot run ("" if it can)
row_missing() {
    case $1 in
        cps) (( HAVE_WRK )) || { echo "wrk not found (apt-get install wrk)"; return; }
             (( HAVE_CC )) || echo "no C compiler for the HTTP server (apt-get install gcc)" ;;
        rr) (( HAVE_CC )) || echo "no C compiler for the rr helper (apt-get install gcc)" ;;
    esac
}

run_row() { # ROW
    local row=$1 r k c log n rs port ok
    local -a list
    mapfile -t list < <(contenders_of "$row")
    n=${#list[@]}
    (( n > 0 )) || return 0
    [[ -z $(row_missing "$row") ]] || return 0
    bench_log "== $(row_title "$row")"
    for ((r = 0; r < RUNS; r++)); do
        for ((k = 0; k < n; k++)); do
            c=${list[(k + r) % n]}
            contender_available "$c" || continue
            log=$BENCH_TMPDIR/$row.$c.run$((r + 1))
            VALUE="" NOTE=""
            counter=$((counter + 1))
            if [[ $row == detect ]]; then
                if measure_detect "$c" "$log" "$r"; then
                    DRUNS[$c]=$(( ${DRUNS[$c]:-0} + 1 ))
                    rs=""
                    for a in 0.0.0.0 127.0.0.1; do
                        # shellcheck disable=SC2046
                        read -r med _ max _ < <(bench_stats $(det_values "$log.out" "$a"))
                        DMED[$c,$a]="${DMED[$c,$a]:-} $med"
                        DMAX[$c,$a]="${DMAX[$c,$a]:-} $max"
                        DMISS[$c,$a]="${DMISS[$c,$a]:-} $(det_count "$log.out" "$a" missed)"
                        awk -v a="$a" '$1 == a' "$log.out" >> "$BENCH_TMPDIR/detect.$c.$a.all"
                        rs+=$(printf '  %s: median %7.1f max %7.1f ms, %d missed' "$a" "$med" "$max" \
                            "$(det_count "$log.out" "$a" missed)")
                    done
                    printf 'run %d/%d  %-16s%s\n' $((r + 1)) "$RUNS" "$c" "$rs" >&2
                else
                    FAILS[$row,$c]=$(( ${FAILS[$row,$c]:-0} + 1 ))
                    [[ -n ${FIRST_FAIL[$row,$c]:-} ]] || FIRST_FAIL[$row,$c]=$log
                    printf 'run %d/%d  %-16s FAILED: %s\n' $((r + 1)) "$RUNS" "$c" \
                        "$(head -n 1 "$log.err" 2>/dev/null || true)" >&2
                fi
                continue
            fi
            port=$((15000 + counter % 2400))
            ok=0
            case $row in
                tcp) measure_tcp "$c" "$log" "$port" && ok=1 ;;
                cps) measure_cps "$c" "$log" "$port" && ok=1 ;;
                rr) measure_rr "$c" "$log" "$port" && ok=1 ;;
            esac
            if (( ok )); then
                VALUES[$row,$c]="${VALUES[$row,$c]:-} $VALUE"
                [[ -n $NOTE ]] && NOTES[$row,$c]="${NOTES[$row,$c]:+${NOTES[$row,$c]}; }run $((r + 1)) $NOTE"
                printf 'run %d/%d  %-16s %10.2f %s%s\n' $((r + 1)) "$RUNS" "$c" "$VALUE" \
                    "$(row_unit "$row")" "${NOTE:+  ($NOTE)}" >&2
            else
                FAILS[$row,$c]=$(( ${FAILS[$row,$c]:-0} + 1 ))
                [[ -n ${FIRST_FAIL[$row,$c]:-} ]] || FIRST_FAIL[$row,$c]=$log
                printf 'run %d/%d  %-16s   FAILED: %s\n' $((r + 1)) "$RUNS" "$c" \
                    "$(head -n 1 "$log.err" 2>/dev/null || true)" >&2
            fi
        done
    done
    printf '\n' >&2
}

for row in detect tcp cps rr; do
    want_row "$row" && run_row "$row"
done

# ---------------------------------------------------------------------------------------------
# Report

# status_of ROW CONTENDER VALUES: ok | failed | missing, with a note (sets ST and SN)
status_of() {
    local row=$1 c=$2 vals=$3 nfail
    nfail=${FAILS[$row,$c]:-0}
    ST=ok SN=""
    if ! contender_available "$c"; then
        ST=missing SN="$(contender_binary "$c") not found"
    elif [[ -n $(row_missing "$row") ]]; then
        ST=missing SN=$(row_missing "$row")
    elif [[ -z ${vals// /} ]]; then
        ST=failed SN="all $RUNS runs failed"
        any_failed=1
    elif (( nfail > 0 )); then
        SN="$nfail of $RUNS runs failed"
    fi
}

if want_row detect && [[ -n $(contenders_of detect) ]]; then
    mapfile -t dlist < <(contenders_of detect)
    printf '### %s\n' "$(row_title detect)"
    printf 'Per run: median and maximum over its %d listens of each kind; a listen not reachable\n' "$LISTENS"
    printf 'within %d ms counts as %d ms.  The tables give the median [min-max] of those per-run\n' "$BOUND_MS" "$BOUND_MS"
    printf 'values; the pooled table below gives every listen of every run.\n'
    for a in 0.0.0.0 127.0.0.1; do
        suffix="" what="guest listener on 0.0.0.0"
        [[ $a == 127.0.0.1 ]] && suffix=_lo what="guest listener on 127.0.0.1 only"
        for kind in med max missed; do
            res=$BENCH_TMPDIR/results.detect.$a.$kind
            : > "$res"
            case $kind in
                med) metric=autofwd${suffix}_ms ;;
                max) metric=autofwd${suffix}_max_ms ;;
                missed) metric=autofwd${suffix}_missed ;;
            esac
            for c in "${dlist[@]}"; do
                case $kind in
                    med) vals=${DMED[$c,$a]:-} ;;
                    max) vals=${DMAX[$c,$a]:-} ;;
                    missed) vals=${DMISS[$c,$a]:-} ;;
                esac
                vals=${vals# }
                status_of detect "$c" "$vals"
                if [[ $ST == ok && -f $BENCH_TMPDIR/detect.$c.$a.all ]]; then
                    f=$BENCH_TMPDIR/detect.$c.$a.all
                    m=$(det_count "$f" "$a" missed)
                    u=$(det_count "$f" "$a" unreached)
                    (( m > 0 )) && SN="${SN:+$SN; }$m of $(wc -l < "$f") never detected"
                    (( u > 0 )) && SN="${SN:+$SN; }$u detected but never reached the guest"
                fi
                bench_result_add "$res" "$c" netns "$metric" "$ST" "$vals" "$SN"
            done
            JSON_PARTS+=("$res.json")
            case $kind in
                med) printf '\n%s: median latency (%s)\n' "$what" "$metric"
                     bench_report "$res" causeway ms "$res.json" "causeway/this" ;;
                max) printf '\n%s: worst latency (%s)\n' "$what" "$metric"
                     bench_report "$res" causeway ms "$res.json" "causeway/this" ;;
                missed) bench_report "$res" causeway listens "$res.json" > /dev/null ;;
            esac
        done
    done
    printf '\nPooled over all runs (latencies in ms, of the detected listens):\n'
    printf '%-16s %-10s %8s %9s %8s %8s %8s %8s %8s\n' contender listener listens detected reached \
        p50 p90 max missed
    printf '%s\n' "-----------------------------------------------------------------------------------------"
    for c in "${dlist[@]}"; do
        for a in 0.0.0.0 127.0.0.1; do
            f=$BENCH_TMPDIR/detect.$c.$a.all
            if [[ ! -s $f ]]; then
                printf '%-16s %-10s %8s\n' "$c" "$a" "-"
                continue
            fi
            awk -v c="$c" -v a="$a" '
                { n++; if ($3 == "none") miss++; else { v[++d] = $3 + 0; if ($4 == 1) reach++ } }
                END {
                    if (d > 0) {
                        for (i = 2; i <= d; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
                        p50 = v[int((d - 1) * 0.5) + 1]; p90 = v[int((d - 1) * 0.9) + 1]; mx = v[d]
                        printf "%-16s %-10s %8d %9d %8d %8.1f %8.1f %8.1f %8d\n", c, a, n, d, reach + 0, p50, p90, mx, miss + 0
                    } else
                        printf "%-16s %-10s %8d %9d %8d %8s %8s %8s %8d\n", c, a, n, 0, 0, "-", "-", "-", miss + 0
                }' "$f"
        done
    done
    printf '(reached = the host connection was answered by the guest server; missed = not detected\n'
    printf ' within %d ms)\n\n' "$BOUND_MS"
fi

for row in tcp cps rr; do
    want_row "$row" || continue
    mapfile -t list < <(contenders_of "$row")
    (( ${#list[@]} > 0 )) || continue
    res=$BENCH_TMPDIR/results.$row
    : > "$res"
    for c in "${list[@]}"; do
        vals=${VALUES[$row,$c]:-}
        vals=${vals# }
        status_of "$row" "$c" "$vals"
        [[ -n ${NOTES[$row,$c]:-} ]] && SN="${SN:+$SN; }${NOTES[$row,$c]}"
        bench_result_add "$res" "$c" netns "$(row_metric "$row")" "$ST" "$vals" "$SN"
    done
    printf '### %s\n' "$(row_title "$row")"
    bench_report "$res" causeway "$(row_unit "$row")" "$res.json" "causeway/this"
    JSON_PARTS+=("$res.json")
    if [[ $row == tcp ]]; then
        printf 'Client address seen by the guest server (tells the paths apart):\n'
        for c in "${list[@]}"; do
            [[ -n ${PEERS[$c]:-} ]] || continue
            printf '  %-16s %s\n' "$c" "$(tr ' ' '\n' <<< "${PEERS[$c]}" | sed '/^$/d' | sort -u | tr '\n' ' ')"
        done
    fi
    printf '\n'
done

if [[ -n $JSON_OUT ]]; then
    bench_json_concat "$JSON_OUT" "${JSON_PARTS[@]}"
fi

# causeway's own complaints: anything it logged above "info", in any run
cw_msgs=$(cat "$BENCH_TMPDIR"/*.causeway*.run*.engine 2>/dev/null | grep -v '^causeway: info:' \
    | sort | uniq -c | sort -rn | head -n 15 || true)
if [[ -n $cw_msgs ]]; then
    printf 'causeway printed on stderr (beyond info lines; count, message):\n%s\n\n' "$cw_msgs"
fi

if (( ${#FIRST_FAIL[@]} > 0 )); then
    printf 'Failures (first failed run of each contender and row):\n'
    for key in "${!FIRST_FAIL[@]}"; do
        printf '  %s %s (%s):\n' "${key%%,*}" "${key#*,}" "${FIRST_FAIL[$key]##*/}"
        failure_text "${FIRST_FAIL[$key]}"
    done
    printf '\n'
fi
busy=$(bench_cpu_busy 1)
printf 'others:  CPUs %s%% busy in the second after the last run\n' "$busy"
[[ -n $JSON_OUT ]] && printf 'JSON written to %s\n' "$JSON_OUT"
exit "$any_failed"
