/* See progress.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cmd/progress.h"

static struct {
    float current, last_print, min_skip;
    bool enabled;
} st;
static volatile sig_atomic_t print_pending;

static void on_sigusr1(int sig)
{
    (void)sig;
    print_pending = 1;
}

void progress_init(bool enabled, float min_skip)
{
    memset(&st, 0, sizeof(st));
    st.min_skip = min_skip;
    st.enabled = enabled;
    if (!enabled) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sigfillset(&sa.sa_mask);
        sa.sa_handler = on_sigusr1;
        sigaction(SIGUSR1, &sa, NULL);
    }
}

static void do_print(void)
{
    if (st.enabled) {
        printf("    (%3.2f/100%%)\r", (double)st.current);
        fflush(stdout);
    } else if (print_pending) {
        fprintf(stderr, "    (%3.2f/100%%)\n", (double)st.current);
        print_pending = 0;
    }
}

void progress_print(float delta, int max)
{
    float current = max == 0 ? delta : st.current + delta / 100 * (float)max;
    if (current > 100)
        current = 100;
    st.current = current;
    if (current > st.last_print + st.min_skip || current < st.last_print - st.min_skip ||
        current == 100 || current == 0) {
        st.last_print = st.current;
        do_print();
    }
}

void progress_end(void)
{
    if (st.enabled)
        printf("\n");
}

void progress_cb(void *opaque, double percent)
{
    (void)opaque;
    progress_print((float)percent, 0);
}
