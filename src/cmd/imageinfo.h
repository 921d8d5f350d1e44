/* ImageInfo as a JSON tree (built in QAPI order) and its human rendering;
 * shared by info, and later by measure/snapshot listings. */
#ifndef QIMG_CMD_IMAGEINFO_H
#define QIMG_CMD_IMAGEINFO_H

#include <jansson.h>

#include "block/blk.h"
#include "util/strbuf.h"

json_t *image_info_json(struct bds *bs, struct err *err);
void image_info_human(struct strbuf *sb, const json_t *info);
void snapshot_dump_header(struct strbuf *sb);
void snapshot_dump(struct strbuf *sb, const struct blk_snapshot *sn);

#endif
