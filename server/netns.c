#include "netns.h"

#include <assert.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/magic.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include <libmnl/libmnl.h>

#include "log.h"
#include "macro.h"

#define NETNS_DIR "/run/netns"
#define NS_PREFIX "sistemo-"
#define HOST_END_PREFIX "vh-"
#define SPARE_PREFIX NS_PREFIX "spare" /* spare namespaces: "sistemo-spare<n>" */
#define SPARE_END_PREFIX "vs-"         /* their host ends: "vs-<n>" */
#define SPARES_MAX 16
#define SHORT_ID_LEN 8
/* br0's ifindex, asked for when it is created so that the requests after it name it as master
 * without a lookup. A fresh namespace numbers lo 1, then tap0 and eth0 from 2 up: never 10. */
#define NS_BRIDGE_IFINDEX 10
#define REQ_MAX 8            /* requests in one batch */
#define REQ_ROOM 512         /* bytes one request may take: names are at most IFNAMSIZ */
#define ACKS_SIZE 8192       /* one read of acks: an error ack quotes its request */
#define ORPHANS_MAX 1024     /* host ends looked at in one netns_orphan_links pass */
#define DUMP_READ_SIZE 32768 /* one read of a link or a dump: the kernel fills up to this */
#define DUMP_READS_MAX 4096  /* reads of one dump */

static void
sock_close(struct mnl_socket *sk)
{
	if (sk)
		mnl_socket_close(sk);
}

DEFINE_CLEANUP(nlsock, struct mnl_socket, sock_close)
DEFINE_CLEANUP(dir, DIR, closedir)

/* ---- errors ------------------------------------------------------------------------------- */

/* Sets "<what>: <strerror>" from a negative errno and returns it. */
#define fail(err, r, ...) err_errno((err), (r), __VA_ARGS__)

static bool
is_missing(int r)
{
	return r == -ENODEV || r == -ENOENT;
}

/* ---- names -------------------------------------------------------------------------------- */

int
netns_names_for(const char *machine_id, struct netns_names *ret)
{
	char short_id[SHORT_ID_LEN + 1] = "";
	size_t i = 0;

	for (; machine_id && i < SHORT_ID_LEN && isxdigit((unsigned char)machine_id[i]); i++)
		short_id[i] = (char)tolower((unsigned char)machine_id[i]);
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->ns, sizeof(ret->ns), NS_PREFIX "%s", short_id);
	snprintf(ret->ns_path, sizeof(ret->ns_path), NETNS_DIR "/" NS_PREFIX "%s", short_id);
	snprintf(ret->veth_host, sizeof(ret->veth_host), HOST_END_PREFIX "%s", short_id);
	snprintf(ret->veth_ns, sizeof(ret->veth_ns), "eth0");
	snprintf(ret->bridge, sizeof(ret->bridge), "br0");
	snprintf(ret->tap, sizeof(ret->tap), "tap0");
	return i == SHORT_ID_LEN ? 0 : -EINVAL;
}

/* A file name in one directory, or (max_len < IFNAMSIZ) what the kernel accepts as a link name
 * (dev_valid_name); read within size bytes. */
static bool
name_ok(const char *s, size_t size, size_t max_len)
{
	size_t len = s ? strnlen(s, size) : 0;

	if (len == 0 || len > max_len || len == size || streq(s, ".") || streq(s, ".."))
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '/' || s[i] == ':' || isspace((unsigned char)s[i]))
			return false;
	return true;
}

static bool
ifname_ok(const char *s, size_t size)
{
	return name_ok(s, size, IFNAMSIZ - 1);
}

/* Names come from netns_names_for, but the struct is the caller's: check before use. */
static int
names_check(const struct netns_names *n, struct err *err)
{
	size_t dir_len = strlen(NETNS_DIR "/");

	if (!name_ok(n->ns, sizeof(n->ns), sizeof(n->ns) - 1) ||
	    strnlen(n->ns_path, sizeof(n->ns_path)) == sizeof(n->ns_path) ||
	    strncmp(n->ns_path, NETNS_DIR "/", dir_len) != 0 || !streq(n->ns_path + dir_len, n->ns))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid namespace name '%.32s'",
			       n->ns);
	if (!ifname_ok(n->veth_host, sizeof(n->veth_host)) ||
	    !ifname_ok(n->veth_ns, sizeof(n->veth_ns)) ||
	    !ifname_ok(n->bridge, sizeof(n->bridge)) || !ifname_ok(n->tap, sizeof(n->tap)))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "namespace '%s': invalid link name",
			       n->ns);
	return 0;
}

/* The short id of a host end's name "vh-<8 hex>", lowercase as netns_names_for makes it. */
static bool
host_end_short_id(const char *name, char short_id[SHORT_ID_LEN + 1])
{
	size_t plen = strlen(HOST_END_PREFIX);

	if (strncmp(name, HOST_END_PREFIX, plen) != 0 ||
	    strnlen(name, IFNAMSIZ) != plen + SHORT_ID_LEN)
		return false;
	for (size_t i = 0; i < SHORT_ID_LEN; i++) {
		char c = name[plen + i];
		if (!isxdigit((unsigned char)c) || isupper((unsigned char)c))
			return false;
		short_id[i] = c;
	}
	short_id[SHORT_ID_LEN] = '\0';
	return true;
}

/* ---- threads that change namespace -------------------------------------------------------- */

/* Runs fn(arg) on a fresh thread with every signal blocked and waits for it: the thread may
 * enter another namespace, which dies with it; the caller's thread never moves. */
static int
thread_run(void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	pthread_t t;
	int r;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0)
		return -r;
	pthread_join(t, NULL);
	return 0;
}

struct run_in {
	const char *ns_path;
	int (*fn)(void *ud);
	void *ud;
	int enter_r; /* 0, or -errno when the thread could not enter the namespace */
	int r;
};

