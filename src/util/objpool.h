/* A small pool of reusable codec objects: compressors, compression and
 * decompression streams. Making one costs more than using it on a cluster
 * (a zstd context allocates and clears hundreds of KiB: per 64 KiB cluster,
 * a fresh context compressed at a third of the speed of a reused one), so
 * callers take one from the pool and give it back after each use.
 *
 * Objects carry an integer key (a compression level, say); objpool_get
 * returns only an object of that key. Thread-safe. A pool holds at most
 * OBJPOOL_MAX objects; objpool_put destroys what does not fit. Pools are
 * static objects of their users, emptied by objpool_drain, which a user
 * calls from a destructor function (run at exit). */
#ifndef QIMG_UTIL_OBJPOOL_H
#define QIMG_UTIL_OBJPOOL_H

#include <pthread.h>

#define OBJPOOL_MAX 32

struct objpool {
    pthread_mutex_t lock;
    void (*destroy)(void *obj);
    int n;
    struct {
        void *obj;
        int key;
    } slot[OBJPOOL_MAX];
};

#define OBJPOOL_INIT(destroy_fn) { .lock = PTHREAD_MUTEX_INITIALIZER, .destroy = (destroy_fn) }

/* A pooled object of this key, or NULL when there is none (make one). */
void *objpool_get(struct objpool *p, int key);

/* Give obj back (destroyed when the pool is full). obj may be NULL. */
void objpool_put(struct objpool *p, int key, void *obj);

/* Destroy every pooled object. */
void objpool_drain(struct objpool *p);

#endif
