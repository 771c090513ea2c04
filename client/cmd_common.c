#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd.h"
#include "macro.h"

void
cmd_free(void *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}

int
cmd_print(struct cli *cli, const ProtobufCMessage *msg,
	  void (*text)(struct cli *cli, const ProtobufCMessage *m))
{
	if (cli->output == OUTPUT_JSON || !text)
		return output_json(msg) < 0 ? 1 : 0;
	text(cli, msg);
	return 0;
}

int
cmd_finish(struct cli *cli, struct rpc_client *c, void *msg,
	   void (*text)(struct cli *cli, const ProtobufCMessage *m))
{
	if (!msg)
		return cli_fail(cli, rpc_client_error(c));
	int status = cmd_print(cli, msg, text);
	cmd_free(msg);
	return status;
}

bool
cmd_confirm(struct cli *cli, bool yes_flag, const char *fmt, ...)
{
	char line[16];
	va_list ap;

	if (yes_flag || cli->output == OUTPUT_JSON)
		return true;
	if (!isatty(0)) {
		fprintf(stderr, "%s: not a terminal, not confirming: pass -y to go ahead\n",
			cli->prog);
		return false;
	}
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " [y/N] ");
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

void
cmd_time(int64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		snprintf(buf, size, "-");
		return;
	}
	localtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
}