static void *
run_in_thread(void *p)
{
	struct run_in *a = p;
	cleanup_close int fd = open(a->ns_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
		a->enter_r = -errno;
		return NULL;
	}
	a->r = a->fn(a->ud);
	return NULL;
}

int
netns_run_in(const char *ns_path, int (*fn)(void *ud), void *ud, struct err *err)
{
	struct run_in a = {.ns_path = ns_path, .fn = fn, .ud = ud};
	int r;

	if (!ns_path || strnlen(ns_path, PATH_MAX) == PATH_MAX)
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid namespace path");
	r = thread_run(run_in_thread, &a);
	if (r == 0)
		r = a.enter_r;
	if (r < 0)
		return fail(err, r, "enter namespace '%s'", ns_path);
	return a.r;
}

/* ---- rtnetlink (libmnl): errno from the kernel's acks ends here ----------------------------- */

/* A NETLINK_ROUTE socket in the calling thread's namespace: it stays there whatever thread uses
 * it, and holds the namespace alive. */
static int
sock_open(struct mnl_socket **ret)
{
	cleanup_(nlsock) struct mnl_socket *sk = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);

	if (!sk || mnl_socket_bind(sk, 0, MNL_SOCKET_AUTOPID) < 0)
		return -errno;
	*ret = TAKE_PTR(sk);
	return 0;
}

/* Requests sent in one sendmsg, each with NLM_F_ACK; the kernel handles them in order, and one
 * that fails does not stop the others. Acks are matched by sequence number. */
struct reqs {
	char buf[REQ_MAX * REQ_ROOM] __attribute__((aligned(NLMSG_ALIGNTO)));
	size_t len; /* of the requests before the last one */
	struct nlmsghdr *last;
	unsigned n;
	int r[REQ_MAX]; /* each request's result: 0 or -errno */
};

static struct nlmsghdr *
req_add(struct reqs *q, uint16_t type, uint16_t flags)
{
	/* requests are fixed by this file and bounded by IFNAMSIZ: a batch too big is a bug */
	assert(q->n < REQ_MAX);
	if (q->last)
		q->len += q->last->nlmsg_len;
	q->last = mnl_nlmsg_put_header(q->buf + q->len);
	q->last->nlmsg_type = type;
	q->last->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	q->last->nlmsg_seq = ++q->n;
	return q->last;
}

/* An RTM_*LINK request for a link by index or (index 0) by name; flags are set (and only
 * they are changed) as in `ip link set <name> up`. */
static struct nlmsghdr *
req_link(struct reqs *q, uint16_t type, uint16_t flags, const char *name, int index,
	 unsigned up_flags)
{
	struct nlmsghdr *h = req_add(q, type, flags);
	struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(h, sizeof(*ifm));

	ifm->ifi_family = AF_UNSPEC;
	ifm->ifi_index = index;
	ifm->ifi_flags = up_flags;
	ifm->ifi_change = up_flags;
	if (name)
		mnl_attr_put_strz(h, IFLA_IFNAME, name);
	return h;
}

/* Reads acks until every request has one; -errno when the socket fails. */
static int
reqs_acks(struct mnl_socket *sk, struct reqs *q)
{
	char buf[ACKS_SIZE] __attribute__((aligned(NLMSG_ALIGNTO)));
	unsigned acked = 0;

	/* the kernel acks every request before sendmsg returns: one read each at most */
	for (unsigned reads = 0; acked < q->n && reads < q->n; reads++) {
		int len = (int)mnl_socket_recvfrom(sk, buf, sizeof(buf));
		if (len < 0)
			return -errno;
		for (const struct nlmsghdr *h = (void *)buf; mnl_nlmsg_ok(h, len);
		     h = mnl_nlmsg_next(h, &len)) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
			if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq < 1 ||
			    h->nlmsg_seq > q->n || mnl_nlmsg_get_payload_len(h) < sizeof(*e))
				continue;
			q->r[h->nlmsg_seq - 1] = e->error;
			acked++;
		}
	}
	return acked == q->n ? 0 : -EIO;
}

/* Sends the batch and collects each request's result in q->r. Returns -errno when the socket
 * fails, else 0 (look at q->r). */
static int
reqs_send(struct mnl_socket *sk, struct reqs *q)
{
	size_t len = q->len + (q->last ? q->last->nlmsg_len : 0);

	for (unsigned i = 0; i < q->n; i++)
		q->r[i] = -EIO;
	if (mnl_socket_sendto(sk, q->buf, len) < 0)
		return -errno;
	return reqs_acks(sk, q);
}

/* Sends the batch; the first failure in order, or 0. */
static int
reqs_run(struct mnl_socket *sk, struct reqs *q)
{
	int r = reqs_send(sk, q);

	for (unsigned i = 0; r == 0 && i < q->n; i++)
		r = q->r[i];
	return r;
}

/* A link as RTM_NEWLINK describes it. */
struct link {
	int index;
	unsigned flags;
	char name[IFNAMSIZ];
	char kind[16]; /* IFLA_INFO_KIND: "bridge", "veth"...; "" for a plain device */
};

static int
link_info_attr(const struct nlattr *a, void *data)
{
	struct link *l = data;

	if (mnl_attr_get_type(a) == IFLA_INFO_KIND && mnl_attr_validate(a, MNL_TYPE_STRING) == 0)
		snprintf(l->kind, sizeof(l->kind), "%s", mnl_attr_get_str(a));
	return MNL_CB_OK;
}

static int
link_attr(const struct nlattr *a, void *data)
{
	struct link *l = data;

	switch (mnl_attr_get_type(a)) {
	case IFLA_IFNAME:
		if (mnl_attr_validate(a, MNL_TYPE_STRING) == 0)
			snprintf(l->name, sizeof(l->name), "%s", mnl_attr_get_str(a));
		break;
	case IFLA_LINKINFO:
		if (mnl_attr_validate(a, MNL_TYPE_NESTED) == 0)
			mnl_attr_parse_nested(a, link_info_attr, l);
		break;
	}
	return MNL_CB_OK;
}

