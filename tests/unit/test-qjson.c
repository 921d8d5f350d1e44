/* qemu-exact JSON: key order (QDict hash buckets), pretty/compact bytes,
 * string escapes and the human "Format specific information" dump.
 *
 * The *_out and human fixtures below are verbatim output of the real
 * qemu-img 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18), captured with:
 *   qemu-img info --output=json r.raw                 (raw, 1M)
 *   qemu-img info [--output=json] e.qcow2             (qcow2, LUKS-encrypted,
 *       backing file, bitmap b0; made with --object secret + encrypt.format=luks)
 *   qemu-img info [--output=json] bm2.qcow2           (bitmaps b0, b1 --disable)
 *   qemu-img info --output=json o.qcow2               (backing + 2 snapshots)
 *   qemu-img info [--output=json] x.vmdk / l.luks / so.vmdk (streamOptimized)
 *   qemu-img info [--output=json] df.qcow2            (data_file, data_file_raw)
 *   qemu-img info --output=json --backing-chain o.qcow2
 *   qemu-img check --output=json {base,c,c2}.qcow2    (c: refcounts damaged,
 *       c2: the same repaired with -r all)
 *   qemu-img check --output=json cc.qcow2             (convert -c of a
 *       fragmented image, then partly rewritten)
 *   qemu-img measure --output=json -O qcow2 {--size 1G, bm.qcow2}
 * The *_in inputs hold the same data with every object's keys in QAPI
 * declaration order (qapi/block-core.json, qapi/crypto.json), which is the
 * order qemu's output visitor inserts them; the emitter must turn that into
 * qemu's bytes. */
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "util/qjson.h"
#include "util/xalloc.h"

/* raw.json, keys in QAPI declaration order */
static const char raw_json_in[] =
    "{\"filename\":\"r.raw\",\"format\":\"raw\",\"dirty-flag\":false,\"actual-size\":4096,\"virtual-size\":1048576}";
/* real qemu-img output */
static const char raw_json_out[] =
    "{\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"r.raw\",\n"
    "    \"format\": \"raw\",\n"
    "    \"actual-size\": 4096,\n"
    "    \"dirty-flag\": false\n"
    "}";

/* e.json, keys in QAPI declaration order */
static const char e_json_in[] =
    "{\"filename\":\"e.qcow2\",\"format\":\"qcow2\",\"dirty-flag\":false,\"actual-size\":2310144,\"virtual-size\":67108864,\"cluster-size\":65536,\"encrypted\":true,\"backing-filename\":\"base.qcow2\",\"full-backing-filename\":\"base.qcow2\",\"backing-filename-format\":\"qcow2\",\"format-specific\":{\"type\":\"qcow2\",\"data\":{\"compat\":\"1.1\",\"extended-l2\":false,\"lazy-refcounts\":false,\"corrupt\":false,\"refcount-bits\":16,\"encrypt\":{\"format\":\"luks\",\"cipher-alg\":\"aes-256\",\"cipher-mode\":\"xts\",\"ivgen-alg\":\"plain64\",\"hash-alg\":\"sha256\",\"payload-offset\":2068480,\"master-key-iters\":9293,\"uuid\":\"75622998-7e43-4730-a7f1-d0e9afe2fcb7\",\"slots\":[{\"active\":true,\"iters\":33746,\"stripes\":4000,\"key-offset\":4096},{\"active\":false,\"key-offset\":262144},{\"active\":false,\"key-offset\":520192},{\"active\":false,\"key-offset\":778240},{\"active\":false,\"key-offset\":1036288},{\"active\":false,\"key-offset\":1294336},{\"active\":false,\"key-offset\":1552384},{\"active\":false,\"key-offset\":1810432}]},\"bitmaps\":[{\"name\":\"b0\",\"granularity\":65536,\"flags\":[\"auto\"]}],\"compression-type\":\"zlib\"}}}";
/* real qemu-img output */
static const char e_json_out[] =
    "{\n"
    "    \"backing-filename-format\": \"qcow2\",\n"
    "    \"virtual-size\": 67108864,\n"
    "    \"filename\": \"e.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 2310144,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"bitmaps\": [\n"
    "                {\n"
    "                    \"flags\": [\n"
    "                        \"auto\"\n"
    "                    ],\n"
    "                    \"name\": \"b0\",\n"
    "                    \"granularity\": 65536\n"
    "                }\n"
    "            ],\n"
    "            \"refcount-bits\": 16,\n"
    "            \"encrypt\": {\n"
    "                \"ivgen-alg\": \"plain64\",\n"
    "                \"hash-alg\": \"sha256\",\n"
    "                \"cipher-alg\": \"aes-256\",\n"
    "                \"uuid\": \"75622998-7e43-4730-a7f1-d0e9afe2fcb7\",\n"
    "                \"format\": \"luks\",\n"
    "                \"cipher-mode\": \"xts\",\n"
    "                \"slots\": [\n"
    "                    {\n"
    "                        \"active\": true,\n"
    "                        \"iters\": 33746,\n"
    "                        \"key-offset\": 4096,\n"
    "                        \"stripes\": 4000\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 262144\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 520192\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 778240\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1036288\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1294336\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1552384\n"
    "                    },\n"
    "                    {\n"
    "                        \"active\": false,\n"
    "                        \"key-offset\": 1810432\n"
    "                    }\n"
    "                ],\n"
    "                \"payload-offset\": 2068480,\n"
    "                \"master-key-iters\": 9293\n"
    "            },\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"full-backing-filename\": \"base.qcow2\",\n"
    "    \"encrypted\": true,\n"
    "    \"backing-filename\": \"base.qcow2\",\n"
    "    \"dirty-flag\": false\n"
    "}";

