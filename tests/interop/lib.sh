# shellcheck shell=bash
# tests/interop/lib.sh — sourced by every interop scenario (tests/interop/*.sh).
#
# A scenario runs qimg and the real qemu-img 7.2 side by side and prints one
# TAP-ish line per named check ("ok - NAME" / "not ok - NAME"), followed for a
# failure by diagnostic lines that all start with "#". tests/run-tests.sh counts
# those lines.
#
# Environment (all optional):
#   QIMG      the qimg binary            (default: <repo>/build/qimg)
#   QEMU_IMG  the oracle                 (default: qemu-img from PATH)
#   QEMU_IO   qemu-io                    (default: qemu-io from PATH)
#   KEEP_TMP  set to 1 to keep the temp dir (its path is printed)
#
# Layout made here (the scenario starts with cwd = $W):
#   $T        private temp dir, removed at exit
#   $A        work dir of the qimg side        ($T/a)
#   $B        work dir of the qemu-img side    ($T/b)
#   $W        neutral scratch dir              ($T/w)
# $A and $B persist for the whole scenario: `fixture` puts identical inputs into
# both, `same` runs qimg in $A and qemu-img in $B on the same relative names, so
# the results can then be checked against each other with the real tool.
#
# Both tools are run through a symlink whose basename is "qemu-img" (qimg must
# then call itself "qemu-img" in messages), so no program-name rewriting is
# needed: the outputs must match byte for byte after the temp paths are
# replaced by @DIR@ (the side's work dir) and @TMP@ ($T).
#
# Helpers (NAME is a free-text check name; keep it unique within a file):
#   same NAME [OPTS] -- ARGS...   qimg ARGS in $A vs qemu-img ARGS in $B:
#                                 stdout, stderr and exit code must be equal.
#       OPTS: --filter 'SHELL'    pipe both (normalised) stdout and stderr
#                                 through this shell filter before comparing
#             --stdin FILE        feed FILE on stdin (default /dev/null)
#             --rc N              additionally require exit code N (for both)
#       An argument containing @DIR@ is expanded to the side's work dir.
#   same_sh NAME [OPTS] -- 'SCRIPT'
#                                 like same but runs a bash snippet in each
#                                 side's dir, with `qemu-img` in PATH resolving
#                                 to that side's tool (qimg in $A).
#   verify NAME [OPTS] -- ARGS... runs the REAL qemu-img ARGS in $A and in $B
#                                 and compares: i.e. "qimg's result looks to
#                                 qemu-img exactly like qemu-img's own result".
#   fixture CMD...                runs CMD (command or shell function) in $A and
#                                 in $B; aborts the scenario if it fails.
#   check NAME CMD...             passes when CMD exits 0
#   check_fail NAME CMD...        passes when CMD exits non-zero
#   check_sh NAME 'SCRIPT'        passes when the bash snippet exits 0
#   eq NAME GOT WANT              passes when the two strings are equal
#   pass NAME / fail NAME [MSG]   record a result directly
#   same_image NAME FILE [FMT]    real `qemu-img compare` of $A/FILE vs $B/FILE
#                                 (FMT default raw) and, for raw, byte `cmp`
#   same_alloc NAME FILE          $A/FILE and $B/FILE have the same logical
#                                 allocation: equal FIEMAP block ranges (with
#                                 the unwritten flag), via filefrag; without
#                                 filefrag, equal st_blocks
#   same_map NAME FILE [FMT]      `qemu-img map --output=json` of both equal
#   same_files NAME               $A and $B hold the same names, types, sizes
#   mkdata FILE SIZE [SEED]       deterministic raw test image in cwd: random
#                                 and pattern data at several offsets, an
#                                 explicitly written zero run, and holes
#   randbytes SEED N              N deterministic pseudo-random bytes on stdout
#   blocks FILE                   allocated 512-byte blocks (stat %b)

export LC_ALL=C
unset QEMU_IMG_PROGNAME 2>/dev/null

_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_repo_dir=$(cd "$_lib_dir/../.." && pwd)
SCENARIO=$(basename "$0" .sh)

: "${QIMG:=$_repo_dir/build/qimg}"
: "${QEMU_IMG:=qemu-img}"
: "${QEMU_IO:=qemu-io}"

