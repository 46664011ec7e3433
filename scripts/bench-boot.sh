#!/usr/bin/env bash
# scripts/bench-boot.sh — the VM's boot cost and guest→host-service throughput,
# causeway beside plain QEMU, interleaved in one run.
#
#   scripts/bench-boot.sh [--runs N] [--size MiB] [--json FILE]
#
# Rows:
#   boot_ms     `causeway run -q -- true` (boot, agent connects over vsock,
#               runs true, powers off) beside plain QEMU booting the same
#               kernel and initramfs with the same accelerator and board to
#               the same end (the image's /init, cw.mode=off: links up, power
#               off), with QEMU's own -netdev user. Ratio target ≤ 1.1.
#   agent_ms    kernel start → agent ready (the guest's uptime when the agent
#               reports Ready).
#   fetch_mbps  a MiB-sized file from a host server on 127.0.0.1 through
#               10.0.2.2 into the guest: causeway (vhost-user), causeway
#               --vm-net stream (same engine, QEMU's stream netdev), QEMU
#               -netdev user (libslirp inside QEMU).
# Under TCG (no hardware virtualization here) the emulated CPU bounds every
# row: the figures describe emulation, not the engine; the header says which
# accelerator ran. Loopback only; cleans up by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cw=${CAUSEWAY:-$here/build/causeway}
guest=${CAUSEWAY_GUEST_DIR:-$here/build/guest}
runs=10
size=64
json=
while (($#)); do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --json) json=$2; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench-boot: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -x $cw ]] || { echo "bench-boot: no $cw (scripts/setup.sh builds it)" >&2; exit 2; }
[[ -f $guest/vmlinuz ]] || { echo "bench-boot: no guest image in $guest (scripts/build-guest.sh)" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || { echo "bench-boot: apt-get install qemu-system-x86" >&2; exit 2; }

accel=tcg
if grep -qE 'vmx|svm' /proc/cpuinfo && [[ ! -d /sys/module/kvm_pvm && -w /dev/kvm ]]; then accel=kvm; fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export CAUSEWAY_GUEST_DIR=$guest

now_ms() { date +%s%3N; }
mkdir -p "$work/www"
head -c $((size << 20)) /dev/urandom > "$work/www/big.bin"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
busybox httpd -f -p "127.0.0.1:$port" -h "$work/www" & pids+=($!)
url="http://10.0.2.2:$port/big.bin"

plain_qemu() {  # APPEND → runs QEMU with -netdev user to power-off, console in $work/plain.log
  timeout 120 qemu-system-x86_64 -accel "$accel" -machine q35 -m 512 -nodefaults -no-user-config -display none \
    -no-reboot -serial "file:$work/plain.log" -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" \
    -append "console=ttyS0 quiet panic=-1 $1" -netdev user,id=n0 -device virtio-net-pci,netdev=n0 >/dev/null 2>&1
}
guest_secs() {  # busybox time's "real\t0m 1.23s" → seconds
  sed -n 's/^real[[:space:]]*\([0-9]*\)m \([0-9.]*\)s$/\1 \2/p' | awk '{print $1*60+$2}' | head -1
}

declare -A vals
add() { vals[$1]+="$2 "; }
echo "bench-boot: accelerator $accel$([[ $accel == tcg ]] && echo ' (software emulation: figures describe emulation)'); $runs boots each, ${size} MiB fetches" >&2
for ((i = 1; i <= runs; i++)); do
  t0=$(now_ms); "$cw" --log-level debug run -q -- true 2> "$work/run.err" || true; t1=$(now_ms)
  add boot_causeway $((t1 - t0))
  up=$(sed -n 's/.*guest uptime \([0-9]*\) ms.*/\1/p' "$work/run.err" | head -1)
  [[ -n $up ]] && add agent_causeway "$up"
  t0=$(now_ms); plain_qemu "cw.mode=off"; t1=$(now_ms)
  add boot_qemu $((t1 - t0))
  printf '  boot %d/%d: causeway %s ms, qemu %s ms\n' "$i" "$runs" "$(echo "${vals[boot_causeway]}" | awk '{print $NF}')" "$((t1 - t0))" >&2
done
fruns=$(( runs < 3 ? runs : 3 ))
for ((i = 1; i <= fruns; i++)); do
  for net in vhost-user stream; do
    s=$("$cw" run -q --vm-net "$net" -- sh -c "time wget -q -O /dev/null $url" 2>&1 | guest_secs || true)
    [[ -n $s ]] && add "fetch_$net" "$(awk -v s="$s" -v m="$size" 'BEGIN{printf "%.1f", m*8/s}')"
  done
  plain_qemu "cw.mode=dhcp-test cw.url=$url"
  l=$(tr -d '\r' < "$work/plain.log" | sed -n 's/^CW-TIME lease //p'); f=$(tr -d '\r' < "$work/plain.log" | sed -n 's/^CW-TIME fetch //p')
  [[ -n $l && -n $f ]] && add fetch_user "$(awk -v a="$l" -v b="$f" -v m="$size" 'BEGIN{printf "%.1f", m*8/(b-a)}')"
  echo "  fetch $i/$fruns done" >&2
done

stats() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if(NR==0){print "- - - 0"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; print m, a[1], a[NR], NR}'; }
printf '\n%-34s %10s  %-22s %5s\n' "row ($accel)" median "[min – max]" runs
rows=(boot_causeway:"boot ms, causeway run -- true" boot_qemu:"boot ms, plain QEMU (same image)" agent_causeway:"agent ready ms (guest uptime)"
      fetch_vhost-user:"fetch Mbit/s, causeway vhost-user" fetch_stream:"fetch Mbit/s, causeway --vm-net stream" fetch_user:"fetch Mbit/s, QEMU -netdev user")
declare -A med
out_json="["
for r in "${rows[@]}"; do
  key=${r%%:*}; label=${r#*:}
  read -r m lo hi n <<<"$(stats "${vals[$key]:-}")"
  med[$key]=$m
  printf '%-34s %10s  [%s – %s] %5s\n' "$label" "$m" "$lo" "$hi" "$n"
  [[ $n == 0 ]] && continue
  case $key in
    boot_causeway) c=causeway; metric=boot_ms ;; boot_qemu) c=qemu-user; metric=boot_ms ;;
    agent_causeway) c=causeway; metric=agent_ms ;; fetch_vhost-user) c=causeway; metric=fetch_mbps ;;
    fetch_stream) c=qemu-causeway; metric=fetch_mbps ;; fetch_user) c=qemu-user; metric=fetch_mbps ;;
  esac
  out_json+="{\"contender\":\"$c\",\"attach\":\"vm\",\"metric\":\"$metric\",\"median\":$m,\"min\":$lo,\"max\":$hi,\"runs\":$n,\"accel\":\"$accel\"},"
done
[[ ${med[boot_qemu]:-} != "" && ${med[boot_qemu]} != - ]] &&
  awk -v a="${med[boot_causeway]}" -v b="${med[boot_qemu]}" 'BEGIN{printf "\nboot ratio causeway/plain QEMU: %.2fx (target <= 1.1)\n", a/b}'
if [[ -n $json ]]; then echo "${out_json%,}]" > "$json"; echo "JSON written to $json"; fi