/* bm2.json, keys in QAPI declaration order */
static const char bm2_json_in[] =
    "{\"filename\":\"bm2.qcow2\",\"format\":\"qcow2\",\"dirty-flag\":false,\"actual-size\":225280,\"virtual-size\":67108864,\"cluster-size\":65536,\"format-specific\":{\"type\":\"qcow2\",\"data\":{\"compat\":\"1.1\",\"extended-l2\":false,\"lazy-refcounts\":false,\"corrupt\":false,\"refcount-bits\":16,\"bitmaps\":[{\"name\":\"b0\",\"granularity\":65536,\"flags\":[\"auto\"]},{\"name\":\"b1\",\"granularity\":131072,\"flags\":[]}],\"compression-type\":\"zlib\"}}}";
/* real qemu-img output */
static const char bm2_json_out[] =
    "{\n"
    "    \"virtual-size\": 67108864,\n"
    "    \"filename\": \"bm2.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 225280,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"bitmaps\": [\n"
    "                {\n"
    "                    \"flags\": [\n"
    "                        \"auto\"\n"
    "                    ],\n"
    "                    \"name\": \"b0\",\n"
    "                    \"granularity\": 65536\n"
    "                },\n"
    "                {\n"
    "                    \"flags\": [\n"
    "                    ],\n"
    "                    \"name\": \"b1\",\n"
    "                    \"granularity\": 131072\n"
    "                }\n"
    "            ],\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

/* snap.json, keys in QAPI declaration order */
static const char snap_json_in[] =
    "{\"filename\":\"o.qcow2\",\"format\":\"qcow2\",\"dirty-flag\":false,\"actual-size\":217088,\"virtual-size\":67108864,\"cluster-size\":65536,\"backing-filename\":\"base.qcow2\",\"full-backing-filename\":\"base.qcow2\",\"backing-filename-format\":\"qcow2\",\"snapshots\":[{\"id\":\"1\",\"name\":\"snap1\",\"vm-state-size\":0,\"date-sec\":1795836313,\"date-nsec\":475071000,\"vm-clock-sec\":0,\"vm-clock-nsec\":0,\"icount\":0},{\"id\":\"2\",\"name\":\"snap2\",\"vm-state-size\":0,\"date-sec\":1795836313,\"date-nsec\":510230000,\"vm-clock-sec\":0,\"vm-clock-nsec\":0,\"icount\":0}],\"format-specific\":{\"type\":\"qcow2\",\"data\":{\"compat\":\"1.1\",\"extended-l2\":false,\"lazy-refcounts\":false,\"corrupt\":false,\"refcount-bits\":16,\"compression-type\":\"zlib\"}}}";
/* real qemu-img output */
static const char snap_json_out[] =
    "{\n"
    "    \"backing-filename-format\": \"qcow2\",\n"
    "    \"snapshots\": [\n"
    "        {\n"
    "            \"icount\": 0,\n"
    "            \"vm-clock-nsec\": 0,\n"
    "            \"name\": \"snap1\",\n"
    "            \"date-sec\": 1795836313,\n"
    "            \"date-nsec\": 475071000,\n"
    "            \"vm-clock-sec\": 0,\n"
    "            \"id\": \"1\",\n"
    "            \"vm-state-size\": 0\n"
    "        },\n"
    "        {\n"
    "            \"icount\": 0,\n"
    "            \"vm-clock-nsec\": 0,\n"
    "            \"name\": \"snap2\",\n"
    "            \"date-sec\": 1795836313,\n"
    "            \"date-nsec\": 510230000,\n"
    "            \"vm-clock-sec\": 0,\n"
    "            \"id\": \"2\",\n"
    "            \"vm-state-size\": 0\n"
    "        }\n"
    "    ],\n"
    "    \"virtual-size\": 67108864,\n"
    "    \"filename\": \"o.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 217088,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"full-backing-filename\": \"base.qcow2\",\n"
    "    \"backing-filename\": \"base.qcow2\",\n"
    "    \"dirty-flag\": false\n"
    "}";

/* vmdk.json, keys in QAPI declaration order */
static const char vmdk_json_in[] =
    "{\"filename\":\"x.vmdk\",\"format\":\"vmdk\",\"dirty-flag\":false,\"actual-size\":12288,\"virtual-size\":10485760,\"cluster-size\":65536,\"format-specific\":{\"type\":\"vmdk\",\"data\":{\"create-type\":\"monolithicSparse\",\"cid\":442450570,\"parent-cid\":4294967295,\"extents\":[{\"filename\":\"x.vmdk\",\"format\":\"\",\"virtual-size\":10485760,\"cluster-size\":65536}]}}}";
/* real qemu-img output */
static const char vmdk_json_out[] =
    "{\n"
    "    \"virtual-size\": 10485760,\n"
    "    \"filename\": \"x.vmdk\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"vmdk\",\n"
    "    \"actual-size\": 12288,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"vmdk\",\n"
    "        \"data\": {\n"
    "            \"cid\": 442450570,\n"
    "            \"parent-cid\": 4294967295,\n"
    "            \"create-type\": \"monolithicSparse\",\n"
    "            \"extents\": [\n"
    "                {\n"
    "                    \"virtual-size\": 10485760,\n"
    "                    \"filename\": \"x.vmdk\",\n"
    "                    \"cluster-size\": 65536,\n"
    "                    \"format\": \"\"\n"
    "                }\n"
    "            ]\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

/* so.json, keys in QAPI declaration order */
static const char so_json_in[] =
    "{\"filename\":\"so.vmdk\",\"format\":\"vmdk\",\"dirty-flag\":false,\"actual-size\":12288,\"virtual-size\":10485760,\"cluster-size\":65536,\"format-specific\":{\"type\":\"vmdk\",\"data\":{\"create-type\":\"streamOptimized\",\"cid\":229025057,\"parent-cid\":4294967295,\"extents\":[{\"filename\":\"so.vmdk\",\"format\":\"\",\"virtual-size\":10485760,\"cluster-size\":65536,\"compressed\":true}]}}}";
