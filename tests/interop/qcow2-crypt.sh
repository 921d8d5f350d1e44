#!/usr/bin/env bash
# Interop: encryption inside qcow2 (encrypt.format=luks, crypt_method 2, and
# legacy AES, crypt_method 1) and qcow v1 (AES). Images made and filled by
# qemu-img/qemu-io are read identically by qimg; images qimg makes or writes
# are read, checked and compared by the real tool (AES ones byte for byte);
# info/check/map and the messages for missing, unknown or wrong secrets,
# mismatched or unknown encrypt.* options, create and measure options.
# iter-time=10 everywhere; each LUKS create still benchmarks PBKDF2 for
# about a second, as qemu does, so LUKS creates are kept few.
. "$(dirname "$0")/lib.sh"

S=(--object secret,id=s,data=pw)
BAD=(--object secret,id=s,data=bad)
io() { printf 'driver=%s,encrypt.key-secret=s,file.filename=%s' "$1" "$2"; }

# ============================================================== qemu-made images, read by qimg

qcreate() { qemu_img create -q "${S[@]}" "$@"; }
qcreate -f qcow2 -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10 "$W/l.qcow2" 1M ||
    _bail "qemu-img create luks qcow2 failed"
qcreate -f qcow2 -o encrypt.format=aes,encrypt.key-secret=s "$W/a.qcow2" 1M || _bail "aes qcow2"
qcreate -f qcow -o encrypt.format=aes,encrypt.key-secret=s "$W/a.qcow" 1M || _bail "aes qcow"
for f in l.qcow2 a.qcow2 a.qcow; do
    d=qcow2; [ "$f" = a.qcow ] && d=qcow
    "$QEMU_IO" "${S[@]}" --image-opts "$(io $d "$W/$f")" -c 'write -P 0x11 0 64k' \
        -c 'write -P 0x22 100k 3k' -c 'write -z 300k 64k' -c 'write -P 0x44 1000k 24k' >/dev/null ||
        _bail "qemu-io write into $f failed"
    cp --sparse=always "$W/$f" "$A/$f"; cp --sparse=always "$W/$f" "$B/$f"
done
fixture "$QEMU_IMG" create -q -f qcow2 p.qcow2 1M

for f in l.qcow2 a.qcow2 a.qcow; do
    d=qcow2; [ "$f" = a.qcow ] && d=qcow
    same "$f: info without the secret" --filter 'grep -v "^disk size:"' -- info "$f"
    same "$f: info json without the secret" --filter 'grep -v actual-size' -- info --output=json "$f"
    [ "$f" != a.qcow2 ] && same "$f: convert without key-secret" -- convert -O raw "$f" o.raw
    [ "$f" = l.qcow2 ] && same "$f: check needs the key" -- check "$f"
    [ "$f" != a.qcow2 ] && same "$f: unknown secret" -- convert --image-opts "$(io $d "$f")" -O raw o.raw
    same "$f: convert with the key" -- convert "${S[@]}" --image-opts "$(io $d "$f")" -O raw "$f.raw"
    same_image "$f: data" "$f.raw"
    same "$f: check with the key" -- check "${S[@]}" --image-opts "$(io $d "$f")"
    [ "$f" = l.qcow2 ] && same "$f: map" -- map "${S[@]}" --image-opts "$(io $d "$f")"
    same "$f: map json" -- map --output=json "${S[@]}" --image-opts "$(io $d "$f")"
    [ "$f" = l.qcow2 ] && same "$f: compare with its raw copy" -- compare "${S[@]}" --image-opts "$(io $d "$f")" \
        "driver=raw,file.filename=$f.raw"
    [ "$f" != a.qcow2 ] && same "$f: format mismatch" -- convert "${S[@]}" --image-opts "$(io $d "$f"),encrypt.format=luks" -O raw o.raw
    [ "$f" != a.qcow2 ] && same "$f: unexpected encrypt option" -- convert "${S[@]}" --image-opts "$(io $d "$f"),encrypt.cipher-alg=aes-128" -O raw o.raw
