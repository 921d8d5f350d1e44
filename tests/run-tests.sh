#!/usr/bin/env bash
# tests/run-tests.sh BUILD_DIR — run every test of qimg and print one summary.
#
#   (a) unit tests:      BUILD_DIR/tests/unit/test-*      (TAP)
#   (b) fuzz regression: BUILD_DIR/fuzz/fuzz-regression   (TAP), if built
#   (c) interop:         tests/interop/*.sh (except lib.sh), two at a time,
#                        against the real qemu-img 7.2 (QEMU_IMG, default qemu-img)
#
# Every "ok ..." line counts as a pass, every "not ok ..." line as a failure; a
# program that exits non-zero (or crashes) without a "not ok" line is one more
# failure, and so is one that prints no result at all or fewer than its "1..N" plan.
# Failures are printed with their diagnostics; the last line is exactly
# "N passed, N failed". Exit status 0 iff nothing failed (and something ran).
#
# Environment: QIMG (default BUILD_DIR/qimg), QEMU_IMG, QEMU_IO, JOBS (default 2),
# ONLY=glob to run only matching interop files (e.g. ONLY='raw*'),
# VERBOSE=1 to print every result line, not just the failures.

set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
if [ ! -d "$build" ]; then
    echo "run-tests.sh: build dir '$build' not found" >&2
    echo "0 passed, 1 failed"
    exit 1
fi
build=$(cd "$build" && pwd)
export QIMG=${QIMG:-$build/qimg}
export QIMG_BUILD=$build    # test helpers built there (tests/crash/libfailshim.so)
JOBS=${JOBS:-2}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-300}
INTEROP_TIMEOUT=${INTEROP_TIMEOUT:-900}

passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/qimg-run-tests.XXXXXX")
trap 'rm -rf "$work"' EXIT

# tally LABEL OUTFILE RC: count TAP results in OUTFILE, print failures.
tally() {
    local label=$1 out=$2 rc=$3 ok nok plan
    ok=$(grep -cE '^ok( |$)' "$out")
    nok=$(grep -cE '^not ok( |$)' "$out")
    plan=$(sed -nE 's/^1\.\.([0-9]+).*/\1/p' "$out" | tail -1)
    passed=$((passed + ok))
    failed=$((failed + nok))
    if [ "${VERBOSE:-0}" = 1 ]; then
        grep -E '^(ok|not ok)( |$)' "$out" | sed "s|^|$label: |"
    fi
    if [ "$nok" -gt 0 ]; then
        # each "not ok" line plus the "#" diagnostics right after it
        awk -v label="$label" '
            /^not ok( |$)/ { show = 1; n = 0; print label ": " $0; next }
            /^ok( |$)/     { show = 0; next }
            show && /^#/ && n < 60 { print "    " $0; n++; next }
            show && !/^#/ { show = 0 }
        ' "$out"
    fi
    local extra=''
    if [ "$rc" -ne 0 ] && [ "$nok" -eq 0 ]; then
        if [ "$rc" -eq 124 ]; then
            extra="timed out"
        elif [ "$rc" -gt 128 ]; then
            extra="killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
        else
            extra="exited with status $rc"
        fi
    elif [ $((ok + nok)) -eq 0 ]; then
        extra="printed no test result"
    elif [ -n "$plan" ] && [ "$plan" -ne $((ok + nok)) ] && [ "$nok" -eq 0 ]; then
        extra="planned $plan tests but ran $((ok + nok))"
    fi
    if [ -n "$extra" ]; then
        failed=$((failed + 1))
        echo "$label: not ok - $extra; last output lines:"
        grep -vE '^(ok|not ok)( |$)' "$out" | tail -n 15 | sed 's/^/    /'
    fi
}

# ---- (a) unit tests
for t in "$build"/tests/unit/test-*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    name=unit/$(basename "$t")
    (timeout "$UNIT_TIMEOUT" "$t" >"$work/u.out" 2>&1; exit $?) 2>/dev/null
    tally "$name" "$work/u.out" $?
done

# ---- (b) fuzz regression runner
if [ -f "$build/fuzz/fuzz-regression" ] && [ -x "$build/fuzz/fuzz-regression" ]; then
    ( (cd "$here/.." && timeout "$UNIT_TIMEOUT" "$build/fuzz/fuzz-regression") >"$work/f.out" 2>&1; exit $?) 2>/dev/null
    tally fuzz/fuzz-regression "$work/f.out" $?
fi

# ---- (c) interop scenarios, JOBS at a time, each file's output buffered
# Run a private copy of qimg so that a rebuild during the run cannot swap the
# binary under the scenarios (a half-written file gives "Permission denied").
if [ -f "$QIMG" ] && [ -x "$QIMG" ]; then
    mkdir -p "$work/bin"
    cp "$QIMG" "$work/bin/qimg" && QIMG=$work/bin/qimg
fi
mkdir -p "$work/interop"
run_one() { # FILE: run a scenario, leave its output and status beside
    local f=$1 base start=$SECONDS
    base=$(basename "$f" .sh)
    (timeout "$INTEROP_TIMEOUT" bash "$f" >"$work/interop/$base.out" 2>&1; exit $?) 2>/dev/null
    echo $? >"$work/interop/$base.rc"
    echo $((SECONDS - start)) >"$work/interop/$base.time"
}
export -f run_one
export work INTEROP_TIMEOUT

scenarios=()
for f in "$here"/interop/*.sh; do
    [ -f "$f" ] || continue
    [ "$(basename "$f")" = lib.sh ] && continue
    # shellcheck disable=SC2053
    [ -n "${ONLY:-}" ] && [[ $(basename "$f") != $ONLY ]] && continue
    scenarios+=("$f")
done
timings=''
if [ ${#scenarios[@]} -gt 0 ]; then
    printf '%s\0' "${scenarios[@]}" | xargs -0 -n1 -P"$JOBS" bash -c 'run_one "$1"' run_one
    for f in "${scenarios[@]}"; do
        base=$(basename "$f" .sh)
        rc=$(cat "$work/interop/$base.rc" 2>/dev/null || echo 125)
        tally "interop/$base" "$work/interop/$base.out" "$rc"
        timings+=" $base $(cat "$work/interop/$base.time" 2>/dev/null)s"
    done
    echo "interop wall time per file:$timings"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