/* real qemu-img output */
static const char so_json_out[] =
    "{\n"
    "    \"virtual-size\": 10485760,\n"
    "    \"filename\": \"so.vmdk\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"vmdk\",\n"
    "    \"actual-size\": 12288,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"vmdk\",\n"
    "        \"data\": {\n"
    "            \"cid\": 229025057,\n"
    "            \"parent-cid\": 4294967295,\n"
    "            \"create-type\": \"streamOptimized\",\n"
    "            \"extents\": [\n"
    "                {\n"
    "                    \"compressed\": true,\n"
    "                    \"virtual-size\": 10485760,\n"
    "                    \"filename\": \"so.vmdk\",\n"
    "                    \"cluster-size\": 65536,\n"
    "                    \"format\": \"\"\n"
    "                }\n"
    "            ]\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

/* df.json, keys in QAPI declaration order */
static const char df_json_in[] =
    "{\"filename\":\"df.qcow2\",\"format\":\"qcow2\",\"dirty-flag\":false,\"actual-size\":266240,\"virtual-size\":1048576,\"cluster-size\":65536,\"format-specific\":{\"type\":\"qcow2\",\"data\":{\"compat\":\"1.1\",\"data-file\":\"d.raw\",\"data-file-raw\":true,\"extended-l2\":false,\"lazy-refcounts\":false,\"corrupt\":false,\"refcount-bits\":16,\"compression-type\":\"zlib\"}}}";
/* real qemu-img output */
static const char df_json_out[] =
    "{\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"df.qcow2\",\n"
    "    \"cluster-size\": 65536,\n"
    "    \"format\": \"qcow2\",\n"
    "    \"actual-size\": 266240,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"qcow2\",\n"
    "        \"data\": {\n"
    "            \"compat\": \"1.1\",\n"
    "            \"compression-type\": \"zlib\",\n"
    "            \"lazy-refcounts\": false,\n"
    "            \"refcount-bits\": 16,\n"
    "            \"data-file\": \"d.raw\",\n"
    "            \"data-file-raw\": true,\n"
    "            \"corrupt\": false,\n"
    "            \"extended-l2\": false\n"
    "        }\n"
    "    },\n"
    "    \"dirty-flag\": false\n"
    "}";

/* luks.json, keys in QAPI declaration order */
static const char luks_json_in[] =
    "{\"filename\":\"l.luks\",\"format\":\"luks\",\"dirty-flag\":false,\"actual-size\":262144,\"virtual-size\":1048576,\"encrypted\":true,\"format-specific\":{\"type\":\"luks\",\"data\":{\"cipher-alg\":\"aes-256\",\"cipher-mode\":\"xts\",\"ivgen-alg\":\"plain64\",\"hash-alg\":\"sha256\",\"payload-offset\":2068480,\"master-key-iters\":9157,\"uuid\":\"af011d5d-5fe6-4fef-9bd4-0160a8df232e\",\"slots\":[{\"active\":true,\"iters\":37925,\"stripes\":4000,\"key-offset\":4096},{\"active\":false,\"key-offset\":262144},{\"active\":false,\"key-offset\":520192},{\"active\":false,\"key-offset\":778240},{\"active\":false,\"key-offset\":1036288},{\"active\":false,\"key-offset\":1294336},{\"active\":false,\"key-offset\":1552384},{\"active\":false,\"key-offset\":1810432}]}}}";
/* real qemu-img output */
static const char luks_json_out[] =
    "{\n"
    "    \"virtual-size\": 1048576,\n"
    "    \"filename\": \"l.luks\",\n"
    "    \"format\": \"luks\",\n"
    "    \"actual-size\": 262144,\n"
    "    \"format-specific\": {\n"
    "        \"type\": \"luks\",\n"
    "        \"data\": {\n"
    "            \"ivgen-alg\": \"plain64\",\n"
    "            \"hash-alg\": \"sha256\",\n"
    "            \"cipher-alg\": \"aes-256\",\n"
    "            \"uuid\": \"af011d5d-5fe6-4fef-9bd4-0160a8df232e\",\n"
    "            \"cipher-mode\": \"xts\",\n"
    "            \"slots\": [\n"
    "                {\n"
    "                    \"active\": true,\n"
    "                    \"iters\": 37925,\n"
    "                    \"key-offset\": 4096,\n"
    "                    \"stripes\": 4000\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 262144\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 520192\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 778240\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 1036288\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 1294336\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 1552384\n"
    "                },\n"
    "                {\n"
    "                    \"active\": false,\n"
    "                    \"key-offset\": 1810432\n"
    "                }\n"
    "            ],\n"
    "            \"payload-offset\": 2068480,\n"
    "            \"master-key-iters\": 9157\n"
    "        }\n"
    "    },\n"
    "    \"encrypted\": true,\n"
    "    \"dirty-flag\": false\n"
    "}";