static int
link_parse(const struct nlmsghdr *h, struct link *ret)
{
	const struct ifinfomsg *ifm = mnl_nlmsg_get_payload(h);

	memset(ret, 0, sizeof(*ret));
	if (h->nlmsg_type != RTM_NEWLINK || mnl_nlmsg_get_payload_len(h) < sizeof(*ifm))
		return MNL_CB_OK;
	ret->index = ifm->ifi_index;
	ret->flags = ifm->ifi_flags;
	return mnl_attr_parse(h, sizeof(*ifm), link_attr, ret) < 0 ? MNL_CB_ERROR : MNL_CB_OK;
}

static int
link_parse_cb(const struct nlmsghdr *h, void *data)
{
	return link_parse(h, data);
}

/* ip link show <name> */
static int
link_get(struct mnl_socket *sk, const char *name, struct link *ret)
{
	cleanup_free char *buf = malloc(DUMP_READ_SIZE);
	struct reqs q = {0};

	if (!buf)
		return -ENOMEM;
	/* no NLM_F_ACK: the answer is the link or an error, one message either way */
	req_link(&q, RTM_GETLINK, 0, name, 0, 0)->nlmsg_flags = NLM_F_REQUEST;
	ret->index = 0;
	if (mnl_socket_sendto(sk, q.buf, q.last->nlmsg_len) < 0)
		return -errno;
	errno = 0;
	ssize_t len = mnl_socket_recvfrom(sk, buf, DUMP_READ_SIZE);
	if (len < 0 || mnl_cb_run(buf, (size_t)len, 1, 0, link_parse_cb, ret) < 0)
		return errno > 0 ? -errno : -EIO;
	return ret->index > 0 ? 0 : -EIO;
}

/* ip link del <name>; missing is success */
static int
link_del(struct mnl_socket *sk, const char *name)
{
	struct reqs q = {0};

	req_link(&q, RTM_DELLINK, 0, name, 0, 0);
	int r = reqs_run(sk, &q);
	return is_missing(r) ? 0 : r;
}

/* ip link set <name> up */
static int
link_set_up(struct mnl_socket *sk, const char *name)
{
	struct reqs q = {0};

	req_link(&q, RTM_NEWLINK, 0, name, 0, IFF_UP);
	return reqs_run(sk, &q);
}

struct dump {
	int (*fn)(void *ud, const struct link *l);
	void *ud;
};

static int
dump_cb(const struct nlmsghdr *h, void *data)
{
	struct dump *d = data;
	struct link l;

	if (link_parse(h, &l) < 0)
		return MNL_CB_ERROR;
	return l.index > 0 && d->fn(d->ud, &l) < 0 ? MNL_CB_STOP : MNL_CB_OK;
}

/* ip link show: fn for every link of the socket's namespace; fn < 0 stops the walk early. */
static int
link_dump(struct mnl_socket *sk, int (*fn)(void *ud, const struct link *l), void *ud)
{
	cleanup_free char *buf = malloc(DUMP_READ_SIZE);
	struct dump d = {.fn = fn, .ud = ud};
	struct reqs q = {0};
	int r = MNL_CB_OK;

	if (!buf)
		return -ENOMEM;
	req_link(&q, RTM_GETLINK, NLM_F_DUMP, NULL, 0, 0)->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	if (mnl_socket_sendto(sk, q.buf, q.last->nlmsg_len) < 0)
		return -errno;
	errno = 0;
	for (int reads = 0; r == MNL_CB_OK && reads < DUMP_READS_MAX; reads++) {
		ssize_t len = mnl_socket_recvfrom(sk, buf, DUMP_READ_SIZE);
		if (len < 0)
			return -errno;
		r = mnl_cb_run(buf, (size_t)len, 1, 0, dump_cb, &d);
	}
	/* stopped early by fn: the socket still holds the rest of the dump; callers close it */
	return r < 0 ? (errno > 0 ? -errno : -EIO) : 0;
}

/* ip link add <name> [address <mac>] type bridge && ip link set <name> up */
static int
bridge_add(struct mnl_socket *sk, const char *name, const uint8_t mac[6])
{
	struct reqs q = {0};
	struct nlmsghdr *h = req_link(&q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, name, 0, IFF_UP);

	mnl_attr_put(h, IFLA_ADDRESS, 6, mac);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(h, info);
	return reqs_run(sk, &q);
}

