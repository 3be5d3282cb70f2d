/* SPDX-License-Identifier: Apache-2.0 */
/*
 * flags.c - strict flag parsing (see flags.h).
 *
 * Parsing is by hand rather than strtoull(): strtoull accepts leading
 * spaces, signs ("-1" wraps to 2^64-1) and hex, all of which a flag value
 * must refuse.
 */
#include "core/flags.h"

#include "core/error.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

__attribute__((format(printf, 3, 4))) static int
flag_fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return RMQ_EBADFLAG;
}

/* Reads decimal digits at *p into *out; advances *p.  Returns 0, or -1 on
 * no digits, or -2 on overflow. */
static int read_digits(const char **p, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -2;
		v = v * 10 + d;
	}
	*p = s;
	*out = v;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mult;
};

static const struct unit size_units[] = {
	{"", 1},
	{"B", 1},
	{"KiB", 1ULL << 10},
	{"MiB", 1ULL << 20},
	{"GiB", 1ULL << 30},
	{"TiB", 1ULL << 40},
	{"kB", 1000ULL},
	{"KB", 1000ULL},
	{"MB", 1000ULL * 1000},
	{"GB", 1000ULL * 1000 * 1000},
	{"TB", 1000ULL * 1000 * 1000 * 1000},
};

static const struct unit duration_units[] = {
	{"ns", 1},
	{"us", 1000ULL},
	{"ms", 1000ULL * 1000},
	{"s", 1000ULL * 1000 * 1000},
	{"m", 60ULL * 1000 * 1000 * 1000},
	{"h", 3600ULL * 1000 * 1000 * 1000},
	{"d", 86400ULL * 1000 * 1000 * 1000},
};

/* Finds the longest unit that prefixes s, so "ms" wins over "m". */
static const struct unit *match_unit(const char *s, const struct unit *units,
				     size_t n, size_t *len)
{
	const struct unit *best = NULL;
	size_t best_len = 0;

	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(units[i].name);
		if (strncmp(s, units[i].name, l) == 0 && (!best || l > best_len)) {
			best = &units[i];
			best_len = l;
		}
	}
	*len = best_len;
	return best;
}

int rmq_parse_size(const char *s, uint64_t *out_bytes, char *err, size_t errlen)
{
	const char *p = s;
	uint64_t v;
	size_t ulen;
	int rc;

	if (!s || !*s)
		return flag_fail(err, errlen, "empty size: expected e.g. 4096, 64KiB, 1GiB");
	rc = read_digits(&p, &v);
	if (rc == -2)
		return flag_fail(err, errlen, "size '%s' overflows", s);
	if (rc < 0)
		return flag_fail(err, errlen,
				 "size '%s' must start with a decimal number (e.g. 64MiB)", s);
	const struct unit *u = match_unit(p, size_units,
					  sizeof(size_units) / sizeof(size_units[0]), &ulen);
	if (!u || p[ulen] != '\0')
		return flag_fail(err, errlen,
				 "size '%s' has an unknown unit '%s': use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB",
				 s, p);
	if (v > UINT64_MAX / u->mult)
		return flag_fail(err, errlen, "size '%s' overflows", s);
	*out_bytes = v * u->mult;
	return 0;
}

int rmq_parse_duration(const char *s, uint64_t *out_ns, char *err, size_t errlen)
{
	const char *p = s;
	uint64_t total = 0;

	if (!s || !*s)
		return flag_fail(err, errlen, "empty duration: expected e.g. 500ms, 10s, 1m30s");
	while (*p) {
		uint64_t v;
		size_t ulen;
		int rc = read_digits(&p, &v);
		if (rc == -2)
			return flag_fail(err, errlen, "duration '%s' overflows", s);
		if (rc < 0)
			return flag_fail(err, errlen,
					 "duration '%s' is malformed at '%s': expected number+unit terms like 500ms or 1m30s",
					 s, p);
		const struct unit *u = match_unit(
			p, duration_units, sizeof(duration_units) / sizeof(duration_units[0]), &ulen);
		if (!u)
			return flag_fail(err, errlen,
					 "duration '%s' needs a unit after %" PRIu64 ": use ns, us, ms, s, m, h or d",
					 s, v);
		p += ulen;
		if (v > UINT64_MAX / u->mult || total > UINT64_MAX - v * u->mult)
			return flag_fail(err, errlen, "duration '%s' overflows", s);
		total += v * u->mult;
	}
	*out_ns = total;
	return 0;
}