/* chain.json, keys in QAPI declaration order */
static const char chain_json_in[] =
    "[{\"filename\":\"o.qcow2\",\"format\":\"qcow2\",\"dirty-flag\":false,\"actual-size\":217088,\"virtual-size\":67108864,\"cluster-size\":65536,\"backing-filename\":\"base.qcow2\",\"full-backing-filename\":\"base.qcow2\",\"backing-filename-format\":\"qcow2\",\"snapshots\":[{\"id\":\"1\",\"name\":\"snap1\",\"vm-state-size\":0,\"date-sec\":1795836313,\"date-nsec\":475071000,\"vm-clock-sec\":0,\"vm-clock-nsec\":0,\"icount\":0},{\"id\":\"2\",\"name\":\"snap2\",\"vm-state-size\":0,\"date-sec\":1795836313,\"date-nsec\":510230000,\"vm-clock-sec\":0,\"vm-clock-nsec\":0,\"icount\":0}],\"format-specific\":{\"type\":\"qcow2\",\"data\":{\"compat\":\"1.1\",\"extended-l2\":false,\"lazy-refcounts\":false,\"corrupt\":false,\"refcount-bits\":16,\"compression-type\":\"zlib\"}}},{\"filename\":\"base.qcow2\",\"format\":\"qcow2\",\"dirty-flag\":false,\"actual-size\":200704,\"virtual-size\":67108864,\"cluster-size\":65536,\"format-specific\":{\"type\":\"qcow2\",\"data\":{\"compat\":\"1.1\",\"extended-l2\":false,\"lazy-refcounts\":false,\"corrupt\":false,\"refcount-bits\":16,\"compression-type\":\"zlib\"}}}]";
/* real qemu-img output */
static const char chain_json_out[] =
    "[\n"
    "    {\n"
    "        \"backing-filename-format\": \"qcow2\",\n"
    "        \"snapshots\": [\n"
    "            {\n"
    "                \"icount\": 0,\n"
    "                \"vm-clock-nsec\": 0,\n"
    "                \"name\": \"snap1\",\n"
    "                \"date-sec\": 1795836313,\n"
    "                \"date-nsec\": 475071000,\n"
    "                \"vm-clock-sec\": 0,\n"
    "                \"id\": \"1\",\n"
    "                \"vm-state-size\": 0\n"
    "            },\n"
    "            {\n"
    "                \"icount\": 0,\n"
    "                \"vm-clock-nsec\": 0,\n"
    "                \"name\": \"snap2\",\n"
    "                \"date-sec\": 1795836313,\n"
    "                \"date-nsec\": 510230000,\n"
    "                \"vm-clock-sec\": 0,\n"
    "                \"id\": \"2\",\n"
    "                \"vm-state-size\": 0\n"
    "            }\n"
    "        ],\n"
    "        \"virtual-size\": 67108864,\n"
    "        \"filename\": \"o.qcow2\",\n"
    "        \"cluster-size\": 65536,\n"
    "        \"format\": \"qcow2\",\n"
    "        \"actual-size\": 217088,\n"
    "        \"format-specific\": {\n"
    "            \"type\": \"qcow2\",\n"
    "            \"data\": {\n"
    "                \"compat\": \"1.1\",\n"
    "                \"compression-type\": \"zlib\",\n"
    "                \"lazy-refcounts\": false,\n"
    "                \"refcount-bits\": 16,\n"
    "                \"corrupt\": false,\n"
    "                \"extended-l2\": false\n"
    "            }\n"
    "        },\n"
    "        \"full-backing-filename\": \"base.qcow2\",\n"
    "        \"backing-filename\": \"base.qcow2\",\n"
    "        \"dirty-flag\": false\n"
    "    },\n"
    "    {\n"
    "        \"virtual-size\": 67108864,\n"
    "        \"filename\": \"base.qcow2\",\n"
    "        \"cluster-size\": 65536,\n"
    "        \"format\": \"qcow2\",\n"
    "        \"actual-size\": 200704,\n"
    "        \"format-specific\": {\n"
    "            \"type\": \"qcow2\",\n"
    "            \"data\": {\n"
    "                \"compat\": \"1.1\",\n"
    "                \"compression-type\": \"zlib\",\n"
    "                \"lazy-refcounts\": false,\n"
    "                \"refcount-bits\": 16,\n"
    "                \"corrupt\": false,\n"
    "                \"extended-l2\": false\n"
    "            }\n"
    "        },\n"
    "        \"dirty-flag\": false\n"
    "    }\n"
    "]";

/* check0.json, keys in QAPI declaration order */
static const char check0_json_in[] =
    "{\"filename\":\"base.qcow2\",\"format\":\"qcow2\",\"check-errors\":0,\"image-end-offset\":262144,\"total-clusters\":1024}";
/* real qemu-img output */
static const char check0_json_out[] =
    "{\n"
    "    \"image-end-offset\": 262144,\n"
    "    \"total-clusters\": 1024,\n"
    "    \"check-errors\": 0,\n"
    "    \"filename\": \"base.qcow2\",\n"
    "    \"format\": \"qcow2\"\n"
    "}";

/* check1.json, keys in QAPI declaration order */
static const char check1_json_in[] =
    "{\"filename\":\"c.qcow2\",\"format\":\"qcow2\",\"check-errors\":0,\"image-end-offset\":1376256,\"corruptions\":2,\"leaks\":1,\"total-clusters\":1024,\"allocated-clusters\":16}";
/* real qemu-img output */
static const char check1_json_out[] =
    "{\n"
    "    \"image-end-offset\": 1376256,\n"
    "    \"total-clusters\": 1024,\n"
    "    \"corruptions\": 2,\n"
    "    \"check-errors\": 0,\n"
    "    \"leaks\": 1,\n"
    "    \"allocated-clusters\": 16,\n"
    "    \"filename\": \"c.qcow2\",\n"
    "    \"format\": \"qcow2\"\n"
    "}";

/* check2.json, keys in QAPI declaration order */
static const char check2_json_in[] =
    "{\"filename\":\"c2.qcow2\",\"format\":\"qcow2\",\"check-errors\":0,\"image-end-offset\":1507328,\"total-clusters\":1024,\"allocated-clusters\":16}";