done
same "luks: wrong passphrase" -- convert "${BAD[@]}" --image-opts "$(io qcow2 l.qcow2)" -O raw o.raw
same "luks: format aes given" -- convert "${S[@]}" --image-opts "$(io qcow2 l.qcow2),encrypt.format=aes" -O raw o.raw
# AES has no key check: a wrong key gives the same garbage in both tools.
same "aes qcow2: wrong key" -- convert "${BAD[@]}" --image-opts "$(io qcow2 a.qcow2)" -O raw bad2.raw
same_image "aes qcow2: wrong-key garbage" bad2.raw
same "aes qcow: wrong key" -- convert "${BAD[@]}" --image-opts "$(io qcow a.qcow)" -O raw bad1.raw
same_image "aes qcow: wrong-key garbage" bad1.raw
same "plain image given encrypt.format" -- info --image-opts driver=qcow2,file.filename=p.qcow2,encrypt.format=luks

# Many copy steps of encrypted data, read by eight workers at once (a
# read-only node decrypts outside its lock).
mkbig() { # FILE: 12 MiB, a random run in every MiB
    truncate -s 12M "$1" || return 1
    for i in $(seq 0 11); do
        _put "$1" $((i * 1048576 + 4096)) 262144 randbytes "crypt-$i" 262144 || return 1
    done
}
fixture mkbig big.raw
for fmt in luks aes; do
    it=; [ $fmt = luks ] && it=,encrypt.iter-time=10
    fixture qemu_img convert "${S[@]}" -O qcow2 -o encrypt.format=$fmt,encrypt.key-secret=s$it \
        big.raw big-$fmt.qcow2
    same "$fmt: 12 MiB read with -m 8 -W" -- convert -m 8 -W "${S[@]}" \
        --image-opts "$(io qcow2 big-$fmt.qcow2)" -O raw big-$fmt.raw
    same_image "$fmt: 12 MiB read with -m 8 -W: data" big-$fmt.raw
    check "$fmt: 12 MiB read: equals its source" cmp "$A/big-$fmt.raw" "$A/big.raw"
done

# ============================================================== qimg writes into qemu-made images

fixture "$QEMU_IMG" create -q -f raw pat.raw 1M
fixture "$QEMU_IO" -f raw -c 'write -P 0x77 8k 300k' -c 'write -P 0x12 513k 1k' -c 'write -P 0x99 1020k 4k' pat.raw
for f in l.qcow2 a.qcow2 a.qcow; do
    d=qcow2; [ "$f" = a.qcow ] && d=qcow
    for s in "$A" "$B"; do cp --sparse=always "$s/$f" "$s/w-$f"; done
    same "$f: convert -n into it" -- convert -n "${S[@]}" pat.raw --target-image-opts "$(io $d "w-$f")"
    check "$f: qemu-img reads qimg's writes" "$QEMU_IMG" compare "${S[@]}" --image-opts \
        "$(io $d "$A/w-$f")" "driver=raw,file.filename=$A/pat.raw"
    [ $d = qcow2 ] && check "$f: qemu-img check after qimg's writes" "$QEMU_IMG" check "${S[@]}" \
        --image-opts "$(io $d "$A/w-$f")"
    check "$f: same bytes as qemu-img's writes" cmp "$A/w-$f" "$B/w-$f"
done

# ============================================================== qimg-made images

for spec in "qcow2 aes" "qcow aes"; do
    set -- $spec
    same "convert to $1 $2" -- convert "${S[@]}" -O "$1" -o "encrypt.format=$2,encrypt.key-secret=s" pat.raw "n-$2.$1"
    check "$1 $2: bytes equal qemu-img's" cmp "$A/n-$2.$1" "$B/n-$2.$1"
    check "$1 $2: qemu-img reads it" "$QEMU_IMG" compare "${S[@]}" --image-opts \
        "$(io "$1" "$A/n-$2.$1")" "driver=raw,file.filename=$A/pat.raw"
