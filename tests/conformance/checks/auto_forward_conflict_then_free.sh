# shellcheck shell=bash
# auto_forward_conflict_then_free
# A user expects: (1) a host service that already owns port P keeps working when a guest server
# also listens on P — the engine must not break or steal it; (2) once the host service stops,
# host 127.0.0.1:P reaches the guest server within 2 s, with no restart.
# Why: ports come and go on a developer's machine; the forward should settle by itself
# (causeway: "opens by itself when the port frees up").
CHECK_SUMMARY="host-owned port stays the host's; once freed, it forwards to the guest within 2 s"

check_main() {
    cf_require auto_forward
    local port=22007 out owner t0
    cf_host_server tcp 127.0.0.1 "$port" host-owner || cf_fail "could not start the host's own service"
    owner=$CF_SPAWNED
    cf_start_or_fail
    cf_guest_server tcp 0.0.0.0 "$port" guest-late
    sleep 1.5   # every engine has had its chance to notice (pasta rescans once a second)
    out=$(cf_host_probe tcp 127.0.0.1 "$port" host-owner 2) ||
        cf_fail "the host's own service on 127.0.0.1:$port was disturbed: $out"
    t0=$(date +%s%N)
    cf_kill "$owner"
    out=$(cf_host_probe tcp 127.0.0.1 "$port" guest-late 4) ||
        cf_fail "host 127.0.0.1:$port did not reach the guest within 4 s of being freed: $out"
    out=$(( ($(date +%s%N) - t0) / 1000000 ))
    (( out <= 2000 )) || cf_fail "forwarded only $out ms after the host port was freed (> 2000)"
    cf_pass "host service undisturbed; forwarded $out ms after the port was freed"
}
