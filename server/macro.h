/* Small helpers shared by every module: cleanup attributes, ownership transfer, array sizes.
 * Destructors used with cleanup accept NULL (and -1 for fds). */
#pragma once

#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Hands ownership out of a cleanup-scoped variable: the variable becomes NULL. */
#define TAKE_PTR(p)                                                                                \
	({                                                                                         \
		__typeof__(p) _tp = (p);                                                           \
		(p) = NULL;                                                                        \
		_tp;                                                                               \
	})
#define TAKE_FD(fd)                                                                                \
	({                                                                                         \
		int _tf = (fd);                                                                    \
		(fd) = -1;                                                                         \
		_tf;                                                                               \
	})

static inline void
freep(void *p)
{
	free(*(void **)p);
}
static inline void
closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
#define cleanup_free __attribute__((cleanup(freep)))
#define cleanup_close __attribute__((cleanup(closep)))

/* Declares cleanup_NAME for a pointer type with destructor FN(T *) accepting NULL. */
#define DEFINE_CLEANUP(name, type, fn)                                                             \
	static inline void name##_cleanupp(type **p)                                               \
	{                                                                                          \
		fn(*p);                                                                            \
	}
#define cleanup_(name) __attribute__((cleanup(name##_cleanupp)))

#define streq(a, b) (strcmp((a), (b)) == 0)
