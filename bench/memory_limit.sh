#!/usr/bin/env bash
# Run a command in a memory cgroup (v1 or v2) whose limit counts the page cache it touches, then
# print what the cgroup used: a run whose files exceed LIMIT only finishes if it pins nothing
# (mapped pages the kernel must be able to drop), which is how bench results say "larger than RAM"
# on a machine whose RAM is larger than the files. Needs root.
#
#   bench/memory_limit.sh 3G python bench/history_memory.py STORE RUN_DIR ...
#
# Prints (stderr) one line: limit, peak usage, times the limit was hit, OOM kills; exits with the
# command's status.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
LIMIT="$1"; shift
NAME="gstore-limit-$$"
if [ -d /sys/fs/cgroup/memory ]; then                     # cgroup v1
    CG="/sys/fs/cgroup/memory/$NAME"
    mkdir "$CG"
    echo "$LIMIT" > "$CG/memory.limit_in_bytes"
    PEAK="$CG/memory.max_usage_in_bytes"; HITS="$CG/memory.failcnt"
    OOMS() { grep -E '^oom_kill ' "$CG/memory.oom_control" | awk '{print $2}'; }
else                                                      # cgroup v2
    CG="/sys/fs/cgroup/$NAME"
    mkdir "$CG"
    echo "$LIMIT" > "$CG/memory.max"
    PEAK="$CG/memory.peak"; HITS=/dev/null
    OOMS() { grep -E '^oom_kill ' "$CG/memory.events" | awk '{print $2}'; }
fi
cleanup() { rmdir "$CG" 2>/dev/null || true; }
trap cleanup EXIT
set +e
( echo $BASHPID > "$CG/cgroup.procs"; exec "$@" )
rc=$?
set -e
hits=$(cat "$HITS" 2>/dev/null || echo "?")
echo "memory_limit: limit $LIMIT, peak usage $(( $(cat "$PEAK") / 1048576 )) MiB (page cache included)," \
     "limit hit $hits times, OOM kills $(OOMS || echo '?'), rc $rc" >&2
exit $rc
