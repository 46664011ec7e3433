#!/usr/bin/env bash
# guest-agent.sh DIR — runs as the COMMAND of `causeway netns [OPTIONS] -- COMMAND`, so that
# everything a check runs in the guest is a descendant of COMMAND: inside causeway's network
# AND mount namespace (its private /etc/resolv.conf) and under its bind/listen trap — exactly
# what a user's programs get.  (Entering the namespace from outside with nsenter would bypass
# the trap and the private resolv.conf, and test something users do not do.)
#
# Protocol (files in DIR, all written by targets/causeway-nat.sh):
#   DIR/ctl       a FIFO; each line "ID" asks to run DIR/ID.cmd (a bash script), "quit" ends
#   DIR/ID.cmd    the command; the agent runs it in the background with stdin /dev/null,
#                 stdout DIR/ID.out, stderr DIR/ID.err, writes its PID to DIR/ID.pid and,
#                 when it ends, its exit status to DIR/ID.rc
#   DIR/agent.pid written once the agent listens (the guest is configured by then)
# Children are stopped by PID (the runner's side), and on SIGTERM (causeway passes it on).
set -u
dir=$1
kids=()
stop() {
    local p
    for p in "${kids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    exit 0
}
trap stop TERM INT HUP
exec 3<> "$dir/ctl"          # read-write: no EOF when a writer closes
echo $$ > "$dir/agent.pid.tmp" && mv "$dir/agent.pid.tmp" "$dir/agent.pid"
while read -r id <&3; do
    [[ $id == quit ]] && break
    [[ $id =~ ^[A-Za-z0-9_.-]+$ && -f $dir/$id.cmd ]] || continue
    (
        trap - TERM INT HUP
        bash "$dir/$id.cmd" < /dev/null > "$dir/$id.out" 2> "$dir/$id.err" &
        child=$!
        echo "$child" > "$dir/$id.pid.tmp" && mv "$dir/$id.pid.tmp" "$dir/$id.pid"
        wait "$child"
        echo $? > "$dir/$id.rc.tmp" && mv "$dir/$id.rc.tmp" "$dir/$id.rc"
    ) &
    kids+=($!)
done
stop
