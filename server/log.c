#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum log_level log_max_level = LOG_LVL_INFO;

static const char *const level_words[] = {[LOG_LVL_ERROR] = "error",
					  [LOG_LVL_WARN] = "warn",
					  [LOG_LVL_INFO] = "info",
					  [LOG_LVL_DEBUG] = "debug"};

int
log_level_parse(const char *s, enum log_level *ret)
{
	for (size_t i = 0; i < sizeof(level_words) / sizeof(level_words[0]); i++)
		if (level_words[i] && strcmp(s, level_words[i]) == 0) {
			*ret = (enum log_level)i;
			return 0;
		}
	return -EINVAL;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (lvl > log_max_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (getenv("JOURNAL_STREAM")) {
		fprintf(stderr, "<%d>%s\n", lvl, line);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s\n", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		level_words[lvl], line);
}
