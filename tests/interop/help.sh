#!/usr/bin/env bash
# Interop: help texts, the man page and the bash completion.
#
#   - `--help`/`-h` of the tool and of every command equal qemu-img 7.2's but
#     for the two version lines and the "Supported formats:" line (qimg lists
#     its own drivers);
#   - `-o help` of create/convert/amend/measure for every writable format;
#   - the man page and the completion that qimg-gendocs (src/tools/gendocs.c)
#     generates at build time: the man page renders without groff warnings
#     and equals the committed docs/qimg.1, the completion equals the
#     committed contrib/bash-completion/qimg and completes what it should
#     (sourced here, _qimg called with COMP_WORDS/COMP_CWORD or COMP_LINE);
#   - every long option the completion offers is one qimg accepts.
# shellcheck disable=SC2016  # check_in snippets expand when they are run
. "$(dirname "$0")/lib.sh"

GEN_DIR=${QIMG_BUILD:-$(dirname "$QIMG")}/src/tools
MAN=$GEN_DIR/qimg.1
COMPL=$GEN_DIR/qimg-completion.bash
GENDOCS=$GEN_DIR/qimg-gendocs

# check_sh in this shell: the snippet sees every variable of the scenario
check_in() {
    local out
    if out=$( (eval "$2") 2>&1); then pass "$1"; else fail "$1" "script: $2" "$out"; fi
}

# the version lines and the list of formats are qimg's own
VFILTER="sed -e 1,2d -e '/^Supported formats:/d'"

# ============================================================== --help

COMMANDS=$($QIMG --help | sed -n '/^Command syntax:/,/^$/{s/^  \([a-z]*\) .*/\1/p}')
eq "help lists 15 commands" "$(echo $COMMANDS | wc -w)" 15
for h in --help -h; do
    same "$h" --filter "$VFILTER" --rc 0 -- $h
    for c in $COMMANDS; do
        # (resize -h exits 1 in qemu-img 7.2 too)
        same "$c $h" --filter "$VFILTER" -- "$c" $h
    done
done
same "help after other options" --filter "$VFILTER" -- info -f raw --help
same "convert -h with operands" --filter "$VFILTER" -- convert -O qcow2 -h a b
check_in "version lines under the name qemu-img" \
    '"$QBIN/qemu-img" --help | head -1 | grep -q "^qemu-img version 7\.2\.0 (qimg "'
check_in "version lines under the name qimg" \
    '"$QIMG" --version | head -1 | grep -q "^qimg version .* (compatible with qemu-img 7\.2\.0)$"'
