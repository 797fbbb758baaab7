#!/usr/bin/env bash
# Optional system libraries, installed when this is a Debian/Ubuntu machine and we are root:
#   * libtcmalloc-minimal4: the allocator the `reasonrl` command preloads when it finds it
#     (reasonrl.allocator). On the GRPO benchmark's fixed-length side it took 46.0 s and
#     3382 MiB at peak, against 61.0 s and 4267 MiB on glibc's malloc (2-core AVX2).
# Never fails: without it everything runs on the system's allocator, slower.
set -uo pipefail
if ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal; then
    echo "system-deps: tcmalloc present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 \
        || { timeout 300 apt-get update -q >/dev/null 2>&1 \
             && timeout 300 apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1; } \
        && echo "system-deps: installed libtcmalloc-minimal4" \
        || echo "system-deps: could not install libtcmalloc-minimal4; the system allocator will be used"
else
    echo "system-deps: for less memory and faster training, install tcmalloc:" \
         "sudo apt-get install libtcmalloc-minimal4"
fi
exit 0
