# shellcheck shell=bash
# dns_all_resolv_conf_servers
# A user expects: every nameserver the guest's /etc/resolv.conf names answers, over UDP and over
# TCP — resolvers move to the next server when the first one is slow, and to TCP when an answer
# is truncated, and any of them may be the one that is asked.
# Why: a listed server that refuses one transport turns a slow day into failed lookups.
# (For causeway the file is causeway's own; for pasta and slirp4netns it is the one their
# documentation tells users to write, see targets/*.sh.)
CHECK_SUMMARY="every nameserver in the guest's resolv.conf answers over UDP and TCP"

check_main() {
    cf_require dns
    cf_start_or_fail
    local servers s out bad="" good="" v6ready=""
    servers=$(guest_exec 3 awk '/^nameserver/ {print $2}' /etc/resolv.conf)
    [[ -n $servers ]] || cf_fail "the guest's /etc/resolv.conf names no server"
    for s in $servers; do
        if [[ $s == *:* && -z $v6ready ]]; then
            v6ready=$(cf_guest_global6 8) || { bad+="$s: no IPv6 in the guest to reach it; "; continue; }
        fi
        for t in +notcp +tcp; do
            out=$(guest_exec 8 dig "@$s" $t +time=2 +tries=1 +short A "$CF_NAME" 2>&1)
            if [[ $out == "$CF_ADDR1_A" ]]; then
                good+="$s $( [[ $t == +tcp ]] && echo TCP || echo UDP ), "
            else
                bad+="$s over $( [[ $t == +tcp ]] && echo TCP || echo UDP ): $(grep -m1 . <<< "$out" | sed 's/^;; //'); "
            fi
        done
    done
    [[ -z $bad ]] || cf_fail "${bad%; }"
    cf_pass "${good%, }"
}