/* real qemu-img output */
static const char check2_json_out[] =
    "{\n"
    "    \"image-end-offset\": 1507328,\n"
    "    \"total-clusters\": 1024,\n"
    "    \"check-errors\": 0,\n"
    "    \"allocated-clusters\": 16,\n"
    "    \"filename\": \"c2.qcow2\",\n"
    "    \"format\": \"qcow2\"\n"
    "}";

/* frag.json, keys in QAPI declaration order */
static const char frag_json_in[] =
    "{\"filename\":\"cc.qcow2\",\"format\":\"qcow2\",\"check-errors\":0,\"image-end-offset\":524288,\"total-clusters\":64,\"allocated-clusters\":64,\"fragmented-clusters\":62,\"compressed-clusters\":62}";
/* real qemu-img output */
static const char frag_json_out[] =
    "{\n"
    "    \"image-end-offset\": 524288,\n"
    "    \"compressed-clusters\": 62,\n"
    "    \"total-clusters\": 64,\n"
    "    \"check-errors\": 0,\n"
    "    \"allocated-clusters\": 64,\n"
    "    \"filename\": \"cc.qcow2\",\n"
    "    \"format\": \"qcow2\",\n"
    "    \"fragmented-clusters\": 62\n"
    "}";

/* measure.json, keys in QAPI declaration order */
static const char measure_json_in[] =
    "{\"required\":393216,\"fully-allocated\":1074135040}";
/* real qemu-img output */
static const char measure_json_out[] =
    "{\n"
    "    \"required\": 393216,\n"
    "    \"fully-allocated\": 1074135040\n"
    "}";

/* measure2.json, keys in QAPI declaration order */
static const char measure2_json_in[] =
    "{\"required\":327680,\"fully-allocated\":67436544,\"bitmaps\":196608}";
/* real qemu-img output */
static const char measure2_json_out[] =
    "{\n"
    "    \"bitmaps\": 196608,\n"
    "    \"required\": 327680,\n"
    "    \"fully-allocated\": 67436544\n"
    "}";

/* real qemu-img info "Format specific information" body: e.human */
static const char e_human[] =
    "    compat: 1.1\n"
    "    compression type: zlib\n"
    "    lazy refcounts: false\n"
    "    bitmaps:\n"
    "        [0]:\n"
    "            flags:\n"
    "                [0]: auto\n"
    "            name: b0\n"
    "            granularity: 65536\n"
    "    refcount bits: 16\n"
    "    encrypt:\n"
    "        ivgen alg: plain64\n"
    "        hash alg: sha256\n"
    "        cipher alg: aes-256\n"
    "        uuid: 75622998-7e43-4730-a7f1-d0e9afe2fcb7\n"
    "        format: luks\n"
    "        cipher mode: xts\n"
    "        slots:\n"
    "            [0]:\n"
    "                active: true\n"
    "                iters: 33746\n"
    "                key offset: 4096\n"
    "                stripes: 4000\n"
    "            [1]:\n"
    "                active: false\n"
    "                key offset: 262144\n"
    "            [2]:\n"
    "                active: false\n"
    "                key offset: 520192\n"
    "            [3]:\n"
    "                active: false\n"
    "                key offset: 778240\n"
    "            [4]:\n"
    "                active: false\n"
    "                key offset: 1036288\n"
    "            [5]:\n"
    "                active: false\n"
    "                key offset: 1294336\n"
    "            [6]:\n"
    "                active: false\n"
    "                key offset: 1552384\n"
    "            [7]:\n"
    "                active: false\n"
    "                key offset: 1810432\n"
    "        payload offset: 2068480\n"
    "        master key iters: 9293\n"
    "    corrupt: false\n"
    "    extended l2: false\n"
    "";

/* real qemu-img info "Format specific information" body: bm2.human */
static const char bm2_human[] =
    "    compat: 1.1\n"
    "    compression type: zlib\n"
    "    lazy refcounts: false\n"
    "    bitmaps:\n"
    "        [0]:\n"
    "            flags:\n"
    "                [0]: auto\n"
    "            name: b0\n"
    "            granularity: 65536\n"
    "        [1]:\n"
    "            flags:\n"
    "            name: b1\n"
    "            granularity: 131072\n"
    "    refcount bits: 16\n"
    "    corrupt: false\n"
    "    extended l2: false\n"
    "";

/* real qemu-img info "Format specific information" body: vmdk.human */
static const char vmdk_human[] =
    "    cid: 442450570\n"
    "    parent cid: 4294967295\n"
    "    create type: monolithicSparse\n"
    "    extents:\n"
    "        [0]:\n"
    "            virtual size: 10485760\n"
    "            filename: x.vmdk\n"
    "            cluster size: 65536\n"
    "            format: \n"
    "";

/* real qemu-img info "Format specific information" body: so.human */
static const char so_human[] =
    "    cid: 229025057\n"
    "    parent cid: 4294967295\n"
    "    create type: streamOptimized\n"
    "    extents:\n"
    "        [0]:\n"
    "            compressed: true\n"
    "            virtual size: 10485760\n"
    "            filename: so.vmdk\n"
    "            cluster size: 65536\n"
    "            format: \n"
    "";

/* real qemu-img info "Format specific information" body: df.human */
static const char df_human[] =
    "    compat: 1.1\n"
    "    compression type: zlib\n"
    "    lazy refcounts: false\n"
    "    refcount bits: 16\n"
    "    data file: d.raw\n"
    "    data file raw: true\n"
    "    corrupt: false\n"
    "    extended l2: false\n"
    "";

