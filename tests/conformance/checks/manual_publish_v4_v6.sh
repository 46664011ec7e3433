# shellcheck shell=bash
# manual_publish_v4_v6
# A user expects: a port published when the engine starts (causeway -p 22080:80, pasta -t,
# slirp4netns add_hostfwd) answers on both 127.0.0.1:22080 and [::1]:22080 and reaches the
# guest's port 80.
# Why: `localhost` is ::1 first on many hosts; a v4-only publish looks broken there.
CHECK_SUMMARY="published port answers on host 127.0.0.1 and [::1] and reaches the guest port"

check_main() {
    cf_require publish
    local hp=22080 gp=80 out4 out6 bad=""
    cf_start_or_fail --publish "tcp:$hp:$gp"
    cf_guest_server tcp :: "$gp" guest-published
    out4=$(cf_host_probe tcp 127.0.0.1 "$hp" guest-published 3) || bad="127.0.0.1:$hp: $out4"
    out6=$(cf_host_probe tcp ::1 "$hp" guest-published 3) || bad="${bad:+$bad; }[::1]:$hp: $out6"
    [[ -z $bad ]] || cf_fail "$bad"
    cf_pass "127.0.0.1:$hp and [::1]:$hp -> guest :$gp"
}
