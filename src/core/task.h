/* SPDX-License-Identifier: MIT */
/* A piece of work handed to another thread's queue (e.g. a finished writer job going
 * back to the loop that owns its client connection). The queue owner calls run; the
 * task belongs to run from then on. */
#ifndef EDGE_CORE_TASK_H
#define EDGE_CORE_TASK_H

struct edge_task {
    void (*run)(struct edge_task *t);
    struct edge_task *next; /* queue link, owned by the queue */
};

#endif
