/* SPDX-License-Identifier: MIT */
/* Internal error helpers on top of the public error space. */
#ifndef EDGE_CORE_ERR_H
#define EDGE_CORE_ERR_H

#include "edgelite/errors.h"

#include <assert.h>
#include <stddef.h>

/* Translate an errno value into an EDGE_E* code. */
int edge__err_from_errno(int e);

/* Format a message into errmsg (n bytes, truncated to fit); nothing when errmsg is NULL or
 * n is 0. For the errmsg/errmsg_len pairs of the loaders (configuration, keys). */
void edge__errmsg_set(char *errmsg, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Defensive branches that "cannot happen" (SQLite ALWAYS/NEVER): asserted in debug
 * builds, tolerated in release builds. */
#ifdef NDEBUG
#define EDGE_ALWAYS(x) (x)
#define EDGE_NEVER(x) (x)
#else
#define EDGE_ALWAYS(x) ((x) ? 1 : (assert(0), 0))
#define EDGE_NEVER(x) ((x) ? (assert(0), 1) : 0)
#endif

#endif