/* ip addr add <ip>/<prefix> dev <ifindex>; -EEXIST when the link already has exactly it */
static int
addr_add(struct mnl_socket *sk, int ifindex, uint32_t ip, unsigned prefix)
{
	struct reqs q = {0};
	struct nlmsghdr *h = req_add(&q, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(h, sizeof(*ifa));
	uint32_t be = htonl(ip);

	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_index = (unsigned)ifindex;
	mnl_attr_put_u32(h, IFA_LOCAL, be);
	mnl_attr_put_u32(h, IFA_ADDRESS, be);
	return reqs_run(sk, &q);
}

/* ---- named namespaces, as `ip netns` keeps them --------------------------------------------- */

/* mkdir -p /run/netns, made a shared mount point as iproute2 does: unmounting a namespace then
 * unmounts it in every mount namespace that inherited it, so nothing there pins it. */
static int
run_dir_prepare(void)
{
	if (mkdir(NETNS_DIR, 0755) < 0 && errno != EEXIST)
		return -errno;
	for (int tries = 0; mount("", NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) < 0; tries++) {
		if (errno != EINVAL || tries > 0)
			return -errno;
		/* not a mount point yet: bind it onto itself */
		if (mount(NETNS_DIR, NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
			return -errno;
	}
	return 0;
}

static bool
ns_mounted(const char *ns_path)
{
	struct statfs st;

	return statfs(ns_path, &st) == 0 && st.f_type == NSFS_MAGIC;
}

/* The mount point: an empty file. One left by a crash between creating and mounting it is
 * ours to replace; a mounted one means the namespace exists. */
static int
ns_file_create(const char *ns_path)
{
	for (int tries = 0; tries < 2; tries++) {
		int fd = open(ns_path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
		if (ns_mounted(ns_path))
			return -EEXIST;
		if (unlink(ns_path) < 0 && errno != ENOENT)
			return -errno;
	}
	return -EEXIST;
}

/* ip netns del <ns>: the namespace dies once nothing else holds it (a process inside, an open
 * fd, a socket); the kernel then deletes its links, asynchronously. Missing is success. */
static int
ns_del(const char *ns_path)
{
	if (umount2(ns_path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
		return -errno;
	if (unlink(ns_path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

bool
netns_machine_exists(const struct netns_names *n)
{
	return names_check(n, NULL) == 0 && ns_mounted(n->ns_path);
}

int
netns_list(int (*fn)(void *ud, const char *ns_name), void *ud, struct err *err)
{
	cleanup_(dir) DIR *d = opendir(NETNS_DIR);
	struct dirent *de;
	size_t name_max = sizeof(((struct netns_names *)NULL)->ns);

	if (!d)
		return errno == ENOENT ? 0 : fail(err, -errno, "list '%s'", NETNS_DIR);
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, NS_PREFIX, strlen(NS_PREFIX)) != 0 ||
		    strncmp(de->d_name, SPARE_PREFIX, strlen(SPARE_PREFIX)) == 0 ||
		    strnlen(de->d_name, name_max) == name_max)
			continue;
		int r = fn(ud, de->d_name);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- the host bridge ---------------------------------------------------------------------- */

/* A stable, locally administered MAC for the gateway (02:73:<ip>): a bridge otherwise takes
 * its lowest port's MAC and changes it as machines come and go, which stales guests' ARP. */
static void
gateway_mac(uint32_t gateway, uint8_t mac[6])
{
	mac[0] = 0x02;
	mac[1] = 0x73;
	for (int i = 0; i < 4; i++)
		mac[2 + i] = (uint8_t)(gateway >> (24 - 8 * i));
}

static const char *
link_kind(const struct link *l)
{
	return l->kind[0] ? l->kind : "device";
}

/* The bridge as it is, created when missing; ERR_EXISTS when the name is not a bridge. */
static int
bridge_get_or_add(struct mnl_socket *sk, const char *bridge, uint32_t gateway, struct link *ret,
		  struct err *err)
{
	uint8_t mac[6];
	int r = link_get(sk, bridge, ret);

	if (is_missing(r)) {
		gateway_mac(gateway, mac);
		r = bridge_add(sk, bridge, mac);
		if (r < 0)
			return fail(err, r, "create");
		r = link_get(sk, bridge, ret);
	}
	if (r < 0)
		return fail(err, r, "read back");
	if (!streq(ret->kind, "bridge"))
		return err_set(err, ERR_EXISTS, NULL, EEXIST,
			       "a link of type '%s' already has this name", link_kind(ret));
	return 0;
}

int
netns_bridge_ensure(const char *bridge, uint32_t gateway, unsigned prefix, struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *sk = NULL;
	struct link l;
	int r;

	if (!ifname_ok(bridge, IFNAMSIZ))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid bridge name '%.16s'",
			       bridge ? bridge : "");
	if (prefix < 1 || prefix > 30)
		return err_set(err, ERR_INVALID, NULL, EINVAL, "bridge '%s': invalid prefix /%u",
			       bridge, prefix);
	r = sock_open(&sk);
	if (r < 0)
		r = fail(err, r, "open netlink");
	if (r == 0)
		r = bridge_get_or_add(sk, bridge, gateway, &l, err);
	if (r == 0) {
		/* ip addr add <gateway>/<prefix> dev <bridge> */
		r = addr_add(sk, l.index, gateway, prefix);
		r = r == -EEXIST ? 0 : r;
		if (r < 0)
			r = fail(err, r, "add address");
	}
	if (r == 0 && !(l.flags & IFF_UP) && (r = link_set_up(sk, bridge)) < 0)
		r = fail(err, r, "set up");
	if (r < 0)
		err_wrap(err, "bridge '%s'", bridge);
	return r;
}

int
netns_bridge_delete(const char *bridge, struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *sk = NULL;
	struct link l;
	int r;

	if (!ifname_ok(bridge, IFNAMSIZ))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid bridge name '%.16s'",
			       bridge ? bridge : "");
	r = sock_open(&sk);
	if (r < 0)
		return fail(err, r, "bridge '%s': open netlink", bridge);
	r = link_get(sk, bridge, &l);
	if (is_missing(r))
		return 0;
	if (r < 0)
		return fail(err, r, "bridge '%s': read", bridge);
	if (!streq(l.kind, "bridge"))
		return err_set(err, ERR_PRECONDITION, NULL, EINVAL,
			       "bridge '%s': a link of type '%s', left alone", bridge,
			       link_kind(&l));
	/* ip link del <bridge> */
	r = link_del(sk, bridge);
	return r < 0 ? fail(err, r, "bridge '%s': delete", bridge) : 0;
}

/* ---- a machine's plumbing ----------------------------------------------------------------- */

/* ip link del <veth_host>, when it is a veth: a leftover host end of this machine (its
 * namespace is dying, the kernel takes the pair away asynchronously, or is held elsewhere).
 * Any other kind of link with the name is not ours: -EEXIST. Missing: 0. */
static int
leftover_veth_del(struct mnl_socket *sk, const struct netns_names *n)
{
	struct link old;
	int r = link_get(sk, n->veth_host, &old);

	if (is_missing(r))
		return 0;
	if (r < 0)
		return r;
	if (!streq(old.kind, "veth"))
		return -EEXIST;
	log_info("machine netns '%s': deleting the leftover host end '%s'", n->ns, n->veth_host);
	return link_del(sk, n->veth_host);
}

/* ip tuntap add <tap> mode tap, from inside the namespace: rtnetlink cannot create a TAP. The
 * VMM re-opens it by name and adds IFF_VNET_HDR itself when it wants it. */
static int
tap_add(const char *name)
{
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
	cleanup_close int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0)
		return -errno;
	return 0;
}

/* Links in the namespace carry frames only (the guest behind tap0 has the addresses): IPv6 on
 * them would only add work to bringing each one up (link-local address, DAD, MLD). The files
 * under /proc/sys/net belong to the namespace of the thread that opens them. Best effort: the
 * file is missing when the kernel runs without IPv6. */
static void
ns_ipv6_off(void)
{
	cleanup_close int fd =
		open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);

	if (fd >= 0 && write(fd, "1", 1) < 0)
		log_debug("namespace: disable_ipv6: %s", strerror(errno));
}

struct ns_add {
	const struct netns_names *n;
	struct mnl_socket *sk; /* out: a socket inside the new namespace */
	int r;                 /* creating the namespace (and its socket) */
	int tap_r;             /* creating the tap in it */
};

/* ip netns add <ns>; ip -n <ns> tuntap add <tap> mode tap: all the work that needs a thread
 * inside the namespace. The namespace dies with the thread unless the mount or the socket
 * holds it. */
static void *
ns_add_thread(void *p)
{
	struct ns_add *a = p;
	char self[64];

	if (unshare(CLONE_NEWNET) < 0) {
		a->r = -errno;
		return NULL;
	}
	snprintf(self, sizeof(self), "/proc/self/task/%d/ns/net", (int)gettid());
	if (mount(self, a->n->ns_path, "none", MS_BIND, NULL) < 0) {
		a->r = -errno;
		return NULL;
	}
	ns_ipv6_off();
	a->tap_r = tap_add(a->n->tap);
	if (a->tap_r == 0)
		a->r = sock_open(&a->sk);
	return NULL;
}

struct build {
	const struct netns_names *n;
	const char *host_bridge;
	struct mnl_socket *host; /* in the caller's (host) namespace */
	struct mnl_socket *ns;   /* in the machine's namespace */
	int host_ns_fd;          /* the caller's namespace, where the veth's host end is born */
	int host_bridge_index;
	bool ns_made, veth_made;
};

/* ip netns add <ns>, with tap0 made in it and a netlink socket opened in it (b->ns). */
static int
build_ns(struct build *b, struct err *err)
{
	struct ns_add a = {.n = b->n};
	int r = run_dir_prepare();

	if (r == 0)
		r = ns_file_create(b->n->ns_path);
	if (r < 0)
		return fail(err, r, "create namespace");
	/* from here the mount point is ours: the rollback removes it, mounted or not */
	b->ns_made = true;
	r = thread_run(ns_add_thread, &a);
	b->ns = a.sk;
	if (r == 0)
		r = a.r;
	if (r < 0)
		return fail(err, r, "create namespace");
	if (a.tap_r < 0)
		return fail(err, a.tap_r, "create tap '%s'", b->n->tap);
	return 0;
}

/* ip -n <ns> link add <veth_ns> numtxqueues 1 numrxqueues 1 master <bridge> up type veth
 *     peer name <veth_host> numtxqueues 1 numrxqueues 1 netns <host>
 * One queue each way: a veth without XDP has no use for more, and the kernel's default (one
 * per CPU) costs a sysfs directory per queue on each end. The peer is born in the host; it
 * cannot be brought up here (its pair is not tied yet when its flags are applied). */
static void
req_veth(struct reqs *q, const struct netns_names *n, int host_ns_fd)
{
	struct nlmsghdr *h =
		req_link(q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, n->veth_ns, 0, IFF_UP);

	mnl_attr_put_u32(h, IFLA_MASTER, NS_BRIDGE_IFINDEX);
	mnl_attr_put_u32(h, IFLA_NUM_TX_QUEUES, 1);
	mnl_attr_put_u32(h, IFLA_NUM_RX_QUEUES, 1);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "veth");
	struct nlattr *data = mnl_attr_nest_start(h, IFLA_INFO_DATA);
	struct nlattr *peer = mnl_attr_nest_start(h, VETH_INFO_PEER);
	struct ifinfomsg *pifm = mnl_nlmsg_put_extra_header(h, sizeof(*pifm));
	pifm->ifi_family = AF_UNSPEC;
	mnl_attr_put_strz(h, IFLA_IFNAME, n->veth_host);
	mnl_attr_put_u32(h, IFLA_NET_NS_FD, (uint32_t)host_ns_fd);
	mnl_attr_put_u32(h, IFLA_NUM_TX_QUEUES, 1);
	mnl_attr_put_u32(h, IFLA_NUM_RX_QUEUES, 1);
	mnl_attr_nest_end(h, peer);
	mnl_attr_nest_end(h, data);
	mnl_attr_nest_end(h, info);
}

/* ip link set <veth_host> master <host_bridge> up */
static int
attach_host_end(struct build *b, struct err *err)
{
	struct reqs q = {0};
	struct nlmsghdr *h = req_link(&q, RTM_NEWLINK, 0, b->n->veth_host, 0, IFF_UP);
	int r;

	mnl_attr_put_u32(h, IFLA_MASTER, (uint32_t)b->host_bridge_index);
	r = reqs_run(b->host, &q);
	if (r < 0)
		return fail(err, r, "attach '%s' to '%s'", b->n->veth_host, b->host_bridge);
	return 0;
}

/* The veth again, alone, after the leftover host end that held its name went (a machine
 * deleted and created again within the kernel's cleanup of the old namespace). */
static int
veth_reclaim(struct build *b)
{
	struct reqs q = {0};

	if (leftover_veth_del(b->host, b->n) < 0)
		return -EEXIST;
	req_veth(&q, b->n, b->host_ns_fd);
	return reqs_run(b->ns, &q);
}

/* The namespace's links in one batch:
 *   ip -n <ns> link add <bridge> up type bridge    (ifindex NS_BRIDGE_IFINDEX)
 *   ip -n <ns> link add <veth_ns> master <bridge> up type veth peer name <veth_host> netns <host>
 *   ip -n <ns> link set <tap> master <bridge> up
 *   ip -n <ns> link set lo up */
static int
build_links(struct build *b, struct err *err)
{
	const struct netns_names *n = b->n;
	struct reqs q = {0};
	struct nlmsghdr *h = req_link(&q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, n->bridge,
				      NS_BRIDGE_IFINDEX, IFF_UP);
	struct nlattr *info = mnl_attr_nest_start(h, IFLA_LINKINFO);
	mnl_attr_put_strz(h, IFLA_INFO_KIND, "bridge");
	mnl_attr_nest_end(h, info);
	req_veth(&q, n, b->host_ns_fd);
	h = req_link(&q, RTM_NEWLINK, 0, n->tap, 0, IFF_UP);
	mnl_attr_put_u32(h, IFLA_MASTER, NS_BRIDGE_IFINDEX);
	req_link(&q, RTM_NEWLINK, 0, "lo", 0, IFF_UP);

	int r = reqs_send(b->ns, &q);
	if (r < 0)
		return fail(err, r, "create links");
	b->veth_made = q.r[1] == 0;
	if (q.r[0] < 0)
		return fail(err, q.r[0], "create bridge '%s'", n->bridge);
	if (q.r[1] == -EEXIST)
		b->veth_made = (q.r[1] = veth_reclaim(b)) == 0;
	if (q.r[1] < 0)
		return fail(err, q.r[1], "create veth '%s'", n->veth_host);
	if (q.r[2] < 0)
		return fail(err, q.r[2], "attach '%s' to '%s'", n->tap, n->bridge);
	if (q.r[3] < 0)
		return fail(err, q.r[3], "set 'lo' up");
	return 0;
}

/* Undoes a half-built machine, last step first. The host veth end goes explicitly (it is not
 * ours when creating it failed); the namespace takes eth0, br0 and tap0 with it. */
static void
build_rollback(struct build *b)
{
	int r;

	/* the socket inside would keep the namespace alive */
	sock_close(TAKE_PTR(b->ns));
	if (b->veth_made && (r = link_del(b->host, b->n->veth_host)) < 0)
		log_warn("rollback: delete '%s': %s", b->n->veth_host, strerror(-r));
	if (b->ns_made && (r = ns_del(b->n->ns_path)) < 0)
		log_warn("rollback: delete namespace '%s': %s", b->n->ns, strerror(-r));
}

/* What the build needs from the caller's namespace, before anything is made; a spare
 * (host_bridge NULL) is attached to none. */
static int
build_prepare(struct build *b, struct err *err)
{
	int r;

	b->host_bridge_index = b->host_bridge ? (int)if_nametoindex(b->host_bridge) : -1;
	if (b->host_bridge_index == 0)
		return errno == ENODEV ? err_set(err, ERR_PRECONDITION, NULL, ENODEV,
						 "host bridge '%s' does not exist", b->host_bridge)
				       : fail(err, -errno, "read host bridge '%s'", b->host_bridge);
	b->host_ns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (b->host_ns_fd < 0)
		return fail(err, -errno, "open the host namespace");
	r = sock_open(&b->host);
	return r < 0 ? fail(err, r, "open netlink") : 0;
}

/* ---- spares: namespaces built ahead of the machines that take them ------------------------ */

/* A machine's plumbing is nearly all kernel work (a few ms here: netns_machine_create above),
 * and nearly none of it depends on the machine: the namespace with br0, eth0 and tap0, and the
 * veth's host end, are built ahead by one thread and kept ready. A machine then takes one:
 * the namespace's mount moves to the machine's name, and one request renames the host end,
 * attaches it to the host bridge and brings it up. The thread builds the next one meanwhile. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, stop;
	unsigned want, n_ready, gen, building;
	char bridge[IFNAMSIZ]; /* where spares wait as down ports ("": none) */
	struct netns_names ready[SPARES_MAX];
} spares = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void
spare_names(unsigned gen, struct netns_names *n)
{
	netns_names_for(NULL, n);
	snprintf(n->ns, sizeof(n->ns), SPARE_PREFIX "%u", gen);
	snprintf(n->ns_path, sizeof(n->ns_path), NETNS_DIR "/" SPARE_PREFIX "%u", gen);
	snprintf(n->veth_host, sizeof(n->veth_host), SPARE_END_PREFIX "%u", gen);
}

/* Closes what the build opened; on failure (r < 0) undoes what it made first. */
static int
build_end(struct build *b, int r)
{
	if (r < 0)
		build_rollback(b);
	sock_close(b->ns);
	sock_close(b->host);
	if (b->host_ns_fd >= 0)
		close(b->host_ns_fd);
	return r;
}

/* IPv6 off on a spare's host end before it first comes up: a bridge port needs no address,
 * and bringing it up would otherwise start a link-local address, DAD and MLD on the deploy
 * path. Best effort. */
static void
host_end_ipv6_off(const char *name)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
	cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0 && write(fd, "1", 1) < 0)
		log_debug("spare namespace: %s: %s", path, strerror(errno));
}

