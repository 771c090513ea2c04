/* The image store's pure parts: name[:tag] rules, the entrypoint script made from an image's
 * OCI config (quoting), the ext4 magic and the sha256 of a file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "macro.h"

static void
test_tag_normalize(void **state)
{
	static const struct {
		const char *in, *out;
	} ok[] = {
		{"web", "web:latest"},         {"web:v2", "web:v2"},
		{"a.b_c-d", "a.b_c-d:latest"}, {"x:Release-1.0", "x:Release-1.0"},
		{"9lives", "9lives:latest"},
	};
	static const char *const bad[] = {
		"",        "Web",
		"-web",    "web:",
		":v1",     "a b",
		"a/b",     "a:b:c",
		"web:v 1", "../x",
		"x:",      "0123456789012345678901234567890123456789012345678901234567890123"};
	char buf[160];

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct err err = {0};
		assert_int_equal(image_tag_normalize(ok[i].in, buf, sizeof(buf), &err), 0);
		assert_string_equal(buf, ok[i].out);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct err err = {0};
		assert_true(image_tag_normalize(bad[i], buf, sizeof(buf), &err) < 0);
		assert_int_equal(err.code, ERR_INVALID);
	}
}

static void
test_entrypoint_script(void **state)
{
	cleanup_strbuf struct strbuf out = {0};
	const char *meta = "{\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"echo 'hi' $HOME\"],"
			   "\"env\":[\"A=b c\",\"Q=it's\"],\"workdir\":\"/srv/my app\"}";

	(void)state;
	assert_int_equal(image_entrypoint_script(meta, &out), 1);
	assert_non_null(strstr(out.data, "\nexport 'A=b c'\n"));
	assert_non_null(strstr(out.data, "\nexport 'Q=it'\\''s'\n"));
	assert_non_null(strstr(out.data, "\ncd '/srv/my app' || exit 1\n"));
	assert_non_null(strstr(out.data, "\nexec '/bin/sh' '-c' 'echo '\\''hi'\\'' $HOME'\n"));
}

static void
test_entrypoint_none(void **state)
{
	cleanup_strbuf struct strbuf out = {0};

	(void)state;
	assert_int_equal(image_entrypoint_script("{}", &out), 0);
	assert_int_equal(image_entrypoint_script("", &out), 0);
	assert_int_equal(image_entrypoint_script("{\"workdir\":\"/x\"}", &out), 0);
	/* not our JSON: no script rather than a wrong one */
	assert_int_equal(image_entrypoint_script("{\"bogus\":1}", &out), 0);
	assert_null(out.data);
}

static void
test_ext4_magic_and_sha256(void **state)
{
	char path[] = "/tmp/test_image-XXXXXX", hex[65];
	int fd = mkstemp(path);
	unsigned char m[2] = {0x53, 0xef};

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	assert_false(image_is_ext4(fd));
	assert_int_equal(image_sha256_fd(fd, hex), 0);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_int_equal(pwrite(fd, "abc", 3, 0), 3);
	assert_int_equal(image_sha256_fd(fd, hex), 0);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(pwrite(fd, m, 2, 1080), 2);
	assert_true(image_is_ext4(fd));
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tag_normalize),
		cmocka_unit_test(test_entrypoint_script),
		cmocka_unit_test(test_entrypoint_none),
		cmocka_unit_test(test_ext4_magic_and_sha256),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
