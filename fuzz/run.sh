#!/usr/bin/env bash
# fuzz/run.sh BUILD [SECONDS] [TARGET...] — run libFuzzer targets built by
# `make fuzz` (BUILD/fuzz/fuzz-<target>), each for SECONDS (default 120),
# JOBS (default 2) at a time, over fuzz/corpus/<target>/ (seeded by
# fuzz/make-corpus.sh; new inputs are added there; a write-path target
# <fmt>_rw also reads fuzz/corpus/<fmt>/ as seeds). Crashes, leaks, hangs
# (-timeout=10) and allocations above -malloc_limit_mb land in
# fuzz/artifacts/<target>/; logs in fuzz/artifacts/<target>.log.
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: fuzz/run.sh BUILD [SECONDS] [TARGET...]}" && pwd)
secs=${2:-120}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in "$build"/fuzz/fuzz-*; do
        [ -x "$f" ] && [ -f "$f" ] && targets+=("${f##*/fuzz-}")
    done
fi
[ -d "$here/corpus/probe" ] || "$here/make-corpus.sh"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=16:malloc_context_size=20}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
run_one() {
    local t=$1
    local dir=$here/artifacts/$t seeds=()
    mkdir -p "$dir" "$here/corpus/$t"
    # a write-path target <fmt>_rw starts from <fmt>'s corpus (read, not added to)
    case $t in *_rw) [ -d "$here/corpus/${t%_rw}" ] && seeds=("$here/corpus/${t%_rw}") ;; esac
    "$build/fuzz/fuzz-$t" -max_total_time="$secs" -rss_limit_mb=1024 -malloc_limit_mb=${MALLOC_LIMIT_MB:-256} \
        -timeout=10 -print_final_stats=1 -artifact_prefix="$dir/" ${FUZZ_FLAGS:-} \
        "$here/corpus/$t" "${seeds[@]}" >"$here/artifacts/$t.log" 2>&1
    echo "$t: exit $? $(grep -E '^(stat::number_of_executed_units|#[0-9]+ *DONE)' "$here/artifacts/$t.log" | tr '\n' ' ')"
}
export -f run_one
export here build secs
printf '%s\n' "${targets[@]}" | xargs -P"${JOBS:-2}" -I{} bash -c 'run_one {}'
ls "$here"/artifacts/*/ 2>/dev/null | grep -E 'crash|leak|timeout|oom|slow' | sort | uniq -c | sort -rn | head -40 || true
