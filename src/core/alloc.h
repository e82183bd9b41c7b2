/* SPDX-License-Identifier: MIT */
#ifndef EDGE_CORE_ALLOC_H
#define EDGE_CORE_ALLOC_H

#include "edgelite/alloc.h"

/* Test hook: fail allocations after `delay` successful ones, `repeat` times (-1 for
 * forever); delay < 0 disables. Counts are process-wide and atomic. */
void edge__alloc_fault_config(int delay, int repeat);

#endif
