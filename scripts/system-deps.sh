#!/usr/bin/env bash
# System packages, installed when this is a Debian/Ubuntu machine and we are root:
#   * bubblewrap: the OS-level sandbox that untrusted programs and tool calls run in
#     (reasonrl.rewards.sandbox). Without it the `program` reward and the Python tool
#     refuse to run unless a recipe sets allow_weak_sandbox: true.
#   * libtcmalloc-minimal4: the allocator the `reasonrl` command preloads when it finds it
#     (reasonrl.allocator). On the GRPO benchmark's fixed-length side it took 46.0 s and
#     3382 MiB at peak, against 61.0 s and 4267 MiB on glibc's malloc (2-core AVX2).
# Never fails: it says what is missing and what that costs.
set -uo pipefail
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal || missing+=(libtcmalloc-minimal4)
if [ ${#missing[@]} -eq 0 ]; then
    echo "system-deps: bubblewrap and tcmalloc present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
        || { timeout 300 apt-get update -q >/dev/null 2>&1 \
             && timeout 300 apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; } \
        && echo "system-deps: installed ${missing[*]}" \
        || echo "system-deps: could not install ${missing[*]}: sandboxed rewards refuse to run" \
                "without bubblewrap, and the system allocator is slower"
else
    echo "system-deps: missing ${missing[*]}; install them with:" \
         "sudo apt-get install ${missing[*]}"
fi
exit 0
