/* SPDX-License-Identifier: MIT */
/* Internal error helpers on top of the public error space. */
#ifndef EDGE_CORE_ERR_H
#define EDGE_CORE_ERR_H

#include "edgelite/errors.h"

#include <assert.h>

/* Translate an errno value into an EDGE_E* code. */
int edge__err_from_errno(int e);

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
