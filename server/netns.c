#include "netns.h"

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
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/magic.h>

#include <netlink/netlink.h>
#include <netlink/addr.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>

#include "log.h"
#include "macro.h"

#define NETNS_DIR "/run/netns"
#define NS_PREFIX "sistemo-"
#define SHORT_ID_LEN 8

static void
veth_release(struct rtnl_link *l)
{
	if (l)
		rtnl_link_veth_release(l);
}

DEFINE_CLEANUP(nlsock, struct nl_sock, nl_socket_free)
DEFINE_CLEANUP(rtlink, struct rtnl_link, rtnl_link_put)
DEFINE_CLEANUP(veth, struct rtnl_link, veth_release)
DEFINE_CLEANUP(rtaddr, struct rtnl_addr, rtnl_addr_put)
DEFINE_CLEANUP(nladdr, struct nl_addr, nl_addr_put)
DEFINE_CLEANUP(dir, DIR, closedir)

/* ---- errors: libnl's -NLE_* end here ------------------------------------------------------ */

static const int nle_errnos[] = {
	[NLE_INTR] = EINTR,           [NLE_BAD_SOCK] = EBADF,
	[NLE_AGAIN] = EAGAIN,         [NLE_NOMEM] = ENOMEM,
	[NLE_EXIST] = EEXIST,         [NLE_INVAL] = EINVAL,
	[NLE_RANGE] = ERANGE,         [NLE_MSGSIZE] = EMSGSIZE,
	[NLE_OPNOTSUPP] = EOPNOTSUPP, [NLE_AF_NOSUPPORT] = EAFNOSUPPORT,
	[NLE_OBJ_NOTFOUND] = ENOENT,  [NLE_NOADDR] = EADDRNOTAVAIL,
	[NLE_BUSY] = EBUSY,           [NLE_PROTO_MISMATCH] = EPROTONOSUPPORT,
	[NLE_NOACCESS] = EACCES,      [NLE_PERM] = EPERM,
	[NLE_NODEV] = ENODEV,         [NLE_DUMP_INTR] = EINTR,
};

/* -NLE_* (or 0 and up) to -errno (or 0). libnl folds the kernel's errno into its own codes;
 * the ones with no errno twin are libnl's own failures: logged with libnl's words, -EIO. */
static int
netlink_errno(int r)
{
	if (r >= 0)
		return 0;
	if ((size_t)-r < ARRAY_SIZE(nle_errnos) && nle_errnos[-r])
		return -nle_errnos[-r];
	log_warn("netlink: %s", nl_geterror(r));
	return -EIO;
}

static enum err_code
code_for(int errnum)
{
	switch (errnum) {
	case EEXIST:
		return ERR_EXISTS;
	case ENOENT:
	case ENODEV:
		return ERR_NOT_FOUND;
	case EPERM:
	case EACCES:
		return ERR_PERMISSION;
	case ENOMEM:
	case ENOBUFS:
	case ENOSPC:
	case EMFILE:
	case ENFILE:
		return ERR_EXHAUSTED;
	default:
		return ERR_INTERNAL;
	}
}

