/* sistemo: one binary, the CLI and (with `up`) the root daemon. */
#include <stdlib.h>

#include "cli.h"
#include "log.h"

int
main(int argc, char **argv)
{
	const char *lvl = getenv("SISTEMO_LOG_LEVEL");
	enum log_level l;

	if (lvl && log_level_parse(lvl, &l) == 0)
		log_max_level = l;
	return cli_main(argc, argv);
}