/* real qemu-img info "Format specific information" body: luks.human */
static const char luks_human[] =
    "    ivgen alg: plain64\n"
    "    hash alg: sha256\n"
    "    cipher alg: aes-256\n"
    "    uuid: af011d5d-5fe6-4fef-9bd4-0160a8df232e\n"
    "    cipher mode: xts\n"
    "    slots:\n"
    "        [0]:\n"
    "            active: true\n"
    "            iters: 37925\n"
    "            key offset: 4096\n"
    "            stripes: 4000\n"
    "        [1]:\n"
    "            active: false\n"
    "            key offset: 262144\n"
    "        [2]:\n"
    "            active: false\n"
    "            key offset: 520192\n"
    "        [3]:\n"
    "            active: false\n"
    "            key offset: 778240\n"
    "        [4]:\n"
    "            active: false\n"
    "            key offset: 1036288\n"
    "        [5]:\n"
    "            active: false\n"
    "            key offset: 1294336\n"
    "        [6]:\n"
    "            active: false\n"
    "            key offset: 1552384\n"
    "        [7]:\n"
    "            active: false\n"
    "            key offset: 1810432\n"
    "    payload offset: 2068480\n"
    "    master key iters: 9157\n"
    "";

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    if (!v)
        printf("# fixture does not parse: %s (line %d)\n", je.text, je.line);
    return v;
}

static void pretty_is(const char *in, const char *want, const char *name)
{
    json_t *v = load(in);
    struct strbuf sb = STRBUF_INIT;

    qjson_pretty(&sb, v);
    is_str(strbuf_str(&sb), want, "pretty: %s", name);
    strbuf_release(&sb);
    json_decref(v);
}

static void human_is(const char *in, const char *want, const char *name)
{
    json_t *v = load(in);
    json_t *data = json_object_get(json_object_get(v, "format-specific"), "data");
    struct strbuf sb = STRBUF_INIT;

    ok(data != NULL, "%s has format-specific data", name);
    qjson_human(&sb, data, 1);
    is_str(strbuf_str(&sb), want, "human: %s", name);
    strbuf_release(&sb);
    json_decref(v);
}

static void order_is(json_t *obj, const char *const *want, size_t nwant, const char *name)
{
    size_t n = 0;
    const char **keys = qjson_key_order(obj, &n);
    struct strbuf got = STRBUF_INIT, exp = STRBUF_INIT;

    for (size_t i = 0; i < n; i++)
        strbuf_addf(&got, "%s%s", i ? " " : "", keys[i]);
    for (size_t i = 0; i < nwant; i++)
        strbuf_addf(&exp, "%s%s", i ? " " : "", want[i]);
    is_str(strbuf_str(&got), strbuf_str(&exp), "key order: %s", name);
    free(keys);
    strbuf_release(&got);
    strbuf_release(&exp);
}

/* An object with the given keys inserted in this order, values 0..n-1. */
static json_t *obj_of(const char *const *keys, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; i < n; i++)
        json_object_set_new(o, keys[i], json_integer((json_int_t)i));
    return o;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* strbuf and xalloc underlie every emitter above. */
static void strbuf_tests(void)
{
    struct strbuf sb = STRBUF_INIT;

    is_str(strbuf_str(&sb), "", "empty strbuf reads as \"\"");
    strbuf_puts(&sb, "ab");
    strbuf_putc(&sb, 'c');
    strbuf_add(&sb, "dxx", 1);
    strbuf_addf(&sb, "-%d-%s", 42, "z");
    strbuf_addchars(&sb, ' ', 3);
    is_str(strbuf_str(&sb), "abcd-42-z   ", "strbuf appends");
    is_uint(sb.len, 12, "strbuf length");
    for (int i = 0; i < 1000; i++)
        strbuf_addf(&sb, "%04d", i);
    is_uint(sb.len, 12 + 4000, "strbuf grows");
    ok(strncmp(sb.buf + 12 + 4 * 999, "0999", 4) == 0 && sb.buf[sb.len] == '\0', "grown contents and terminator");
    strbuf_reset(&sb);
    is_str(strbuf_str(&sb), "", "reset empties");
    strbuf_puts(&sb, "keep");
    char *s = strbuf_detach(&sb);
    is_str(s, "keep", "detach hands over the string");
    ok(sb.buf == NULL && sb.len == 0, "detach re-inits");
    free(s);
    s = strbuf_detach(&sb);
    is_str(s, "", "detach of an empty buffer gives \"\"");
    free(s);
    strbuf_release(&sb);
    strbuf_release(NULL);

    char *a = xasprintf("%s=%u", "k", 7u);
    is_str(a, "k=7", "xasprintf");
    free(a);
    a = xstrndup("abcdef", 3);
    is_str(a, "abc", "xstrndup");
    free(a);
    void *z = xmalloc(0);
    ok(z != NULL, "xmalloc(0) is not NULL");
    free(z);
    int *c = xcalloc(4, sizeof(int));
    ok(c[0] == 0 && c[3] == 0, "xcalloc zeroes");
    c = xreallocarray(c, 8, sizeof(int));
    c[7] = 1;
    ok(c[0] == 0 && c[7] == 1, "xreallocarray keeps contents");
    free(c);
}