int rmq_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
		   char *err, size_t errlen)
{
	const char *p = s;
	uint64_t v;
	int rc;

	if (!s || !*s)
		return flag_fail(err, errlen, "empty number");
	rc = read_digits(&p, &v);
	if (rc == -2)
		return flag_fail(err, errlen, "number '%s' overflows", s);
	if (rc < 0 || *p != '\0')
		return flag_fail(err, errlen, "'%s' is not a non-negative decimal integer", s);
	if (v < min || (max != 0 && v > max))
		return flag_fail(err, errlen, "%" PRIu64 " is outside [%" PRIu64 ", %" PRIu64 "]",
				 v, min, max ? max : UINT64_MAX);
	*out = v;
	return 0;
}

int rmq_parse_bool(const char *s, bool *out, char *err, size_t errlen)
{
	static const char *const yes[] = {"true", "1", "yes", "on"};
	static const char *const no[] = {"false", "0", "no", "off"};

	for (size_t i = 0; s && i < 4; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return flag_fail(err, errlen, "'%s' is not a boolean: use true or false",
			 s ? s : "");
}

char *rmq_format_size(uint64_t bytes, char *buf, size_t buflen)
{
	static const struct unit iec[] = {
		{"TiB", 1ULL << 40}, {"GiB", 1ULL << 30}, {"MiB", 1ULL << 20}, {"KiB", 1ULL << 10}};

	for (size_t i = 0; i < 4; i++) {
		if (bytes != 0 && bytes % iec[i].mult == 0) {
			snprintf(buf, buflen, "%" PRIu64 "%s", bytes / iec[i].mult, iec[i].name);
			return buf;
		}
	}
	snprintf(buf, buflen, "%" PRIu64, bytes);
	return buf;
}

char *rmq_format_duration(uint64_t ns, char *buf, size_t buflen)
{
	size_t n = 0;

	if (ns == 0) {
		snprintf(buf, buflen, "0s");
		return buf;
	}
	buf[0] = '\0';
	/* Largest units first; each contributes only when nonzero. */
	for (size_t i = sizeof(duration_units) / sizeof(duration_units[0]); i-- > 0;) {
		uint64_t q = ns / duration_units[i].mult;
		if (q == 0)
			continue;
		ns -= q * duration_units[i].mult;
		int w = snprintf(buf + n, buflen > n ? buflen - n : 0, "%" PRIu64 "%s", q,
				 duration_units[i].name);
		if (w < 0 || (size_t)w >= buflen - n)
			break;
		n += (size_t)w;
	}
	return buf;
}

static const struct rmq_flag *find_flag(const struct rmq_flag *flags, size_t n,
					const char *name, size_t name_len)
{
	for (size_t i = 0; i < n; i++) {
		if (strlen(flags[i].name) == name_len &&
		    strncmp(flags[i].name, name, name_len) == 0)
			return &flags[i];
	}
	return NULL;
}

static int choice_ok(const char *choices, const char *v)
{
	const char *c = choices;

	while (*c) {
		const char *end = strchr(c, '|');
		size_t len = end ? (size_t)(end - c) : strlen(c);
		if (len > 0 && c[len - 1] == ':') {
			if (strncmp(v, c, len) == 0 && v[len] != '\0')
				return 1;
		} else if (strlen(v) == len && strncmp(v, c, len) == 0) {
			return 1;
		}
		if (!end)
			break;
		c = end + 1;
	}
	return 0;
}

static int apply_flag(const struct rmq_flag *f, const char *v, char *err, size_t errlen)
{
	char why[192];
	uint64_t u;
	int rc = 0;

	switch (f->kind) {
	case RMQ_FLAG_SIZE:
		rc = rmq_parse_size(v, &u, why, sizeof(why));
		break;
	case RMQ_FLAG_DURATION:
		rc = rmq_parse_duration(v, &u, why, sizeof(why));
		break;
	case RMQ_FLAG_UINT:
		rc = rmq_parse_uint(v, f->min, f->max, &u, why, sizeof(why));
		break;
	case RMQ_FLAG_BOOL:
		rc = rmq_parse_bool(v, (bool *)f->dst, why, sizeof(why));
		break;
	case RMQ_FLAG_STRING:
		*(const char **)f->dst = v;
		return 0;
	case RMQ_FLAG_CHOICE:
		if (!choice_ok(f->choices, v)) {
			return flag_fail(err, errlen, "--%s: '%s' is not one of %s",
					 f->name, v, f->choices);
		}
		*(const char **)f->dst = v;
		return 0;
	}
	if (rc < 0)
		return flag_fail(err, errlen, "--%s: %s", f->name, why);
	if (f->kind == RMQ_FLAG_SIZE || f->kind == RMQ_FLAG_DURATION) {
		if (u < f->min || (f->max != 0 && u > f->max)) {
			char lo[32], hi[32];
			if (f->kind == RMQ_FLAG_SIZE) {
				rmq_format_size(f->min, lo, sizeof(lo));
				rmq_format_size(f->max, hi, sizeof(hi));
			} else {
				rmq_format_duration(f->min, lo, sizeof(lo));
				rmq_format_duration(f->max, hi, sizeof(hi));
			}
			return flag_fail(err, errlen, "--%s: '%s' is outside [%s, %s]", f->name,
					 v, lo, f->max ? hi : "unbounded");
		}
	}
	if (f->kind != RMQ_FLAG_BOOL)
		*(uint64_t *)f->dst = u;
	return 0;
}

int rmq_flags_parse(int argc, char **argv, const struct rmq_flag *flags,
		    size_t nflags, int *npos, char *err, size_t errlen)
{
	int pos = 0;
	int rc;

	for (size_t i = 0; i < nflags; i++) {
		if (!flags[i].def)
			continue;
		rc = apply_flag(&flags[i], flags[i].def, err, errlen);
		if (rc < 0)
			return rc; /* A bad default is a programmer error, but say so. */
	}
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			for (i++; i < argc; i++)
				argv[1 + pos++] = argv[i];
			break;
		}
		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			argv[1 + pos++] = a;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
			return 1;
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
		const struct rmq_flag *f = find_flag(flags, nflags, name, name_len);
		if (!f)
			return flag_fail(err, errlen, "unknown flag --%.*s (see --help)",
					 (int)name_len, name);
		const char *v;
		if (eq) {
			v = eq + 1;
		} else if (f->kind == RMQ_FLAG_BOOL) {
			v = "true";
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			return flag_fail(err, errlen, "--%s needs a value", f->name);
		}
		rc = apply_flag(f, v, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (npos)
		*npos = pos;
	return 0;
}

static const char *const kind_names[] = {
	[RMQ_FLAG_SIZE] = "size",
	[RMQ_FLAG_DURATION] = "duration",
	[RMQ_FLAG_UINT] = "n",
	[RMQ_FLAG_BOOL] = "bool",
	[RMQ_FLAG_STRING] = "string",
	[RMQ_FLAG_CHOICE] = "choice",
};

void rmq_flags_usage(FILE *out, const struct rmq_flag *flags, size_t nflags)
{
	for (size_t i = 0; i < nflags; i++) {
		const struct rmq_flag *f = &flags[i];
		char left[64];
		snprintf(left, sizeof(left), "--%s=<%s>", f->name,
			 f->kind == RMQ_FLAG_CHOICE ? f->choices : kind_names[f->kind]);
		fprintf(out, "  %-32s %s", left, f->help);
		if (f->def && *f->def)
			fprintf(out, " (default: %s)", f->def);
		fputc('\n', out);
	}
}