/* A spare: the namespace and its links as for a machine, the host end with IPv6 off and
 * already a port (down) of host_bridge, when that is given and exists: what a machine on it
 * then waits for is a rename and an up. */
static int
spare_build(const struct netns_names *n, const char *host_bridge, struct err *err)
{
	struct build b = {.n = n, .host_ns_fd = -1};
	int r = build_prepare(&b, err);

	if (r == 0)
		r = build_ns(&b, err);
	if (r == 0)
		r = build_links(&b, err);
	if (r == 0) {
		host_end_ipv6_off(n->veth_host);
		int index = host_bridge ? (int)if_nametoindex(host_bridge) : 0;
		struct reqs q = {0};
		if (index > 0) {
			struct nlmsghdr *h = req_link(&q, RTM_NEWLINK, 0, n->veth_host, 0, 0);
			mnl_attr_put_u32(h, IFLA_MASTER, (uint32_t)index);
			if ((r = reqs_run(b.host, &q)) < 0)
				fail(err, r, "attach '%s' to '%s'", n->veth_host, host_bridge);
		}
	}
	return build_end(&b, r);
}

static void *
spares_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&spares.lock);
	while (!spares.stop) {
		if (spares.n_ready >= spares.want) {
			pthread_cond_wait(&spares.cond, &spares.lock);
			continue;
		}
		struct netns_names n;
		struct err err = {0};
		char bridge[IFNAMSIZ];
		spare_names(++spares.gen, &n);
		snprintf(bridge, sizeof(bridge), "%s", spares.bridge);
		spares.building++;
		pthread_mutex_unlock(&spares.lock);
		int r = spare_build(&n, bridge[0] ? bridge : NULL, &err);
		pthread_mutex_lock(&spares.lock);
		spares.building--;
		if (r == 0) {
			/* stopping: netns_spares_stop deletes it with the others */
			spares.ready[spares.n_ready++] = n;
			pthread_cond_broadcast(&spares.cond);
			continue;
		}
		log_warn("spare namespace: %s (retrying in 5 s)", err.msg);
		err_clear(&err);
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		while (!spares.stop &&
		       pthread_cond_timedwait(&spares.cond, &spares.lock, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&spares.lock);
	return NULL;
}

/* Spares a crashed daemon left: their host ends go with them. */
static void
spares_clear_stale(void)
{
	cleanup_(dir) DIR *d = opendir(NETNS_DIR);
	struct dirent *de;
	char path[PATH_MAX];

	while (d && (de = readdir(d)))
		if (strncmp(de->d_name, SPARE_PREFIX, strlen(SPARE_PREFIX)) == 0 &&
		    snprintf(path, sizeof(path), NETNS_DIR "/%s", de->d_name) < (int)sizeof(path))
			ns_del(path);
}

int
netns_spares_start(unsigned n, const char *host_bridge, struct err *err)
{
	int r;

	if (n > SPARES_MAX)
		return err_set(err, ERR_INVALID, NULL, EINVAL, "%u spare namespaces: at most %d", n,
			       SPARES_MAX);
	if (host_bridge && !ifname_ok(host_bridge, IFNAMSIZ))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid bridge name '%.16s'",
			       host_bridge);
	if ((r = run_dir_prepare()) < 0)
		return fail(err, r, "prepare '%s'", NETNS_DIR);
	pthread_mutex_lock(&spares.lock);
	snprintf(spares.bridge, sizeof(spares.bridge), "%s", host_bridge ? host_bridge : "");
	if (spares.running) {
		spares.want = n;
		pthread_cond_broadcast(&spares.cond);
		pthread_mutex_unlock(&spares.lock);
		return 0;
	}
	spares_clear_stale();
	spares.want = n;
	spares.stop = false;
	r = n ? -pthread_create(&spares.thread, NULL, spares_main, NULL) : 0;
	spares.running = n && r == 0;
	pthread_mutex_unlock(&spares.lock);
	return r < 0 ? fail(err, r, "start the spare namespaces' thread") : 0;
}