int main(void)
{
    /* --- the hash: buckets cross-checked by the real orders below --- */
    is_uint(qjson_qdict_bucket("driver"), 239, "bucket(driver)");
    is_uint(qjson_qdict_bucket("filename"), 313, "bucket(filename)");
    is_uint(qjson_qdict_bucket("virtual-size"), 309, "bucket(virtual-size)");
    is_uint(qjson_qdict_bucket(""), 57, "bucket(\"\")");
    is_uint(qjson_qdict_bucket("compat"), qjson_qdict_bucket("compress"), "compat and compress share a bucket");
    ok(qjson_qdict_bucket("\xff\xfe\xfd") < 512, "high bytes hash into range");

    /* --- whole-structure key orders (QAPI order in, qemu order out) --- */
    {
        static const char *const in[] = { "filename", "format", "dirty-flag", "actual-size", "virtual-size" };
        static const char *const want[] = { "virtual-size", "filename", "format", "actual-size", "dirty-flag" };
        json_t *o = obj_of(in, N(in));
        order_is(o, want, N(want), "ImageInfo of a raw image");
        json_decref(o);
    }
    {
        static const char *const in[] = {
            "filename", "format", "dirty-flag", "actual-size", "virtual-size", "cluster-size",
            "encrypted", "compressed", "backing-filename", "full-backing-filename",
            "backing-filename-format", "snapshots", "backing-image", "format-specific" };
        /* Every key but backing-image (which qemu-img never prints) was seen
         * in this relative order in the real outputs below. */
        static const char *const want[] = {
            "backing-image", "compressed", "backing-filename-format", "snapshots",
            "virtual-size", "filename", "cluster-size", "format", "actual-size",
            "format-specific", "full-backing-filename", "encrypted", "backing-filename",
            "dirty-flag" };
        json_t *o = obj_of(in, N(in));
        order_is(o, want, N(want), "ImageInfo, every field");
        json_decref(o);
    }
    {
        static const char *const in[] = {
            "filename", "format", "check-errors", "image-end-offset", "corruptions", "leaks",
            "corruptions-fixed", "leaks-fixed", "total-clusters", "allocated-clusters",
            "fragmented-clusters", "compressed-clusters" };
        /* the union of the real check0/check1/check2/frag outputs below */
        static const char *const want[] = {
            "image-end-offset", "compressed-clusters", "total-clusters", "corruptions",
            "corruptions-fixed", "check-errors", "leaks", "leaks-fixed",
            "allocated-clusters", "filename", "format", "fragmented-clusters" };
        json_t *o = obj_of(in, N(in));
        order_is(o, want, N(want), "ImageCheck, every field");
        json_decref(o);
    }
    {
        static const char *const in[] = {
            "compat", "data-file", "data-file-raw", "extended-l2", "lazy-refcounts", "corrupt",
            "refcount-bits", "encrypt", "bitmaps", "compression-type" };
        /* the union of the real e/bm2/df outputs below */
        static const char *const want[] = {
            "compat", "compression-type", "lazy-refcounts", "bitmaps", "refcount-bits",
            "data-file", "encrypt", "data-file-raw", "corrupt", "extended-l2" };
        json_t *o = obj_of(in, N(in));
        order_is(o, want, N(want), "ImageInfoSpecificQCow2, every field");
        json_decref(o);
    }

    /* --- within one bucket the newest key comes first --- */
    {
        static const char *const in[] = { "compress", "zz", "compat" };
        static const char *const want1[] = { "compat", "compress", "zz" };
        static const char *const in2[] = { "compat", "zz", "compress" };
        static const char *const want2[] = { "compress", "compat", "zz" };
        ok(qjson_qdict_bucket("zz") > qjson_qdict_bucket("compat"), "zz sorts after compat's bucket");
        json_t *o = obj_of(in, N(in));
        order_is(o, want1, N(want1), "same bucket, compat inserted last");
        /* replacing a value keeps the entry where it was */
        json_object_set_new(o, "compress", json_true());
        order_is(o, want1, N(want1), "replacing a value keeps its place");
        /* deleting and re-adding makes it the newest */
        json_object_del(o, "compress");
        json_object_set_new(o, "compress", json_false());
        order_is(o, want2, N(want2), "re-added key is newest in its bucket");
        json_decref(o);
        o = obj_of(in2, N(in2));
        order_is(o, want2, N(want2), "same bucket, compress inserted last");
        json_decref(o);
    }
    {
        json_t *o = json_object();
        size_t n = 99;
        const char **k = qjson_key_order(o, &n);
        is_uint(n, 0, "empty object has no keys");
        ok(k != NULL, "empty object still gives a freeable array");
        free(k);
        json_decref(o);
    }

    /* --- byte-exact pretty output against real qemu-img --- */
    pretty_is(raw_json_in, raw_json_out, "info raw");
    pretty_is(e_json_in, e_json_out, "info qcow2 (luks, backing, bitmap)");
    pretty_is(bm2_json_in, bm2_json_out, "info qcow2 (two bitmaps, empty flags list)");
    pretty_is(snap_json_in, snap_json_out, "info qcow2 (snapshots)");
    pretty_is(vmdk_json_in, vmdk_json_out, "info vmdk");
    pretty_is(so_json_in, so_json_out, "info vmdk streamOptimized (compressed extent)");
    pretty_is(df_json_in, df_json_out, "info qcow2 with data file");
    pretty_is(luks_json_in, luks_json_out, "info luks");
    pretty_is(chain_json_in, chain_json_out, "info --backing-chain (top-level list)");
    pretty_is(check0_json_in, check0_json_out, "check clean");
    pretty_is(check1_json_in, check1_json_out, "check with leaks and corruptions");
    pretty_is(check2_json_in, check2_json_out, "check -r all");
    pretty_is(frag_json_in, frag_json_out, "check with compressed and fragmented clusters");
    pretty_is(measure_json_in, measure_json_out, "measure --size");
    pretty_is(measure2_json_in, measure2_json_out, "measure with bitmaps");

    /* --- human dump against real qemu-img info --- */
    human_is(e_json_in, e_human, "qcow2 (luks, bitmap)");
    human_is(bm2_json_in, bm2_human, "qcow2 (two bitmaps)");
    human_is(vmdk_json_in, vmdk_human, "vmdk (empty string value keeps its space)");
    human_is(so_json_in, so_human, "vmdk streamOptimized");
    human_is(df_json_in, df_human, "qcow2 with data file");
    human_is(luks_json_in, luks_human, "luks");

    /* --- strings: real info --output=json of a file named with these bytes --- */
    {
        static const char name[] =
            "we\"ir\\d\tn\001\177\b\f\r\n\303\251\360\237\230\200\377\300\200"
            "\355\240\200\357\277\276\340\200\257\364\220\200\200\303.raw";
        static const char want[] =
            "{\n"
            "    \"virtual-size\": 1024,\n"
            "    \"filename\": \"we\\\"ir\\\\d\\tn\\u0001\\u007F\\b\\f\\r\\n\\u00E9\\uD83D\\uDE00"
            "\\uFFFD\\u0000\\uFFFD\\uFFFD\\uFFFD\\uFFFD\\uFFFD.raw\",\n"
            "    \"format\": \"raw\",\n"
            "    \"actual-size\": 4096,\n"
            "    \"dirty-flag\": false\n"
            "}";
        json_t *o = json_object();
        struct strbuf sb = STRBUF_INIT;

        /* invalid UTF-8 needs the _nocheck constructor */
        json_object_set_new(o, "filename", json_string_nocheck(name));
        json_object_set_new(o, "format", json_string("raw"));
        json_object_set_new(o, "dirty-flag", json_false());
        json_object_set_new(o, "actual-size", json_integer(4096));
        json_object_set_new(o, "virtual-size", json_integer(1024));
        qjson_pretty(&sb, o);
        is_str(strbuf_str(&sb), want, "escapes, surrogate pairs, U+FFFD for bad UTF-8, C0 80 as U+0000");
        strbuf_release(&sb);
        json_decref(o);
    }
    {
        /* a multi-byte sequence cut short by the end of the string */
        json_t *s = json_string_nocheck("a\342\202");
        struct strbuf sb = STRBUF_INIT;
        qjson_pretty(&sb, s);
        is_str(strbuf_str(&sb), "\"a\\uFFFD\"", "truncated sequence at the end is one U+FFFD");
        strbuf_release(&sb);
        json_decref(s);
    }

    /* --- compact output: real "image: json:{...}" of
     *     qemu-img info 'json:{"driver":"raw","offset":512,"size":1024,
     *                         "file":{"driver":"file","filename":"r.raw"}}' --- */
    {
        json_t *v = load("{\"driver\":\"raw\",\"offset\":512,\"size\":1024,"
                         "\"file\":{\"driver\":\"file\",\"filename\":\"r.raw\"}}");
        struct strbuf sb = STRBUF_INIT;
        qjson_compact(&sb, v);
        is_str(strbuf_str(&sb),
               "{\"offset\": 512, \"driver\": \"raw\", \"size\": 1024, "
               "\"file\": {\"driver\": \"file\", \"filename\": \"r.raw\"}}",
               "compact json: filename");
        strbuf_release(&sb);
        json_decref(v);
        v = load("[1, [], {}, [true, null], -5, 0.5]");
        qjson_compact(&sb, v);
        is_str(strbuf_str(&sb), "[1, [], {}, [true, null], -5, 0.5]", "compact containers and scalars");
        strbuf_release(&sb);
        json_decref(v);
    }

    /* --- shapes qemu's writer gives small values --- */
    {
        static const struct { const char *in, *want; } cases[] = {
            { "{}", "{\n}" },
            { "[]", "[\n]" },
            { "{\"a\":{}}", "{\n    \"a\": {\n    }\n}" },
            { "[[],{}]", "[\n    [\n    ],\n    {\n    }\n]" },
            { "null", "null" },
            { "true", "true" },
            { "-9223372036854775808", "-9223372036854775808" },
            { "0.1", "0.10000000000000001" },
            { "1e300", "1.0000000000000001e+300" },
            { "2.5", "2.5" },
            { "\"\"", "\"\"" },
        };
        for (size_t i = 0; i < N(cases); i++) {
            json_t *v = load(cases[i].in);
            struct strbuf sb = STRBUF_INIT;
            qjson_pretty(&sb, v);
            is_str(strbuf_str(&sb), cases[i].want, "pretty %s", cases[i].in);
            strbuf_release(&sb);
            json_decref(v);
        }
    }
    {
        /* output appends to what the buffer already holds */
        struct strbuf sb = STRBUF_INIT;
        json_t *v = load("{\"a\":1}");
        strbuf_puts(&sb, "X");
        qjson_pretty(&sb, v);
        is_str(strbuf_str(&sb), "X{\n    \"a\": 1\n}", "appends without a leading newline");
        strbuf_release(&sb);
        json_decref(v);
    }

    /* --- human dump details --- */
    {
        json_t *v = load("{\"a-b-c\":\"\",\"l\":[1,[2,\"x\"],{\"k\":true}],\"d\":{},\"r\":0.5}");
        struct strbuf sb = STRBUF_INIT;
        qjson_human(&sb, v, 0);
        /* d, l, a-b-c, r in bucket order */
        size_t n;
        const char **k = qjson_key_order(v, &n);
        struct strbuf want = STRBUF_INIT;
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(k[i], "a-b-c"))
                strbuf_puts(&want, "a b c: \n");
            else if (!strcmp(k[i], "l"))
                strbuf_puts(&want, "l:\n    [0]: 1\n    [1]:\n        [0]: 2\n        [1]: x\n"
                                   "    [2]:\n        k: true\n");
            else if (!strcmp(k[i], "d"))
                strbuf_puts(&want, "d:\n");
            else if (!strcmp(k[i], "r"))
                strbuf_puts(&want, "r: 0.5\n");
        }
        is_str(strbuf_str(&sb), strbuf_str(&want), "human: dashes, lists, nesting, empty dict, double");
        free(k);
        strbuf_release(&want);
        strbuf_release(&sb);
        json_decref(v);
    }

    strbuf_tests();
    return done_testing();
}