/* Sets "<what>: <strerror>" from a negative errno and returns it. */
static int fail(struct err *err, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(struct err *err, int r, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	err_set(err, code_for(-r), NULL, -r, "%s: %s", what, strerror(-r));
	return r;
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
	snprintf(ret->veth_host, sizeof(ret->veth_host), "vh-%s", short_id);
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

/* netns_run_in without the err: -errno when the namespace cannot be entered. */
static int
run_in(const char *ns_path, int (*fn)(void *ud), void *ud, int *ret_fn)
{
	struct run_in a = {.ns_path = ns_path, .fn = fn, .ud = ud};
	int r = thread_run(run_in_thread, &a);

	if (r < 0)
		return r;
	if (a.enter_r < 0)
		return a.enter_r;
	*ret_fn = a.r;
	return 0;
}

int
netns_run_in(const char *ns_path, int (*fn)(void *ud), void *ud, struct err *err)
{
	int ret = 0, r;

	if (!ns_path || strnlen(ns_path, PATH_MAX) == PATH_MAX)
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid namespace path");
	r = run_in(ns_path, fn, ud, &ret);
	if (r < 0)
		return fail(err, r, "enter namespace '%s'", ns_path);
	return ret;
}

/* ---- netlink ------------------------------------------------------------------------------ */

/* A NETLINK_ROUTE socket (libnl opens it SOCK_CLOEXEC) in the calling thread's namespace; it
 * stays there whatever namespace its users are in, and holds the namespace alive. */
static int
sock_open(struct nl_sock **ret)
{
	cleanup_(nlsock) struct nl_sock *sk = nl_socket_alloc();

	if (!sk)
		return -ENOMEM;
	int r = netlink_errno(nl_connect(sk, NETLINK_ROUTE));
	if (r < 0)
		return r;
	*ret = TAKE_PTR(sk);
	return 0;
}

static bool
is_missing(int r)
{
	return r == -ENODEV || r == -ENOENT;
}

/* ip link show <name> */
static int
link_get(struct nl_sock *sk, const char *name, struct rtnl_link **ret)
{
	return netlink_errno(rtnl_link_get_kernel(sk, 0, name, ret));
}

static int
link_index(struct nl_sock *sk, const char *name, int *ret)
{
	cleanup_(rtlink) struct rtnl_link *l = NULL;
	int r = link_get(sk, name, &l);

	if (r < 0)
		return r;
	*ret = rtnl_link_get_ifindex(l);
	return 0;
}

/* ip link set <name> [master <master>] up */
static int
link_set_up(struct nl_sock *sk, const char *name, int master_index)
{
	cleanup_(rtlink) struct rtnl_link *orig = rtnl_link_alloc();
	cleanup_(rtlink) struct rtnl_link *change = rtnl_link_alloc();

	if (!orig || !change)
		return -ENOMEM;
	/* no index: the kernel finds the link by IFLA_IFNAME */
	rtnl_link_set_name(change, name);
	if (master_index > 0)
		rtnl_link_set_master(change, master_index);
	rtnl_link_set_flags(change, IFF_UP);
	return netlink_errno(rtnl_link_change(sk, orig, change, 0));
}

/* ip link del <name>; missing is success */
static int
link_del(struct nl_sock *sk, const char *name)
{
	cleanup_(rtlink) struct rtnl_link *l = rtnl_link_alloc();

	if (!l)
		return -ENOMEM;
	rtnl_link_set_name(l, name);
	int r = netlink_errno(rtnl_link_delete(sk, l));
	return is_missing(r) ? 0 : r;
}

/* ip link add <name> [address <mac>] type bridge && ip link set <name> up */
static int
bridge_add(struct nl_sock *sk, const char *name, const uint8_t mac[6])
{
	cleanup_(rtlink) struct rtnl_link *l = rtnl_link_bridge_alloc();
	cleanup_(nladdr) struct nl_addr *lladdr = mac ? nl_addr_build(AF_LLC, mac, 6) : NULL;

	if (!l || (mac && !lladdr))
		return -ENOMEM;
	rtnl_link_set_name(l, name);
	if (lladdr)
		rtnl_link_set_addr(l, lladdr);
	rtnl_link_set_flags(l, IFF_UP);
	return netlink_errno(rtnl_link_add(sk, l, NLM_F_CREATE | NLM_F_EXCL));
}

/* ip link add <host> type veth peer name <peer> netns <ns_path> */
static int
veth_add(struct nl_sock *sk, const char *host, const char *peer_name, const char *ns_path)
{
	cleanup_(veth) struct rtnl_link *veth = rtnl_link_veth_alloc();
	cleanup_close int ns_fd = open(ns_path, O_RDONLY | O_CLOEXEC);

	if (ns_fd < 0)
		return -errno;
	if (!veth)
		return -ENOMEM;
	struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
	rtnl_link_set_name(veth, host);
	rtnl_link_set_name(peer, peer_name);
	/* the peer is born in the namespace: it never shows up in the host's */
	rtnl_link_set_ns_fd(peer, ns_fd);
	rtnl_link_put(peer);
	return netlink_errno(rtnl_link_add(sk, veth, NLM_F_CREATE | NLM_F_EXCL));
}

/* ip addr add <ip>/<prefix> dev <ifindex>; -EEXIST when the link already has exactly it */
static int
addr_add(struct nl_sock *sk, int ifindex, uint32_t ip, unsigned prefix)
{
	cleanup_(rtaddr) struct rtnl_addr *a = rtnl_addr_alloc();
	uint32_t be = htonl(ip);
	cleanup_(nladdr) struct nl_addr *local = nl_addr_build(AF_INET, &be, sizeof(be));

	if (!a || !local)
		return -ENOMEM;
	nl_addr_set_prefixlen(local, (int)prefix);
	rtnl_addr_set_family(a, AF_INET);
	rtnl_addr_set_ifindex(a, ifindex);
	int r = netlink_errno(rtnl_addr_set_local(a, local));
	if (r < 0)
		return r;
	rtnl_addr_set_prefixlen(a, (int)prefix);
	return netlink_errno(rtnl_addr_add(sk, a, NLM_F_EXCL));
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

struct ns_add {
	const char *ns_path;
	struct nl_sock *sk; /* out: a socket inside the new namespace */
	int r;
};

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
	if (mount(self, a->ns_path, "none", MS_BIND, NULL) < 0) {
		a->r = -errno;
		return NULL;
	}
	a->r = sock_open(&a->sk);
	return NULL;
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

/* ip netns add <ns>: a thread unshares a fresh namespace, bind-mounts it on the file and opens
 * a netlink socket in it (returned), then exits. */
static int
ns_add(const char *ns_path, struct nl_sock **ret_sk)
{
	struct ns_add a = {.ns_path = ns_path};
	int r = run_dir_prepare();

	if (r == 0)
		r = ns_file_create(ns_path);
	if (r < 0)
		return r;
	r = thread_run(ns_add_thread, &a);
	if (r == 0)
		r = a.r;
	if (r < 0) {
		if (a.sk)
			nl_socket_free(a.sk);
		ns_del(ns_path);
		return r;
	}
	*ret_sk = a.sk;
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
link_kind(struct rtnl_link *l)
{
	const char *kind = rtnl_link_get_type(l);

	return kind ? kind : "device";
}

/* The bridge as it is, created when missing; ERR_EXISTS when the name is not a bridge. */
static int
bridge_get_or_add(struct nl_sock *sk, const char *bridge, uint32_t gateway, struct rtnl_link **ret,
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
	if (!rtnl_link_is_bridge(*ret))
		return err_set(err, ERR_EXISTS, NULL, EEXIST,
			       "a link of type '%s' already has this name", link_kind(*ret));
	return 0;
}

int
netns_bridge_ensure(const char *bridge, uint32_t gateway, unsigned prefix, struct err *err)
{
	cleanup_(nlsock) struct nl_sock *sk = NULL;
	cleanup_(rtlink) struct rtnl_link *l = NULL;
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
		r = addr_add(sk, rtnl_link_get_ifindex(l), gateway, prefix);
		r = r == -EEXIST ? 0 : r;
		if (r < 0)
			r = fail(err, r, "add address");
	}
	if (r == 0 && !(rtnl_link_get_flags(l) & IFF_UP) && (r = link_set_up(sk, bridge, 0)) < 0)
		r = fail(err, r, "set up");
	if (r < 0)
		err_wrap(err, "bridge '%s'", bridge);
	return r;
}

int
netns_bridge_delete(const char *bridge, struct err *err)
{
	cleanup_(nlsock) struct nl_sock *sk = NULL;
	cleanup_(rtlink) struct rtnl_link *l = NULL;
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
	if (!rtnl_link_is_bridge(l))
		return err_set(err, ERR_PRECONDITION, NULL, EINVAL,
			       "bridge '%s': a link of type '%s', left alone", bridge,
			       link_kind(l));
	/* ip link del <bridge> */
	r = link_del(sk, bridge);
	return r < 0 ? fail(err, r, "bridge '%s': delete", bridge) : 0;
}

/* ---- a machine's plumbing ----------------------------------------------------------------- */

struct build {
	const struct netns_names *n;
	struct nl_sock *host; /* in the caller's (host) namespace */
	struct nl_sock *ns;   /* in the machine's namespace */
	int host_bridge;      /* ifindex */
	bool ns_made, veth_made;
};

/* ip tuntap add <tap> mode tap, from inside the namespace: rtnetlink cannot create a TAP. The
 * VMM re-opens it by name and adds IFF_VNET_HDR itself when it wants it. */
static int
tap_add(void *ud)
{
	const char *name = ud;
	struct ifreq ifr = {.ifr_flags = IFF_TAP | IFF_NO_PI};
	cleanup_close int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0)
		return -errno;
	return 0;
}

/* ip link del <veth_host>, when it is a veth: a leftover host end of this machine (its
 * namespace is dying, the kernel takes the pair away asynchronously, or is held elsewhere).
 * Any other kind of link with the name is not ours: -EEXIST. Missing: 0. */
static int
leftover_veth_del(struct nl_sock *sk, const struct netns_names *n)
{
	cleanup_(rtlink) struct rtnl_link *old = NULL;
	int r = link_get(sk, n->veth_host, &old);

	if (is_missing(r))
		return 0;
	if (r < 0)
		return r;
	if (!rtnl_link_is_veth(old))
		return -EEXIST;
	log_info("machine netns '%s': deleting the leftover host end '%s'", n->ns, n->veth_host);
	return link_del(sk, n->veth_host);
}

/* ip link add <veth_host> type veth peer name <veth_ns> netns <ns>, reclaiming the name from
 * a leftover host end (a machine deleted and created again within the kernel's cleanup). */
static int
veth_add_reclaiming(struct nl_sock *sk, const struct netns_names *n)
{
	int r = veth_add(sk, n->veth_host, n->veth_ns, n->ns_path);

	if (r != -EEXIST || leftover_veth_del(sk, n) < 0)
		return r;
	return veth_add(sk, n->veth_host, n->veth_ns, n->ns_path);
}

static int
build_host_side(struct build *b, const char *host_bridge, struct err *err)
{
	const struct netns_names *n = b->n;
	int r;

	/* ip netns add <ns> */
	r = ns_add(n->ns_path, &b->ns);
	if (r < 0)
		return fail(err, r, "create namespace");
	b->ns_made = true;
	/* ip link add <veth_host> type veth peer name <veth_ns> netns <ns> */
	r = veth_add_reclaiming(b->host, n);
	if (r < 0)
		return fail(err, r, "create veth '%s'", n->veth_host);
	b->veth_made = true;
	/* ip link set <veth_host> master <host_bridge> up */
	r = link_set_up(b->host, n->veth_host, b->host_bridge);
	if (r < 0)
		return fail(err, r, "attach '%s' to '%s'", n->veth_host, host_bridge);
	return 0;
}

static int
build_ns_side(struct build *b, struct err *err)
{
	const struct netns_names *n = b->n;
	int r, br = 0, tap_r = 0;

	/* ip -n <ns> link add <bridge> type bridge; ip -n <ns> link set <bridge> up */
	r = bridge_add(b->ns, n->bridge, NULL);
	if (r == 0)
		r = link_index(b->ns, n->bridge, &br);
	if (r < 0)
		return fail(err, r, "create bridge '%s'", n->bridge);
	/* ip -n <ns> link set <veth_ns> master <bridge> up */
	r = link_set_up(b->ns, n->veth_ns, br);
	if (r < 0)
		return fail(err, r, "attach '%s' to '%s'", n->veth_ns, n->bridge);
	/* ip -n <ns> tuntap add <tap> mode tap */
	r = run_in(n->ns_path, tap_add, (void *)n->tap, &tap_r);
	if (r < 0 || tap_r < 0)
		return fail(err, r < 0 ? r : tap_r, "create tap '%s'", n->tap);
	/* ip -n <ns> link set <tap> master <bridge> up */
	r = link_set_up(b->ns, n->tap, br);
	if (r < 0)
		return fail(err, r, "attach '%s' to '%s'", n->tap, n->bridge);
	/* ip -n <ns> link set lo up */
	r = link_set_up(b->ns, "lo", 0);
	if (r < 0)
		return fail(err, r, "set 'lo' up");
	return 0;
}

/* Undoes a half-built machine, last step first. The host veth end goes explicitly (it is not
 * ours when creating it failed); the namespace takes eth0, br0 and tap0 with it. */
static void
build_rollback(struct build *b)
{
	int r;

	/* the socket inside would keep the namespace alive */
	nl_socket_free(TAKE_PTR(b->ns));
	if (b->veth_made && (r = link_del(b->host, b->n->veth_host)) < 0)
		log_warn("rollback: delete '%s': %s", b->n->veth_host, strerror(-r));
	if (b->ns_made && (r = ns_del(b->n->ns_path)) < 0)
		log_warn("rollback: delete namespace '%s': %s", b->n->ns, strerror(-r));
}

int
netns_machine_create(const struct netns_names *n, const char *host_bridge, struct err *err)
{
	struct build b = {.n = n};
	int r = names_check(n, err);

	if (r < 0)
		return r;
	if (!ifname_ok(host_bridge, IFNAMSIZ))
		return err_set(err, ERR_INVALID, NULL, EINVAL, "invalid bridge name '%.16s'",
			       host_bridge ? host_bridge : "");
	r = sock_open(&b.host);
	if (r < 0)
		r = fail(err, r, "open netlink");
	if (r == 0 && (r = link_index(b.host, host_bridge, &b.host_bridge)) < 0)
		r = is_missing(r) ? err_set(err, ERR_PRECONDITION, NULL, -r,
					    "host bridge '%s' does not exist", host_bridge)
				  : fail(err, r, "read host bridge '%s'", host_bridge);
	if (r == 0)
		r = build_host_side(&b, host_bridge, err);
	if (r == 0)
		r = build_ns_side(&b, err);
	if (r < 0)
		build_rollback(&b);
	nl_socket_free(b.ns);
	nl_socket_free(b.host);
	if (r < 0)
		err_wrap(err, "machine netns '%s'", n->ns);
	return r;
}

int
netns_machine_delete(const struct netns_names *n, struct err *err)
{
	cleanup_(nlsock) struct nl_sock *sk = NULL;
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
