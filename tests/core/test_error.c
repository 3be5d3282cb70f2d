/* SPDX-License-Identifier: Apache-2.0 */
#include "core/error.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

Test(error, names_every_project_code)
{
#define CHECK_ROW(name, value, msg)                                            \
	cr_assert_str_eq(rmq_errname(value), #name);                           \
	cr_assert_str_eq(rmq_strerror(value), msg);                            \
	cr_assert_lt(value, RMQ_ERR_BASE, #name " must lie below -4096");
	RMQ_ERRORS(CHECK_ROW)
#undef CHECK_ROW
}

Test(error, names_negated_errno)
{
	cr_assert_str_eq(rmq_errname(-ENOENT), "ENOENT");
	cr_assert_str_eq(rmq_strerror(-ENOENT), "No such file or directory");
	cr_assert_str_eq(rmq_errname(-EIO), "EIO");
}

Test(error, success_and_unknown)
{
	cr_assert_str_eq(rmq_strerror(0), "success");
	cr_assert_str_eq(rmq_errname(0), "OK");
	cr_assert_str_eq(rmq_strerror(-999999), "unknown error");
	cr_assert_str_eq(rmq_errname(-999999), "UNKNOWN");
	cr_assert_not_null(rmq_strerror(-4000));
}