_abs_cmd() { # a command name or path as an absolute path (symlinks kept)
    case $1 in
        */*) realpath -s -m -- "$1" ;;
        *) command -v -- "$1" ;;
    esac
}

_N_OK=0
_N_FAIL=0

pass() { _N_OK=$((_N_OK + 1)); printf 'ok - %s\n' "$1"; }
fail() {
    _N_FAIL=$((_N_FAIL + 1))
    printf 'not ok - %s\n' "$1"
    shift
    [ $# -gt 0 ] && printf '%s\n' "$@" | _diag
    return 0
}
# Prefix every line with "#   " so that nothing can be mistaken for a result;
# make control characters visible; cap the length.
_diag() {
    sed -e 's/\r/\\r/g' -e 's/\t/\\t/g' -e 's/^/#   /' | head -n "${DIAG_LINES:-60}"
}

_bail() { # a scenario that cannot run at all counts as one failure
    fail "$SCENARIO: $1" "${@:2}"
    exit 1
}

QIMG=$(_abs_cmd "$QIMG")
QEMU_IMG_ABS=$(_abs_cmd "$QEMU_IMG")
QEMU_IO=$(_abs_cmd "$QEMU_IO")
[ -n "$QIMG" ] && [ -x "$QIMG" ] && [ -f "$QIMG" ] ||
    _bail "qimg binary not found or not executable (QIMG=${QIMG:-unset})"
[ -n "$QEMU_IMG_ABS" ] && [ -x "$QEMU_IMG_ABS" ] ||
    _bail "oracle qemu-img not found (QEMU_IMG=$QEMU_IMG); install qemu-utils"
[ -n "$QEMU_IO" ] && [ -x "$QEMU_IO" ] ||
    _bail "qemu-io not found; install qemu-utils"
QEMU_IMG=$QEMU_IMG_ABS
export QIMG QEMU_IMG QEMU_IO

T=$(mktemp -d "${TMPDIR:-/tmp}/qimg-interop-$SCENARIO.XXXXXX") || _bail "mktemp failed"
T=$(cd "$T" && pwd -P)
_cleanup() {
    local rc=$?
    cd / || true
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "# kept temp dir: $T"
    else
        rm -rf "$T"
    fi
    printf '# %s: %d passed, %d failed\n' "$SCENARIO" "$_N_OK" "$_N_FAIL"
    [ "$_N_FAIL" -eq 0 ] && [ "$rc" -eq 0 ] && exit 0
    exit 1
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

A=$T/a
B=$T/b
W=$T/w
QBIN=$T/bin-qimg     # holds qemu-img -> $QIMG
RBIN=$T/bin-ref      # holds qemu-img -> real qemu-img
mkdir -p "$A" "$B" "$W" "$QBIN" "$RBIN"
ln -s "$QIMG" "$QBIN/qemu-img"
ln -s "$QEMU_IMG" "$RBIN/qemu-img"
cd "$W" || _bail "cannot cd to $W"

# ---------------------------------------------------------------- data makers

randbytes() { # SEED N
    local key
    key=$(printf '%s' "$1" | md5sum | cut -c1-32)
    head -c "$2" /dev/zero |
        openssl enc -aes-128-ctr -K "$key" -iv 00000000000000000000000000000000 -nosalt
}

_put() { # FILE OFFSET LEN SOURCE-CMD... : write LEN bytes of SOURCE at OFFSET (clipped to file size)
    local f=$1 off=$2 len=$3 size
    shift 3
    size=$(stat -c %s "$f")
    [ "$off" -ge "$size" ] && return 0
    [ $((off + len)) -gt "$size" ] && len=$((size - off))
    [ "$len" -le 0 ] && return 0
    "$@" | head -c "$len" |
        dd of="$f" bs=64k seek="$off" oflag=seek_bytes conv=notrunc iflag=fullblock status=none
}

_pattern() { # BYTE(decimal): endless stream of that byte
    local oct
    oct=$(printf '\\%03o' "$1")
    # tr keeps NUL-safe bytes; 0 is special-cased
    if [ "$1" -eq 0 ]; then cat /dev/zero; else tr '\000' "$oct" </dev/zero; fi
}

# mkdata FILE SIZE [SEED]: a sparse raw image of SIZE bytes (size suffixes
# k/M/G accepted) with, at offsets relative to the size:
#   [0, 64k)            pseudo-random data
#   [size/4, +4k)       byte 0xaa
#   [size/4+64k, +8k)   pseudo-random data
#   [size/2, +64k)      explicitly written zeros (allocated, reads as zero)
#   [3*size/4, +1k)     byte 0x55 (not cluster aligned length)
#   [size-4k, size)     pseudo-random data
# everything else is a hole. Identical bytes and allocation every time.
mkdata() {
    local f=$1 size seed=${3:-mkdata}
    size=$(_tobytes "$2") || return 1
    rm -f "$f"
    truncate -s "$size" "$f" || return 1
    _put "$f" 0 65536 randbytes "$seed-0" 65536
    _put "$f" $((size / 4)) 4096 _pattern 170
    _put "$f" $((size / 4 + 65536)) 8192 randbytes "$seed-1" 8192
    _put "$f" $((size / 2)) 65536 _pattern 0
    _put "$f" $((size / 4 * 3)) 1024 _pattern 85
    [ "$size" -ge 4096 ] && _put "$f" $((size - 4096)) 4096 randbytes "$seed-2" 4096
    return 0
}

_tobytes() {
    local n=$1
    case $n in
        *[kK]) echo $(( ${n%?} * 1024 )) ;;
        *M) echo $(( ${n%?} * 1024 * 1024 )) ;;
        *G) echo $(( ${n%?} * 1024 * 1024 * 1024 )) ;;
        *[!0-9]*|'') echo "bad size $n" >&2; return 1 ;;
        *) echo "$n" ;;
    esac
}

blocks() { stat -c %b "$1"; }

# ext4 counts extent-tree blocks in st_blocks only once delayed allocation has
# been written back, so the same file can show 8 more sectors a moment later:
# flush both work dirs before anything looks at allocation.
_settle() {
    local f files=()
    for f in "$A"/* "$B"/*; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && sync -- "${files[@]}" 2>/dev/null
    return 0
}

# ---------------------------------------------------------------- checks

check() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then pass "$name"; else
        fail "$name" "command: $*" "exit code: $rc" "$out"
    fi
}

check_fail() {
    local name=$1 out rc
    shift
    out=$("$@" 2>&1); rc=$?
    if [ $rc -ne 0 ]; then pass "$name"; else
        fail "$name" "command succeeded but should have failed: $*" "$out"
    fi
}

check_sh() {
    local name=$1 out rc
    out=$(bash -c "$2" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then pass "$name"; else
        fail "$name" "script: $2" "exit code: $rc" "$out"
    fi
}

eq() {
    if [ "$2" == "$3" ]; then pass "$1"; else
        fail "$1" "got:  $(printf %s "$2" | head -c 2000)" "want: $(printf %s "$3" | head -c 2000)"
    fi
}

# qemu-img 7.2 now and then times its PBKDF2 benchmark as 0 ms on a busy
# machine and fails with this message (crypto/pbkdf.c): a fixture, a side of
# a comparison or a qemu_img call that fails with it is run again, up to 4 times.
_PBKDF_FLAKE='Unable to get accurate CPU usage'

qemu_img() { # "$QEMU_IMG" ARGS..., retried on the PBKDF2 benchmark flake
    local i out rc
    for i in 1 2 3 4; do
        out=$("$QEMU_IMG" "$@" 2>&1); rc=$?
        [ $rc -ne 0 ] && [[ $out == *"$_PBKDF_FLAKE"* ]] || break
    done
    [ -z "$out" ] || printf '%s\n' "$out"
    return $rc
}

fixture() {
    local d out rc i
    for d in "$A" "$B"; do
        for i in 1 2 3 4; do
            out=$(cd "$d" && "$@" 2>&1); rc=$?
            [ $rc -ne 0 ] && [[ $out == *"$_PBKDF_FLAKE"* ]] || break
        done
        if [ $rc -ne 0 ]; then
            _bail "fixture failed in $d: $*" "exit code: $rc" "$out"
        fi
    done
    _settle
}

# _run_side DIR BINDIR MODE STDIN OUTPREFIX ARGS...
# MODE "argv": run BINDIR/qemu-img ARGS; MODE "sh": bash -c ARGS[0] with BINDIR first in PATH.
_run_side() {
    local dir=$1 bindir=$2 mode=$3 stdin=$4 out=$5 a
    shift 5
    local args=()
    for a in "$@"; do args+=("${a//@DIR@/$dir}"); done
    (
        cd "$dir" || exit 125
        # SIDE_TIMEOUT (seconds, unset: none) bounds each command
        local lim=()
        [ -n "${SIDE_TIMEOUT:-}" ] && lim=(timeout -k 5 "$SIDE_TIMEOUT")
        if [ "$mode" = sh ]; then
            PATH="$bindir:$PATH" DIR="$dir" exec "${lim[@]}" bash -c "${args[0]}"
        else
            exec "${lim[@]}" "$bindir/qemu-img" "${args[@]}"
        fi
    ) <"$stdin" >"$out.out" 2>"$out.err"
    echo $? >"$out.rc"
}

# _run_side_retried: _run_side, again while it fails with the PBKDF2 flake,
# or while the real qemu-img overran SIDE_TIMEOUT (qemu's curl driver can
# hang on a TLS transfer; qimg overrunning it is a failure, not retried)
_run_side_retried() {
    local i rc
    for i in 1 2 3 4; do
        _run_side "$@"
        read -r rc <"$5.rc"
        if [ "$rc" = 124 ] && [ -n "${SIDE_TIMEOUT:-}" ] && [ "$2" = "$RBIN" ]; then
            echo "# the real qemu-img overran ${SIDE_TIMEOUT}s (run $i): $*" >&2
            continue
        fi
        [ "$rc" != 0 ] && grep -qF "$_PBKDF_FLAKE" "$5.err" || break
    done
}

# _normalise DIR FILTER FILE: replace the side's dir by @DIR@ and $T by @TMP@,
# then apply FILTER. Done in bash (no process per file) unless there is a filter
# or the output holds a NUL byte (read -d '' stops there and returns 0).
_normalise() {
    local dir=$1 filter=$2 f=$3 v=''
    if IFS= read -r -d '' v <"$f"; then
        sed -i -e "s#$dir#@DIR@#g" -e "s#$T#@TMP@#g" "$f"
    elif [[ $v == *"$T"* ]]; then
        v=${v//"$dir"/@DIR@}
        v=${v//"$T"/@TMP@}
        printf '%s' "$v" >"$f"
    fi
    if [ -n "$filter" ]; then
        (eval "$filter") <"$f" >"$f.f" 2>&1
        mv "$f.f" "$f"
    fi
}

# _same_file A B: the two files have equal bytes (bash compare, cmp on NULs)
_same_file() {
    local x='' y=''
    if IFS= read -r -d '' x <"$1" || IFS= read -r -d '' y <"$2"; then
        cmp -s "$1" "$2"
        return
    fi
    IFS= read -r -d '' y <"$2"
    [ "$x" == "$y" ]
}

# _compare NAME MODE LEFTBIN LEFTLABEL RIGHTBIN RIGHTLABEL [OPTS] -- ARGS...
_compare() {
    local name=$1 mode=$2 lbin=$3 llabel=$4 rbin=$5 rlabel=$6
    shift 6
    local filter='' stdin=/dev/null want_rc=''
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        case $1 in
            --filter) filter=$2; shift 2 ;;
            --stdin) stdin=$2; shift 2 ;;
            --rc) want_rc=$2; shift 2 ;;
            *) fail "$name" "harness: unknown option '$1' (missing -- ?)"; return ;;
        esac
    done
    [ "$1" = -- ] && shift
    local L=$T/.cmp.l R=$T/.cmp.r
    _settle
    _run_side_retried "$A" "$lbin" "$mode" "$stdin" "$L" "$@"
    _run_side_retried "$B" "$rbin" "$mode" "$stdin" "$R" "$@"
    _normalise "$A" "$filter" "$L.out"
    _normalise "$A" "$filter" "$L.err"
    _normalise "$B" "$filter" "$R.out"
    _normalise "$B" "$filter" "$R.err"
    local lrc rrc msgs=()
    read -r lrc <"$L.rc"; read -r rrc <"$R.rc"
    if [ "$lrc" != "$rrc" ]; then
        msgs+=("exit code: $llabel $lrc, $rlabel $rrc")
    elif [ -n "$want_rc" ] && [ "$lrc" != "$want_rc" ]; then
        msgs+=("exit code: both $lrc, expected $want_rc")
    fi
    local s
    for s in out err; do
        if ! _same_file "$R.$s" "$L.$s"; then
            msgs+=("std$s differs (--- $rlabel, +++ $llabel):")
            msgs+=("$(diff -u --text "$R.$s" "$L.$s" | tail -n +3 | head -n 40)")
        fi
    done
    if [ ${#msgs[@]} -eq 0 ]; then
        pass "$name"
    else
        if [ "$mode" = sh ]; then
            fail "$name" "script: $*" "${msgs[@]}"
        else
            fail "$name" "command: qemu-img $*" "${msgs[@]}"
        fi
    fi
}

same()    { local n=$1; shift; _compare "$n" argv "$QBIN" qimg "$RBIN" qemu-img "$@"; }
same_sh() { local n=$1; shift; _compare "$n" sh   "$QBIN" qimg "$RBIN" qemu-img "$@"; }
verify()  { local n=$1; shift; _compare "$n" argv "$RBIN" "qimg's result" "$RBIN" "qemu-img's result" "$@"; }

same_image() {
    local name=$1 f=$2 fmt=${3:-raw} out rc
    out=$("$QEMU_IMG" compare -f "$fmt" -F "$fmt" "$A/$f" "$B/$f" 2>&1); rc=$?
    if [ $rc -ne 0 ]; then
        fail "$name" "qemu-img compare (qimg's vs qemu-img's $f) exit $rc" "$out"
        return
    fi
    if [ "$fmt" = raw ] && ! cmp -s "$A/$f" "$B/$f"; then
        fail "$name" "raw bytes differ: $(cmp "$A/$f" "$B/$f" 2>&1 | head -1)" \
            "sizes: qimg $(stat -c %s "$A/$f") qemu-img $(stat -c %s "$B/$f")"
        return
    fi
    pass "$name"
}

# _extmap FILE: the file's logical allocation as merged "first-last[ unwritten]"
# block ranges (filefrag/FIEMAP), independent of where the blocks sit on disk
# (st_blocks also counts extent-tree blocks, which depend on fragmentation).
_extmap() {
    filefrag -v "$1" 2>/dev/null | awk '
        $1 ~ /^[0-9]+:$/ {
            lo = $2; sub(/\.\.$/, "", lo); hi = $3; sub(/:$/, "", hi)
            u = ($0 ~ /unwritten/) ? " unwritten" : ""
            if (n && lo == last + 1 && u == lastu) { last = hi; next }
            if (n) print first "-" last lastu
            first = lo; last = hi; lastu = u; n++
        }
        END { if (n) print first "-" last lastu; print "ranges " n + 0 }'
}

same_alloc() {
    local name=$1 f=$2 ab bb am bm
    _settle
    ab=$(blocks "$A/$f" 2>&1); bb=$(blocks "$B/$f" 2>&1)
    if command -v filefrag >/dev/null 2>&1 && [ -f "$A/$f" ] && [ -f "$B/$f" ]; then
        am=$(_extmap "$A/$f"); bm=$(_extmap "$B/$f")
        if [ -n "$am" ] && [ "$am" == "$bm" ]; then pass "$name"; return; fi
        fail "$name" "allocated 4k-block ranges of $f differ (--- qemu-img's, +++ qimg's);" \
            "st_blocks: qimg's $ab, qemu-img's $bb" \
            "$(diff -u <(echo "$bm") <(echo "$am") | tail -n +3 | head -n 30)"
        return
    fi
    if [ "$ab" = "$bb" ]; then pass "$name"; else
        fail "$name" "allocated 512-byte blocks of $f: qimg's $ab, qemu-img's $bb"
    fi
}

same_map() {
    verify "$1" -- map -f "${3:-raw}" --output=json "$2"
}

_listing() { (cd "$1" && find . -mindepth 1 \( -type d -printf '%P d\n' \) -o -printf '%P %y %s\n' | sort); }
# same_files NAME [--filter SED]: same file names, types and sizes in both
# work dirs (the filter edits the listing, e.g. to drop the size of a text
# descriptor whose random CID has no fixed width).
# no_leftovers NAME FILE...: qimg left none of these files behind (a create
# or convert that fails removes what it created; qemu-img keeps them), then
# qemu-img's copies go too, so that a later same_files compares the rest.
no_leftovers() {
    local name=$1 f left=()
    shift
    for f in "$@"; do
        [ -e "$A/$f" ] && left+=("$f")
        rm -f "$B/$f"
    done
    if [ ${#left[@]} -eq 0 ]; then pass "$name"; else fail "$name" "qimg left: ${left[*]}"; fi
}

same_files() {
    local a b name=$1 f=
    [ "${2:-}" == --filter ] && f=$3
    a=$(_listing "$A" | sed -e "$f"); b=$(_listing "$B" | sed -e "$f")
    if [ "$a" == "$b" ]; then pass "$name"; else
        fail "$name" "work dirs differ (name type size; --- qemu-img's, +++ qimg's):" \
            "$(diff -u --label qemu-img --label qimg <(echo "$b") <(echo "$a") | tail -n +3)"
    fi
}

# put64 FILE OFFSET VALUE: a big-endian 64-bit value written in place
put64() { python3 -c 'import sys
f, o, v = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0)
with open(f, "r+b") as h:
    h.seek(o); h.write(v.to_bytes(8, "big"))' "$@"; }