done
ALL=encrypt.format=luks,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha1,encrypt.iter-time=10,cluster_size=4k,preallocation=metadata
# The Formatting line with every option, failing before any PBKDF work.
same "create luks with all options (unknown secret)" -- create -f qcow2 "${S[@]}" -o "$ALL,encrypt.key-secret=nope" c.qcow2 256k
check "qimg converts to luks qcow2 with all options" "$QIMG" convert "${S[@]}" -O qcow2 \
    -o "$ALL,encrypt.key-secret=s" "$A/pat.raw" "$A/c.qcow2"
check "qemu-img reads qimg's luks qcow2" "$QEMU_IMG" compare "${S[@]}" --image-opts \
    "$(io qcow2 "$A/c.qcow2")" "driver=raw,file.filename=$A/pat.raw"
check "qemu-img check of qimg's luks qcow2" "$QEMU_IMG" check "${S[@]}" --image-opts "$(io qcow2 "$A/c.qcow2")"
cp --sparse=always "$A/c.qcow2" "$B/c.qcow2"
same "info of qimg's luks qcow2 (same file)" --filter 'grep -v "^disk size:"' -- info c.qcow2
same "info json of qimg's luks qcow2 (same file)" --filter 'grep -v actual-size' -- info --output=json c.qcow2
same "map of qimg's luks qcow2 (same file)" -- map --output=json "${S[@]}" --image-opts "$(io qcow2 c.qcow2)"
check "qemu-io writes into qimg's image" "$QEMU_IO" "${S[@]}" --image-opts "$(io qcow2 "$A/c.qcow2")" -c 'write -P 0x3c 4k 12k'
check "qimg reads what qemu-io wrote" "$QIMG" convert "${S[@]}" --image-opts "$(io qcow2 "$A/c.qcow2")" -O raw "$A/c.raw"
check "qemu-io sees its pattern through qimg" "$QEMU_IO" -f raw -c 'read -P 0x3c 4k 12k' "$A/c.raw"

same "create -o help" -- create -f qcow2 -o help
ce() { same "create $1" -- create -f qcow2 "${S[@]}" -o "$1" x.qcow2 1M; }
ce encrypt.format=luks
ce encrypt.format=foo
ce encrypt.format=luks,encrypt.key-secret=nope
ce encrypt.cipher-alg=aes-128
ce encrypt.format=aes,encrypt.key-secret=s,encrypt.cipher-alg=aes-128
ce encryption=on
ce encryption=on,encrypt.format=aes,encrypt.key-secret=s
ce encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=foo
ce encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=abc
ce encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=des
same "create legacy encryption=on" -- create -f qcow2 "${S[@]}" -o encryption=on,encrypt.key-secret=s,compat=0.10 e.qcow2 1M
check "legacy encryption=on: bytes equal qemu-img's" cmp "$A/e.qcow2" "$B/e.qcow2"
same "qcow create luks refused" -- create -f qcow "${S[@]}" -o encrypt.format=luks,encrypt.key-secret=s x.qcow 1M
same "qcow create unknown secret" -- create -f qcow -o encrypt.format=aes,encrypt.key-secret=s x2.qcow 1M
same "convert -c with encryption" -- convert -c "${S[@]}" -O qcow2 -o encrypt.format=luks,encrypt.key-secret=s pat.raw x3.qcow2

# LUKS measure benchmarks PBKDF2 too: qimg against qemu-img's answers for
# these exact options (recorded from qemu-img 7.2.22).
eq "measure luks aes-128 of a file" "$("$QIMG" measure -O qcow2 "${S[@]}" \
    -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,encrypt.cipher-alg=aes-128 "$A/pat.raw" 2>&1)" \
    "$(printf 'required size: 1900544\nfully allocated size: 2490368')"
same "measure luks unknown cipher" -- measure -O qcow2 "${S[@]}" -o encrypt.format=luks,encrypt.key-secret=s,encrypt.cipher-alg=foo --size 1M
same "measure luks without secret" -- measure -O qcow2 -o encrypt.format=luks --size 1M
same "measure aes" -- measure -O qcow2 -o encrypt.format=aes --size 1M

