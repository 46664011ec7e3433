#!/usr/bin/env bash
# Integration: COMMAND's private /etc/resolv.conf under a confined engine (issue 16), as root
# and as uid 65534. The engine has no capability and cannot fork once set up, so the
# namespace helper (netstack/netns_sockets.hpp) does what needs privilege:
#   1. the host replaces its /etc/resolv.conf by rename (NetworkManager, resolvconf and VPN
#      clients do), which drops COMMAND's bind mount on it: the helper binds the file again
#      (its kResolvConf request, every 500 ms);
#   2. the host's search domains change: the engine rewrites COMMAND's file in place through
#      the descriptor it kept, and COMMAND sees the new domain;
#   3. COMMAND's file is gone once causeway exits (the helper removes it), and so is the
#      DNS-over-TCP socket's directory the engine kept.
# The engine's /proc status shows Seccomp 2 while this happens.
# The host's real /etc is never touched: the script re-runs itself in a private mount
# namespace where /etc is a tmpfs copy. Bounded (~3 s per user); cleanup by PID.
# Usage: netns_resolv_guard_test.sh CAUSEWAY_BIN. Exit 77 (skipped) without root or
# unshare/setpriv; the uid 65534 part is skipped, saying why, where that user cannot run it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cw=$(realpath "$1")
need_root "a private mount namespace with a tmpfs /etc"
[[ -x $cw ]] || skip "no causeway binary at $cw"
need_cmd unshare "unshare missing (apt-get install util-linux)"
need_cmd setpriv "setpriv missing (apt-get install util-linux)"
if [[ -z ${CW_GUARD_INNER:-} ]]; then
  exec env CW_GUARD_INNER=1 unshare --mount --propagation private bash "$0" "$cw"
fi

make_work cw-resolv-guard
chmod 755 "$work"
mkdir "$work/etc"
mount -t tmpfs -o mode=755 tmpfs "$work/etc"
cp -a /etc/. "$work/etc/"
mount --bind "$work/etc" /etc
on_cleanup() { umount -l /etc 2>/dev/null; umount -l "$work/etc" 2>/dev/null; }

status_of() { sed -n "s/^$2:[[:space:]]*//p" "/proc/$1/status" 2>/dev/null; }

run_as() {  # USER: root or nobody
  # The host resolver file in a directory of its own: the engine keeps that directory
  # read-only, and a kept directory inside another kept one could not be removed at exit.
  local user=$1 rt="$work/rt-$1" out="$work/seen-$1" host="$work/hostdns-$1/resolv.conf" go="$work/go-$1"
  local pre=()
  mkdir "$rt" "$work/hostdns-$1"
  chmod 755 "$work/hostdns-$1"
  printf 'nameserver 192.0.2.1\nsearch one.test\n' >"$host"
  chmod 644 "$host"
  if [[ $user == nobody ]]; then
    chown nobody:nogroup "$rt"
    pre=(setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env)
  fi
  # COMMAND waits for the host's changes, gives the guard two rounds, then reports.
  "${pre[@]}" env XDG_RUNTIME_DIR="$rt" "$cw" netns --host-resolv-conf "$host" -- \
    sh -c "while [ ! -e $go ]; do sleep 0.05; done; sleep 1.5; cat /etc/resolv.conf" >"$out" 2>"$work/err-$user" &
  local engine=$!
  track_pid "$engine"
  wait_until 5000 grep -q "^Seccomp:[[:space:]]*2" "/proc/$engine/status" ||
    fail "$user: the engine did not confine itself: $(cat "$work/err-$user")"
  [[ $(status_of "$engine" CapEff) == 0000000000000000 ]] || fail "$user: the engine kept capabilities"
  [[ -n $(ls -A "$rt") ]] || fail "$user: no resolv.conf file for COMMAND in $rt"

  printf 'nameserver 198.51.100.7\n' >/etc/resolv.conf.new
  mv /etc/resolv.conf.new /etc/resolv.conf  # drops COMMAND's bind mount on the old dentry
  printf 'nameserver 192.0.2.1\nsearch two.test\n' >"$host"
  touch "$go"
  local rc=0
  wait "$engine" || rc=$?
  untrack_pid "$engine"
  [[ $rc == 0 ]] || fail "$user: causeway exited with $rc: $(cat "$work/err-$user")"
  grep -q "written by causeway" "$out" ||
    fail "$user: COMMAND sees the host's replacement, not its own file, after the rename: $(cat "$out")"
  grep -q "^search two.test" "$out" || fail "$user: the search domain did not follow the host: $(cat "$out")"
  [[ -z $(ls -A "$rt") ]] || fail "$user: left behind in XDG_RUNTIME_DIR: $(ls "$rt")"
  grep -q "forbidden syscall" "$work/err-$user" && fail "$user: $(cat "$work/err-$user")"
  echo "ok ($user): re-bound after the host's rename, search domain followed, file removed at exit"
}

run_as root
if [[ $(stat -c %a /dev/net/tun 2>/dev/null) != 666 ]]; then
  echo "SKIP (uid 65534 part): /dev/net/tun is not mode 0666 (chmod 0666 /dev/net/tun; scripts/setup.sh does)"
elif ! setpriv --reuid=nobody --regid=nogroup --clear-groups unshare --user --map-root-user --net true 2>/dev/null; then
  echo "SKIP (uid 65534 part): unprivileged user namespaces are off (sysctl kernel.unprivileged_userns_clone=1)"
else
  run_as nobody
fi
echo PASS
