# shellcheck shell=bash
# auto_forward_removed_after_exit
# A user expects: when the guest's server exits, the host port it had closes again within
# 2 s — a host program can then take the port, and a client gets "connection refused" instead
# of a connection into nothing.
# Why: a forward that outlives its server squats the host's port and confuses health checks.
# "Closed" = a connection to host 127.0.0.1:P is refused (whatever address the engine bound).
CHECK_SUMMARY="host port closes within 2 s after the guest server exits"

check_main() {
    cf_require auto_forward
    local port=22005 out pid t0 now ms=""
    cf_start_or_fail
    cf_guest_server tcp 0.0.0.0 "$port" guest-bye
    pid=$CF_SPAWNED
    out=$(cf_host_probe tcp 127.0.0.1 "$port" guest-bye 3) ||
        cf_fail "precondition: the forward never appeared (host 127.0.0.1:$port: $out)"
    t0=$(date +%s%N)
    guest_kill "$pid"
    while true; do
        now=$(date +%s%N)
        if cf_host_refused 127.0.0.1 "$port"; then ms=$(( (now - t0) / 1000000 )); break; fi
        (( now - t0 > 5000000000 )) && break
        sleep 0.05
    done
    [[ -n $ms ]] || cf_fail "host 127.0.0.1:$port still accepts connections 5 s after the guest server exited"
    (( ms <= 2000 )) || cf_fail "host port closed only $ms ms after the guest server exited (> 2000)"
    cf_pass "closed $ms ms after the server exited"
}