# ============================================================== amend of LUKS key slots

N=(--object secret,id=n,data=new)
for d in "$A" "$B"; do cp --sparse=always "$W/l.qcow2" "$d/am.qcow2"; done
same "amend bad keyslot" -- amend "${S[@]}" --image-opts "$(io qcow2 am.qcow2)" -o encrypt.state=inactive,encrypt.keyslot=9
same "amend erase without selector" -- amend "${S[@]}" --image-opts "$(io qcow2 am.qcow2)" -o encrypt.state=inactive
same "amend overwrite active slot" -- amend "${S[@]}" "${N[@]}" --image-opts "$(io qcow2 am.qcow2)" \
    -o encrypt.state=active,encrypt.new-secret=n,encrypt.keyslot=0
same "amend erase the only slot" -- amend "${S[@]}" --image-opts "$(io qcow2 am.qcow2)" -o encrypt.state=inactive,encrypt.keyslot=0
same "amend without the key" -- amend -o encrypt.state=inactive,encrypt.keyslot=0 am.qcow2
same "amend an aes image" -- amend "${S[@]}" --image-opts "$(io qcow2 a.qcow2)" -o encrypt.state=inactive,encrypt.keyslot=3
same "amend a plain image" -- amend -o encrypt.state=inactive,encrypt.keyslot=3 p.qcow2
check "qimg amend adds a key slot" "$QIMG" amend "${S[@]}" "${N[@]}" --image-opts "$(io qcow2 "$A/am.qcow2")" \
    -o encrypt.state=active,encrypt.new-secret=n,encrypt.iter-time=10
check "qimg amend erases the old key" "$QIMG" amend "${S[@]}" --image-opts "$(io qcow2 "$A/am.qcow2")" \
    -o encrypt.state=inactive,encrypt.old-secret=s
check_fail "qemu-img: old key no longer opens" "$QEMU_IMG" check "${S[@]}" --image-opts "$(io qcow2 "$A/am.qcow2")"
check "qemu-img: new key opens, data kept" "$QEMU_IMG" compare "${N[@]}" --image-opts \
    "driver=qcow2,encrypt.key-secret=n,file.filename=$A/am.qcow2" "driver=raw,file.filename=$A/l.qcow2.raw"
check "qemu-img check after amend" "$QEMU_IMG" check "${N[@]}" --image-opts "driver=qcow2,encrypt.key-secret=n,file.filename=$A/am.qcow2"

# ============================================================== hostile headers

