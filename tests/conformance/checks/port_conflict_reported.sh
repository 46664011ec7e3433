# shellcheck shell=bash
# port_conflict_reported
# A user expects: when the guest listens on a port the host already uses, the engine says so
# where the user looks — `causeway ctl PATH ports` lists the port as "conflict" with the
# reason — instead of failing silently.
# Why: "my server runs but localhost:P shows something else" is otherwise a mystery.  Only
# causeway has such a report (n/a for engines without one).
CHECK_SUMMARY="guest port taken on the host shows as conflict in causeway ctl PATH ports"

# reads `causeway ctl PATH ports` JSON on stdin; argv[1] = host port
PORTS_PY='
import json, sys
port = sys.argv[1]
try:
    d = json.load(sys.stdin)
except Exception as e:
    print("unparsable reply from causeway ctl: %s" % e); sys.exit(1)
for p in d.get("ports", []):
    host = p.get("host", "")
    # 0.0.0.0: mirrored mode forwards a wildcard guest listener on the wildcard address
    if p.get("proto") == "tcp" and host in ("127.0.0.1:" + port, "0.0.0.0:" + port):
        if p.get("state") == "conflict":
            print("conflict: %s" % p.get("reason", "(no reason given)")); sys.exit(0)
        print("listed, but state %s" % p.get("state")); sys.exit(1)
print("no entry for host 127.0.0.1:%s (or 0.0.0.0:%s)" % (port, port)); sys.exit(1)
'

check_main() {
    cf_require port_conflict_report
    local port=22006 out verdict t0=$SECONDS
    cf_host_server tcp 127.0.0.1 "$port" host-owner || cf_fail "could not start the host's own service"
    cf_start_or_fail --control
    cf_guest_server tcp 0.0.0.0 "$port" guest-wants-it
    while true; do
        out=$(timeout 5 "$CAUSEWAY" ctl "$TARGET_CTL" ports 2>> "$CF_TMP/ctl.err")
        verdict=$(printf '%s' "$out" | "$CF_PY" -c "$PORTS_PY" "$port") && cf_pass "127.0.0.1:$port $verdict"
        (( SECONDS - t0 > 4 )) && break
        sleep 0.1
    done
    cf_fail "after 4 s: $verdict"
}
