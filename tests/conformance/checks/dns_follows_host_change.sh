# shellcheck shell=bash
# dns_follows_host_change
# A user expects: when the host's DNS changes (a VPN connects, Wi-Fi changes, resolv.conf is
# rewritten), the guest uses the new resolver within a second — no engine restart, nothing to
# do inside the guest.
# How: the host's /etc/resolv.conf is rewritten in place (truncate + write) from 127.0.0.53 to
# 127.0.0.54, a second dnsmasq that answers the same name differently (TTL 0, so no cache is
# involved); the guest asks again every ~100 ms.  dns_follows_host_change_rename does the same
# with a rename(), the way NetworkManager and systemd-resolved replace the file.
CHECK_SUMMARY="host resolv.conf rewritten in place -> guest gets the new resolver's answer within 1 s"

check_main() {
    cf_require dns
    cf_start_or_fail
    local out t0 now ms="" ns_before
    out=$(cf_dig A "$CF_NAME")
    [[ $out == "$CF_ADDR1_A" ]] || cf_fail "before the change: dig A $CF_NAME gave '${out//$'\n'/ }', expected $CF_ADDR1_A"
    ns_before=$(guest_exec 3 awk '/^nameserver/ {printf "%s ", $2}' /etc/resolv.conf)
    t0=$(date +%s%N)
    cf_set_upstream "$CF_DNS2"
    while true; do
        out=$(guest_exec 3 dig +time=1 +tries=1 +short A "$CF_NAME" 2>&1)
        now=$(date +%s%N)
        if [[ $out == "$CF_ADDR2_A" ]]; then ms=$(( (now - t0) / 1000000 )); break; fi
        (( now - t0 > 5000000000 )) && break
        sleep 0.1
    done
    if [[ -z $ms ]]; then
        local before=$ns_before after
        after=$(guest_exec 3 awk '/^nameserver/ {printf "%s ", $2}' /etc/resolv.conf)
        cf_fail "still '$(head -n 1 <<< "$out")' 5 s after the host switched to $CF_DNS2 (expected $CF_ADDR2_A); the guest's resolv.conf named ${before% } before, ${after% } now"
    fi
    (( ms <= 1000 )) || cf_fail "new answer only after $ms ms (> 1000)"
    cf_pass "new answer after $ms ms"
}