void
netns_spares_stop(void)
{
	pthread_mutex_lock(&spares.lock);
	bool running = spares.running;
	spares.stop = true;
	pthread_cond_broadcast(&spares.cond);
	pthread_mutex_unlock(&spares.lock);
	if (running)
		pthread_join(spares.thread, NULL);
	/* the host ends first, by name: a namespace's links go with it only when the kernel
	 * gets to it, which takes seconds on a busy host */
	cleanup_(nlsock) struct mnl_socket *sk = NULL;
	if (sock_open(&sk) < 0)
		sk = NULL;
	pthread_mutex_lock(&spares.lock);
	for (unsigned i = 0; i < spares.n_ready; i++) {
		int r = sk ? link_del(sk, spares.ready[i].veth_host) : 0;
		if (r < 0 && !is_missing(r))
			log_warn("spare namespace: delete '%s': %s", spares.ready[i].veth_host,
				 strerror(-r));
		ns_del(spares.ready[i].ns_path);
	}
	spares.n_ready = 0;
	spares.running = false;
	pthread_mutex_unlock(&spares.lock);
}

bool
netns_spares_wait(unsigned n, unsigned timeout_ms)
{
	struct timespec until;
	bool ok;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&spares.lock);
	while (spares.running && spares.n_ready < n &&
	       pthread_cond_timedwait(&spares.cond, &spares.lock, &until) != ETIMEDOUT)
		;
	ok = spares.n_ready >= n;
	pthread_mutex_unlock(&spares.lock);
	return ok;
}

