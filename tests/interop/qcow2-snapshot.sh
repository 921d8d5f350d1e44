#!/usr/bin/env bash
# Interop: qcow2 internal snapshots (listing of images snapshotted by the real
# qemu-img, `convert -l` is not yet covered) and block status of images with
# metadata preallocation (qemu's BDRV_BLOCK_RECURSE heuristic), each compared
# with the real qemu-img 7.2.
. "$(dirname "$0")/lib.sh"

# ============================================== metadata preallocation map

mk_prealloc() {
    "$QEMU_IMG" create -q -f qcow2 -o preallocation=metadata pm.qcow2 4M &&
    "$QEMU_IO" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 128k' pm.qcow2 >/dev/null
}
fixture mk_prealloc
same "map json of a preallocation=metadata image" -- map --output=json pm.qcow2
same "map human of a preallocation=metadata image" -- map pm.qcow2
same "convert -O raw of a preallocation=metadata image" -- convert -O raw pm.qcow2 pm.raw
same_image "preallocation=metadata: converted raw" pm.raw

# ================================================== snapshots made by qemu

filter_date='sed -E "s/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}/DATE/"'
mk_snaps() {
    "$QEMU_IMG" create -q -f qcow2 sn.qcow2 1M &&
    "$QEMU_IO" -c 'write -P 0xaa 0 64k' sn.qcow2 >/dev/null &&
    "$QEMU_IMG" snapshot -c snap1 sn.qcow2 &&
    "$QEMU_IO" -c 'write -P 0xbb 0 64k' sn.qcow2 >/dev/null &&
    "$QEMU_IMG" snapshot -c snap2 sn.qcow2
}
fixture mk_snaps
same "snapshot -l of qemu-made snapshots" --filter "$filter_date" -- snapshot -l sn.qcow2
same "info of an image with snapshots" --filter "$filter_date" -- info sn.qcow2
same "check of an image with snapshots" -- check sn.qcow2
