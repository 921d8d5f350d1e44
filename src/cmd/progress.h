/* "-p" progress as qemu-img prints it: "    (NN.NN/100%)\r" each time the
 * value moves by more than the minimum step; without -p, SIGUSR1 prints the
 * current value on stderr. */
#ifndef QIMG_CMD_PROGRESS_H
#define QIMG_CMD_PROGRESS_H

#include <stdbool.h>

void progress_init(bool enabled, float min_skip);
/* max == 0: set absolute percent; else add delta/100*max. */
void progress_print(float delta, int max);
void progress_end(void);
/* Adapter for engine callbacks (percent as double). */
void progress_cb(void *opaque, double percent);

#endif
