/* See objpool.h. */
#include "util/objpool.h"

#include <stddef.h>

void *objpool_get(struct objpool *p, int key)
{
    void *obj = NULL;

    pthread_mutex_lock(&p->lock);
    for (int i = p->n - 1; i >= 0; i--) {
        if (p->slot[i].key == key) {
            obj = p->slot[i].obj;
            p->slot[i] = p->slot[--p->n];
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return obj;
}

void objpool_put(struct objpool *p, int key, void *obj)
{
    if (!obj)
        return;
    pthread_mutex_lock(&p->lock);
    if (p->n < OBJPOOL_MAX) {
        p->slot[p->n].obj = obj;
        p->slot[p->n++].key = key;
        obj = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (obj)
        p->destroy(obj);
}

void objpool_drain(struct objpool *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->n > 0) {
        p->n--;
        p->destroy(p->slot[p->n].obj);
    }
    pthread_mutex_unlock(&p->lock);
}