check_in "the formats line lists the registry's drivers, sorted" \
    'l=$("$QIMG" --help | sed -n "s/^Supported formats: //p"); [ -n "$l" ] &&
     [ "$l" = "$(tr " " "\n" <<<"$l" | sort | tr "\n" " " | sed "s/ \$//")" ] &&
     for f in raw qcow2 qcow qed vmdk vdi vpc vhdx parallels luks file; do
         grep -qw "$f" <<<"$l" || exit 1; done'

# ============================================================== -o help

WRITABLE="raw qcow2 qcow qed vmdk vdi vpc vhdx parallels luks"
for f in $WRITABLE; do
    same "create -f $f -o help" --rc 0 -- create -f "$f" -o help
    same "create -f $f -o help FILE (protocol options too)" -- create -f "$f" -o help x.img
done
# (convert and amend print through the same code as create: a few formats)
for f in raw qcow2 vmdk luks; do
    same "convert -O $f -o help" -- convert -O "$f" -o help
    same "amend -f $f -o help" -- amend -f "$f" -o help
done
same "create -f qcow2 -o '?'" -- create -f qcow2 -o '?'
same "convert -O vmdk -o help SRC DST" -- convert -O vmdk -o help a.img b.img
same "measure -O qcow2 -o help" -- measure -O qcow2 -o help
same "measure -O luks -o help" -- measure -O luks -o help
same "create -o help (raw by default)" -- create -o help
same "create -o size=1M,help" -- create -o size=1M,help
same "create -f qcow2 -o help,cluster_size=4k FILE" -- create -f qcow2 -o help,cluster_size=4k x.img
same "create -f file -o help" -- create -f file -o help
same "create -f bochs -o help (no creation)" -- create -f bochs -o help
same "convert -O dmg -o help (no creation)" -- convert -O dmg -o help
same "create -f nosuch -o help" -- create -f nosuch -o help
same "amend -o help without -f" -- amend -o help
same_files "-o help created nothing"

# ============================================================== man page

if [ -f "$MAN" ] && [ -x "$GENDOCS" ]; then
    check_in "man page: groff -man -ww renders it without warnings" \
        'out=$(groff -man -ww -z "$MAN" 2>&1) && [ -z "$out" ]'
    if command -v man >/dev/null; then
        check_in "man page: man -l renders it" \
            'MANWIDTH=80 man -l "$MAN" 2>/dev/null | grep -q "^QIMG(1)"'
    fi
    check_in "man page: the build's copy is what qimg-gendocs writes now" \
        '"$GENDOCS" man | cmp -s - "$MAN"'
    committed=$_repo_dir/docs/qimg.1
    # the committed copy lists the drivers of a build with every protocol
    if [ "$(sed -n 's/^Supported formats: //p' <("$QIMG" --help))" = \
         "$(sed -n 's/^\.\\" formats: //p' "$committed")" ]; then
        check_in "man page: docs/qimg.1 is up to date (regenerate: cp BUILD/src/tools/qimg.1 docs/)" \
            'cmp -s "$MAN" "$committed"'
    else
        pass "man page: docs/qimg.1 not compared (this build has other drivers)"
    fi
    man_text=$(MANWIDTH=200 man -l "$MAN" 2>/dev/null || groff -man -Tascii "$MAN" 2>/dev/null)
    for c in $COMMANDS; do
        syn=$("$QIMG" --help | sed -n "s/^  $c //p")
        check_in "man page: synopsis of $c as --help prints it" \
            'grep -qF -- "$syn" <<<"$(tr -s " \n" "  " <<<"$man_text")"'
    done
    check_in "man page: qcow2 creation options with their help" \
        'grep -q "lazy_refcounts=<bool (on/off)>" <<<"$man_text" &&
         grep -q "Postpone refcount updates" <<<"$man_text"'
    check_in "man page: every writable format has its creation options" \
        'for f in $WRITABLE; do grep -qE "^   $f\$" <<<"$man_text" || exit 1; done'
    check_in "man page: the qimg extensions" \
        'grep -q -- "--compression-level=N" <<<"$man_text"'
    check_in "man page: exit codes and environment" \
        'grep -q "^EXIT STATUS" <<<"$man_text" && grep -q "^ENVIRONMENT" <<<"$man_text"'
else
    fail "man page: $MAN or $GENDOCS not built"
fi

# ============================================================== completion

if [ -f "$COMPL" ]; then
    check_in "completion: the build's copy is what qimg-gendocs writes now" \
        '"$GENDOCS" bash-completion | cmp -s - "$COMPL"'
    committed=$_repo_dir/contrib/bash-completion/qimg
    if [ "$(sed -n 's/^Supported formats: //p' <("$QIMG" --help))" = \
         "$(sed -n 's/^_qimg_formats="\(.*\)"$/\1/p' "$committed")" ]; then
        check_in "completion: contrib/bash-completion/qimg is up to date (regenerate: cp BUILD/src/tools/qimg-completion.bash contrib/bash-completion/qimg)" \
            'cmp -s "$COMPL" "$committed"'
    else
        pass "completion: contrib/bash-completion/qimg not compared (this build has other drivers)"
    fi
    check_in "completion: bash -n" 'bash -n "$COMPL"'

    # One bash runs every case: "WORDS... => PATTERN" lines (a trailing * lets
    # qimg's own commands and standard options follow qemu-img's), the words of
    # a case are COMP_WORDS (the last one the word being completed);
    # "LINE| text" cases set COMP_LINE/COMP_POINT as bash does, with '='
    # breaking words.
    COMP_BREAKS=$' \t\n"\'><=;|&(:'   # bash's default
    mkdir -p "$W/cdir" && touch "$W/cdir/disk.qcow2" "$W/cdir/disk.raw"
    # shellcheck disable=SC2016
    results=$(cd "$W" && bash -c '
        . "$1"
        breaks=$2
        while IFS= read -r line; do
            want=${line#*=>}; want=${want# }; spec=${line%% =>*}
            COMPREPLY=()
            case $spec in
            "LINE| "*)
                COMP_LINE=${spec#LINE| }; COMP_POINT=${#COMP_LINE}
                COMP_WORDBREAKS=$breaks
                _qimg ;;
            *)
                unset COMP_LINE COMP_POINT
                eval "COMP_WORDS=($spec)"
                COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
                _qimg ;;
            esac
            got="${COMPREPLY[*]}"
            # shellcheck disable=SC2053
            if [[ $got == $want ]]; then echo "ok $spec"; else echo "bad $spec => got [$got] want [$want]"; fi
        done' _ "$COMPL" "$COMP_BREAKS" <<'EOF'
qimg "" => amend bench bitmap check commit compare convert create dd info map measure snapshot rebase resize*
qimg co => commit compare convert
qimg --safe conv => convert
qimg --sa => --safe
qimg - => -h --help -V --version -T --trace*
qimg -T events=x "" => amend bench bitmap check commit compare convert create dd info map measure snapshot rebase resize*
qimg -T "" => 
qimg convert -O q => qcow qcow2 qed
qimg convert -O "" => luks parallels qcow qcow2 qed raw vdi vhdx vmdk vpc
qimg create -f v => vdi vhdx vmdk vpc
qimg info -f dm => dmg
qimg convert -f raw -F q => qcow qcow2 qed
qimg dd -O r => raw
qimg create -f qcow2 -o lazy => lazy_refcounts=
qimg create -f qcow2 -o cluster_size=4k,comp => cluster_size=4k,compression_type= cluster_size=4k,compat=
qimg create -f qcow2 -o he => help
qimg create -o pre => preallocation=
qimg create -f vmdk -o sub => subformat=
qimg convert -f qcow2 -O vdi -o st => static=
qimg measure -O qed -o table => table_size=
qimg amend -f qcow2 -o encrypt.n => encrypt.new-secret=
qimg create -f qcow2 -o size=1M,lazy_refcounts= => 
qimg info --output= => --output=human --output=json
qimg info --output "" => human json
qimg map --output=j => --output=json
qimg check -r "" => leaks all
qimg check -T w => writeback writethrough
qimg convert -t u => unsafe
qimg convert --object s => secret,id=
qimg resize --preallocation=f => --preallocation=falloc --preallocation=full
qimg bench -i n => native
qimg convert --comp => --compression-level=
qimg convert --ta => --target-image-opts --target-is-zero
qimg check --o => --object --output=
qimg resize --s => --shrink
qimg map --st => --start-offset=
qimg snapshot - => -h --help --object --image-opts -U -q -l -a -c -d
qimg dd "" => bs= count= skip= if= of=
qimg dd if=cdir/disk.r => if=cdir/disk.raw
qimg info cdir/disk.q => cdir/disk.qcow2
qimg convert -O raw cdir/disk.r => cdir/disk.raw
qimg convert -S "" => 
LINE| qimg info --output=j => json
LINE| qimg create -f qcow2 -o compat=1.1,lazy => 1.1,lazy_refcounts=
LINE| qimg conv => convert
LINE| qimg convert -O vh => vhdx
LINE| qimg info cdir/disk.r => cdir/disk.raw
LINE| qimg  => amend bench bitmap check commit compare convert create dd info map measure snapshot rebase resize*
EOF
)
    while IFS= read -r r; do
        case $r in
        "ok "*) pass "completion: ${r#ok }" ;;
        *) fail "completion: ${r%% => got*}" "$r" ;;
        esac
    done <<<"$results"

    # every long option the completion offers is one qimg's getopt knows
    # shellcheck disable=SC2016
    table=$(bash -c '. "$1"; for c in $2; do for o in $(_qimg_opts "$c"); do
                o=${o%=}; echo "$c $o $(_qimg_arg "$c" "$o")"; done; done' _ "$COMPL" "$COMMANDS")
    declare -A bad=()
    while read -r c o kind; do
        # long options (getopt_long tables); the short ones share their
        # getopt strings with the same synopses and are run by every scenario
        case $o in -h|--help|-?) continue ;; esac
        if [ -n "$kind" ]; then args=("$o" x); else args=("$o"); fi
        # (only getopt is exercised here: leak checks would double the time)
        err=$(cd "$W" && ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
              "$QBIN/qemu-img" "$c" "${args[@]}" 2>&1 >/dev/null </dev/null)
        case $err in
        *"unrecognized option"*|*"invalid option"*|*"requires an argument"*) bad[$c]+=" $o" ;;
        esac
    done <<<"$table"
    for c in $COMMANDS; do
        eq "completion: every long option of $c is accepted by qimg" "${bad[$c]-}" ""
    done
else
    fail "completion: $COMPL not built"
fi