poke() { printf "$(printf '%s' "$3" | sed 's/../\\x&/g')" |
    dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
# The crypto header extension is the first one in qemu's images: at 112.
for spec in "far:120:000000007fff0000" "huge:128:ffffffffffffffff" "short:128:0000000000000064" \
            "extlen:116:00000008" "aeswithext:32:00000001"; do
    n=${spec%%:*}; rest=${spec#*:}; off=${rest%%:*}; hex=${rest#*:}
    for d in "$A" "$B"; do cp --sparse=always "$W/l.qcow2" "$d/h-$n.qcow2"; poke "$d/h-$n.qcow2" "$off" "$hex"; done
    same "hostile $n: info" --filter 'grep -v "^disk size:"' -- info "h-$n.qcow2"
    same "hostile $n: open with key" -- convert "${S[@]}" --image-opts "$(io qcow2 "h-$n.qcow2")" -O raw o.raw
done

# ============================================================== Serpent and Twofish (libnettle) in qcow2
# Each cipher, mode and IV generator at least once (tests/interop/luks.sh
# runs the whole product on the luks format): qimg makes the qcow2, qemu-io
# reads qimg's data and writes its own, qemu-img checks it, qimg reads it
# all back; then a qemu-made image read by qimg, with the same info.
# qimg's PBKDF benchmark is replaced by a fixed rate (test only).
export QIMG_TEST_PBKDF_RATE=1000
# A qimg built without libnettle (meson -Dnettle=disabled) refuses these
# ciphers with qemu's message, and the rest of this part is skipped.
if ! nettle_out=$("$QIMG" create -q -f qcow2 "${S[@]}" -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,encrypt.cipher-alg=serpent-128 "$A/probe.qcow2" 64k 2>&1); then
    eq "qimg without nettle refuses serpent" "$nettle_out" "$(basename "$QIMG"): $A/probe.qcow2: Unsupported cipher algorithm serpent-128"
    unset QIMG_TEST_PBKDF_RATE
    exit 0
fi
qio_clean() { # qemu-io with no error and no pattern mismatch
    local out
    out=$("$QEMU_IO" "$@" 2>&1) && ! grep -q -e Pattern -e '^qemu-io:' <<<"$out"
}
spec_opts() { # alg:mode:ivgen:hash -> encrypt.* options
    local IFS=:; set -- $1
    printf 'encrypt.cipher-alg=%s,encrypt.cipher-mode=%s,encrypt.ivgen-alg=%s,encrypt.hash-alg=%s' "$1" "$2" "$3" "$4"
    [ "$3" = essiv ] && printf ',encrypt.ivgen-hash-alg=sha256'
    return 0
}
cp "$A/pat.raw" "$A/pat-want.raw"
"$QEMU_IO" -f raw -c 'write -P 0xc3 600k 20k' "$A/pat-want.raw" >/dev/null
for spec in serpent-128:xts:plain64:sha256 serpent-192:xts:essiv:sha1 serpent-256:cbc:plain:sha512 \
            serpent-256:ecb:plain64:sha256 twofish-128:cbc:essiv:ripemd160 twofish-192:xts:plain:sha256 \
            twofish-256:xts:plain64:md5 twofish-128:ecb:plain64:sha256; do
    n=${spec//:/-}; f="$A/n-$n.qcow2"
    check "$spec qcow2: qimg makes the image" "$QIMG" convert "${S[@]}" -O qcow2 \
        -o "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,$(spec_opts "$spec")" "$A/pat.raw" "$f" || continue
    check "$spec qcow2: qemu-io reads qimg's data, writes" qio_clean "${S[@]}" --image-opts "$(io qcow2 "$f")" \
        -c 'read -P 0x77 8k 300k' -c 'read -P 0x12 513k 1k' -c 'read -P 0x99 1020k 4k' -c 'write -P 0xc3 600k 20k'
    check "$spec qcow2: qemu-img check" "$QEMU_IMG" check "${S[@]}" --image-opts "$(io qcow2 "$f")"
    check "$spec qcow2: qimg reads all of it back" "$QIMG" convert "${S[@]}" --image-opts "$(io qcow2 "$f")" -O raw "$A/n-$n.raw"
    check "$spec qcow2: the data qemu expects" cmp "$A/n-$n.raw" "$A/pat-want.raw"
    rm -f "$A/n-$n.raw"
done
spec=twofish-256:cbc:essiv:sha1
for i in 1 2 3 4; do
    "$QEMU_IMG" create -q -f qcow2 "${S[@]}" -o "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10,$(spec_opts $spec)" \
        "$B/tf.qcow2" 1M && break
done
check "$spec qcow2: qemu-io fills qemu's image" qio_clean "${S[@]}" --image-opts "$(io qcow2 "$B/tf.qcow2")" \
    -c 'write -P 0x31 0 4k' -c 'write -P 0x32 300k 100k'
cp --sparse=always "$B/tf.qcow2" "$A/tf.qcow2"
same "$spec qcow2: info" --filter 'grep -v "^disk size:"' -- info tf.qcow2
same "$spec qcow2: info json" --filter 'grep -v actual-size' -- info --output=json tf.qcow2
same "$spec qcow2: check" -- check "${S[@]}" --image-opts "$(io qcow2 tf.qcow2)"
same "$spec qcow2: convert qemu's image to raw" -- convert "${S[@]}" --image-opts "$(io qcow2 tf.qcow2)" -O raw tf.raw
same_image "$spec qcow2: data of qemu's image" tf.raw
unset QIMG_TEST_PBKDF_RATE