static bool
spare_take(struct netns_names *ret)
{
	bool ok = false;

	pthread_mutex_lock(&spares.lock);
	if (spares.n_ready > 0) {
		*ret = spares.ready[--spares.n_ready];
		ok = true;
	}
	pthread_mutex_unlock(&spares.lock);
	return ok;
}

/* Wakes the thread to build the next spare: only once the taker is done with the kernel's
 * link lock (RTNL), which a build holds for a few ms at a time. */
static void
spares_refill(void)
{
	pthread_mutex_lock(&spares.lock);
	pthread_cond_broadcast(&spares.cond);
	pthread_mutex_unlock(&spares.lock);
}

/* ip link set <spare host end> name <veth_host> master <host_bridge> up: one request (a
 * link that is down can be renamed; the kernel renames before it applies master and flags). */
static int
spare_attach(struct build *b, const struct netns_names *spare)
{
	int index = (int)if_nametoindex(spare->veth_host);

	for (int tries = 0; index > 0 && tries < 2; tries++) {
		struct reqs q = {0};
		struct nlmsghdr *h = req_link(&q, RTM_NEWLINK, 0, b->n->veth_host, index, IFF_UP);
		mnl_attr_put_u32(h, IFLA_MASTER, (uint32_t)b->host_bridge_index);
		int r = reqs_run(b->host, &q);
		/* a leftover host end of this machine holds the name: as veth_reclaim */
		if (r != -EEXIST || tries > 0 || leftover_veth_del(b->host, b->n) < 0)
			return r;
	}
	return index > 0 ? -EEXIST : -errno;
}

