/* A UDP echo server for test guests: busybox has no UDP server. Built static, copied into a
 * guest over `sistemo machine exec NAME 'cat >FILE'`. Usage: udpecho PORT */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

int
main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char buf[2048];
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	if (argc != 2 || fd < 0)
		return 2;
	sa.sin_port = htons((unsigned short)atoi(argv[1]));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("bind");
		return 1;
	}
	for (;;) {
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);
		if (n >= 0)
			sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
	}
}
