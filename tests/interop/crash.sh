#!/usr/bin/env bash
# tests/interop/crash.sh — the short run of the crash consistency harness
# (tests/crash/kill-test.sh): every write-heavy qcow2 operation killed with
# SIGKILL at random points, then the real `qemu-img check` and `qemu-img
# compare` judge the image. The long run is the script itself, e.g.
#   CRASH_RUNS=200 CRASH_SIZE=64 QIMG=build/qimg tests/crash/kill-test.sh
# Environment: QIMG, QEMU_IMG, QEMU_IO as for every scenario; CRASH_RUNS
# (default 2 here), CRASH_SIZE (MiB, default 4 here), CRASH_SEED.
here=$(cd "$(dirname "$0")" && pwd)
export CRASH_RUNS=${CRASH_RUNS:-2}
export CRASH_SIZE=${CRASH_SIZE:-4}
exec bash "$here/../crash/kill-test.sh"