/* The machine takes the spare: the namespace's mount moves to the machine's name (the spare's
 * name is gone before this returns), then its host end is renamed and attached. */
static int
spare_adopt(struct build *b, const struct netns_names *spare, struct err *err)
{
	int r = ns_file_create(b->n->ns_path);

	if (r < 0) {
		ns_del(spare->ns_path);
		return fail(err, r, "create namespace");
	}
	b->ns_made = true;
	r = mount(spare->ns_path, b->n->ns_path, "none", MS_BIND, NULL) < 0 ? -errno : 0;
	ns_del(spare->ns_path);
	if (r < 0)
		return fail(err, r, "create namespace");
	if ((r = spare_attach(b, spare)) < 0)
		return fail(err, r, "attach '%s' as '%s' to '%s'", spare->veth_host,
			    b->n->veth_host, b->host_bridge);
	return 0;
}

int
netns_machine_create(const struct netns_names *n, const char *host_bridge, struct err *err)
{
	struct build b = {.n = n, .host_bridge = host_bridge, .host_ns_fd = -1};
	struct netns_names spare;
	int r = names_check(n, err);

	if (r < 0)
		return r;
	if (!ifname_ok(host_bridge, IFNAMSIZ))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid bridge name '%.16s'",
			       host_bridge ? host_bridge : "");
	r = build_prepare(&b, err);
	if (r == 0 && spare_take(&spare)) {
		r = spare_adopt(&b, &spare, err);
		spares_refill();
	} else if (r == 0) {
		r = build_ns(&b, err);
		if (r == 0)
			r = build_links(&b, err);
		if (r == 0)
			r = attach_host_end(&b, err);
	}
	r = build_end(&b, r);
	if (r < 0)
		err_wrap(err, "machine netns '%s'", n->ns);
	return r;
}

int
netns_machine_delete(const struct netns_names *n, struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *sk = NULL;
	int r = names_check(n, err);
	bool had_ns;

	if (r < 0)
		return r;
	had_ns = ns_mounted(n->ns_path);
	/* ip netns del <ns> */
	r = ns_del(n->ns_path);
	if (r < 0)
		return fail(err, r, "machine netns '%s': delete namespace", n->ns);
	/* The dying namespace takes eth0, and with it the host end, in the kernel's own time
	 * (some 20 ms later here). Deleting the host end ourselves would hold the caller for an
	 * RCU barrier (15-25 ms) to win that race: we leave it, and netns_machine_create reclaims
	 * the name if it comes back before the kernel is done. */
	if (had_ns)
		return 0;
	/* No namespace: a host end still there is a leftover (a crash between steps, a second
	 * delete within the kernel's cleanup). */
	r = sock_open(&sk);
	if (r == 0)
		r = leftover_veth_del(sk, n);
	if (r == -EEXIST) {
		log_warn("machine netns '%s': '%s' is not a veth: left alone", n->ns, n->veth_host);
		r = 0;
	}
	return r < 0 ? fail(err, r, "machine netns '%s': delete veth '%s'", n->ns, n->veth_host)
		     : 0;
}

/* ---- orphaned host ends ------------------------------------------------------------------- */

struct host_ends {
	char (*short_ids)[SHORT_ID_LEN + 1];
	size_t n;
};

static int
host_end_collect(void *ud, const struct link *l)
{
	struct host_ends *e = ud;

	if (e->n == ORPHANS_MAX)
		return -ENOSPC; /* the rest waits for the next pass */
	if (streq(l->kind, "veth") && host_end_short_id(l->name, e->short_ids[e->n]))
		e->n++;
	return 0;
}

/* ip link del vh-<short_id>, when its namespace is not mounted and keep() does not claim it. */
static int
orphan_del(struct mnl_socket *sk, const char *short_id, int (*keep)(void *, const char *), void *ud)
{
	struct netns_names n;

	netns_names_for(short_id, &n);
	if (ns_mounted(n.ns_path) || keep(ud, n.ns))
		return 0;
	int r = leftover_veth_del(sk, &n);
	return r < 0 ? r : 1;
}

int
netns_orphan_links(int (*keep)(void *ud, const char *ns_name), void *ud, struct err *err)
{
	cleanup_(nlsock) struct mnl_socket *sk = NULL;
	cleanup_free char(*ids)[SHORT_ID_LEN + 1] = calloc(ORPHANS_MAX, sizeof(*ids));
	struct host_ends e = {.short_ids = ids};
	int r, deleted = 0;

	if (!ids)
		return fail(err, -ENOMEM, "host ends");
	r = sock_open(&sk);
	if (r == 0)
		r = link_dump(sk, host_end_collect, &e);
	/* a new socket: a dump stopped early leaves the rest of its answer in the first */
	sock_close(TAKE_PTR(sk));
	if (r == 0)
		r = sock_open(&sk);
	if (r < 0)
		return fail(err, r, "list host links");
	for (size_t i = 0; i < e.n; i++) {
		int d = orphan_del(sk, e.short_ids[i], keep, ud);
		if (d < 0)
			r = fail(err, d, "delete host end '" HOST_END_PREFIX "%s'", e.short_ids[i]);
		deleted += d > 0;
	}
	return r < 0 ? r : deleted;
}
