/* SPDX-License-Identifier: Apache-2.0 */
/*
 * scram.h - SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677):
 * stored verifiers, the server side and the client side, sans-I/O.
 *
 * The exchange, with the state each side is in after each step:
 *
 *   client                                         server
 *   rmq_scram_client_start ── client-first ──────▶ rmq_scram_server_client_first
 *     n,,n=<user>,r=<cnonce>                         → user name; the caller looks
 *                                                      up its verifier (NULL: none)
 *   rmq_scram_client_final ◀──── server-first ──── rmq_scram_server_first
 *                                r=<cnonce><snonce>,s=<salt b64>,i=<iterations>
 *                         ─── client-final ──────▶ rmq_scram_server_client_final
 *     c=<b64 gs2 header>,r=<cnonce><snonce>,p=<proof b64>
 *   rmq_scram_client_finish ◀── server-final ───── (v=<server signature b64>
 *                                                   or e=<error>)
 *
 *   SaltedPassword  = PBKDF2-HMAC-H(password, salt, iterations)
 *   ClientKey       = HMAC(SaltedPassword, "Client Key")
 *   StoredKey       = H(ClientKey)
 *   ServerKey       = HMAC(SaltedPassword, "Server Key")
 *   AuthMessage     = client-first-bare "," server-first "," client-final-without-proof
 *   ClientProof     = ClientKey XOR HMAC(StoredKey, AuthMessage)
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 *
 * The server keeps only the verifier (salt, iterations, StoredKey,
 * ServerKey), never the password: it checks a proof by recovering
 * ClientKey = proof XOR ClientSignature and comparing H(ClientKey) with
 * StoredKey; the client checks the server by its signature.
 *
 * The verifier as text (what the controller stores), ':'-separated:
 *
 *   FIELD       EXAMPLE                         MEANING
 *   mechanism   SCRAM-SHA-256                   or SCRAM-SHA-512
 *   iterations  4096                            decimal, 4096..1000000
 *   salt        W22ZaJ0SNY7soEsUEjb6gQ==        base64, 1..64 bytes
 *   StoredKey   WG5d8oPm3OtcPnkdi4Uo7BkeZkBF…   base64, 32 or 64 bytes
 *   ServerKey   wfPLwcE6nTWhTAmQ7tl2KeoiWGPl…   base64, 32 or 64 bytes
 *
 * What the server accepts (and refuses with the reason in
 * rmq_scram_server_why):
 * - GS2 header "n,," or "y,," (the client supports channel binding but
 *   believes the server does not: true, rmq offers no -PLUS mechanism), with
 *   an optional authzid "a=<name>" only when it equals the user name; "p="
 *   (channel binding) is refused as unsupported.
 * - Names as RFC 5802 saslname: "=2C" is ',' and "=3D" is '='; any other
 *   '=' is refused; the unescaped name must be a valid principal
 *   (principal.h).  Nonces are printable ASCII without ',', 1..255
 *   characters from the client; the server adds RMQ_SCRAM_SNONCE_LEN random
 *   characters.  A leading "m=" (mandatory extension) is refused; other
 *   extensions after the nonce are skipped when well formed.
 * - Messages of at most RMQ_SCRAM_MSG_MAX bytes, no NUL; every attribute
 *   is read inside the message.
 * - client-final: c= must be the base64 of the GS2 header of client-first,
 *   r= the combined nonce (anything else is a replay or a message of
 *   another exchange), p= the last attribute and the proof.
 *
 * A user without a verifier follows the same path: the server answers a
 * salt and iteration count derived from the name and a server secret (the
 * same every time, so repeated probes see a stable answer), and the proof
 * fails as a wrong password does, with the same message.
 *
 * Passwords are used as the bytes given (UTF-8); SASLprep (RFC 4013) is
 * not applied, as Kafka does not: ASCII passwords are unaffected.
 *
 * Nothing here allocates; state lives in caller-owned structs (a session
 * pool embeds them), wiped by the _clear functions.  Not thread-safe per
 * object; objects are independent.  OpenSSL 3 (libcrypto) does the crypto.
 */
#ifndef RMQ_BROKER_SCRAM_H
#define RMQ_BROKER_SCRAM_H

#include "broker/principal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum rmq_scram_mech {
	RMQ_SCRAM_SHA_256 = 1,
	RMQ_SCRAM_SHA_512 = 2,
};

#define RMQ_SCRAM_KEY_MAX 64          /* SHA-512's output */
#define RMQ_SCRAM_SALT_MAX 64
#define RMQ_SCRAM_SALT_LEN 16         /* random salts of verifier_make */
#define RMQ_SCRAM_ITER_MIN 4096       /* RFC 7677's minimum */
#define RMQ_SCRAM_ITER_MAX 1000000    /* bounds a hostile server's cost to a client too */
#define RMQ_SCRAM_ITER_DEFAULT 8192   /* new verifiers, and users that do not exist */
#define RMQ_SCRAM_PASSWORD_MAX 1024
#define RMQ_SCRAM_MSG_MAX 1024        /* any message received */
#define RMQ_SCRAM_OUT_MAX 2048        /* room for any message produced */
#define RMQ_SCRAM_CNONCE_MAX 255
#define RMQ_SCRAM_NONCE_MAX 1024      /* a combined nonce a client accepts */
#define RMQ_SCRAM_SNONCE_LEN 24       /* base64 of 18 random bytes */
#define RMQ_SCRAM_SNONCE_MAX 64       /* a server nonce set by the test hook */
#define RMQ_SCRAM_SECRET_MIN 16       /* server secret for unknown users */
#define RMQ_SCRAM_SECRET_MAX 1024
/* "SCRAM-SHA-512:1000000:" + 3 base64 fields of up to 64 bytes + NUL */
#define RMQ_SCRAM_VERIFIER_TEXT_MAX (14 + 1 + 7 + 1 + 3 * 88 + 2 + 1)

/* The stored form of a user's credentials. */
struct rmq_scram_verifier {
	enum rmq_scram_mech mech;
	uint32_t iterations;
	uint8_t salt_len;
	uint8_t salt[RMQ_SCRAM_SALT_MAX];
	uint8_t stored_key[RMQ_SCRAM_KEY_MAX]; /* rmq_scram_key_len(mech) bytes */
	uint8_t server_key[RMQ_SCRAM_KEY_MAX];
};

/* "SCRAM-SHA-256" / "SCRAM-SHA-512"; NULL for anything else. Static. */
const char *rmq_scram_mech_name(enum rmq_scram_mech mech);

/* The mechanism named name[0..len) (as SASL names it, exact case).
 * Returns 0, or RMQ_EUNSUPPORTED. */
int rmq_scram_mech_parse(const char *name, size_t len, enum rmq_scram_mech *mech);

/* Bytes of the mechanism's hash (32, 64), 0 for an unknown mechanism. */
size_t rmq_scram_key_len(enum rmq_scram_mech mech);

/*
 * A verifier for password (pw_len bytes) with a random salt of
 * RMQ_SCRAM_SALT_LEN bytes.  Returns 0, -EINVAL (unknown mechanism,
 * iterations outside RMQ_SCRAM_ITER_MIN..MAX, a password empty, longer
 * than RMQ_SCRAM_PASSWORD_MAX or holding a NUL), -EIO (the random source
 * or OpenSSL failed).
 */
int rmq_scram_verifier_make(enum rmq_scram_mech mech, const char *pw, size_t pw_len,
			    uint32_t iterations, struct rmq_scram_verifier *out);

/* The same with the salt given (1..RMQ_SCRAM_SALT_MAX bytes): for tests and
 * for checking a password against a verifier. */
int rmq_scram_verifier_make_salted(enum rmq_scram_mech mech, const char *pw, size_t pw_len,
				   const uint8_t *salt, size_t salt_len, uint32_t iterations,
				   struct rmq_scram_verifier *out);

/* Writes v's text form and a NUL into out (cap bytes; RMQ_SCRAM_VERIFIER_TEXT_MAX
 * always suffices).  Returns its length, -EINVAL (v is not a valid verifier),
 * or -ENOSPC. */
int rmq_scram_verifier_encode(const struct rmq_scram_verifier *v, char *out, size_t cap);

/* Parses the text form text[0..len).  Returns 0, RMQ_ECORRUPT (not the
 * form drawn above, or a field out of its range), RMQ_EUNSUPPORTED (an
 * unknown mechanism). */
int rmq_scram_verifier_decode(const char *text, size_t len, struct rmq_scram_verifier *out);

/* ---- server side ------------------------------------------------------- */

/* Fields are private to scram.c; the body is here so callers can embed it. */
struct rmq_scram_server {
	enum rmq_scram_mech mech;
	int state;
	bool fake;               /* the user has no verifier */
	const char *why;         /* the last refusal, for logs; static */
	char user[RMQ_PRINCIPAL_MAX + 1];
	size_t user_len;
	char gs2[RMQ_SCRAM_MSG_MAX];
	size_t gs2_len;
	char bare[RMQ_SCRAM_MSG_MAX]; /* client-first-message-bare */
	size_t bare_len;
	size_t cnonce_len;       /* the nonce starts at bare + cnonce_at */
	size_t cnonce_at;
	char snonce[RMQ_SCRAM_SNONCE_MAX + 1];
	char first[RMQ_SCRAM_OUT_MAX]; /* server-first-message */
	size_t first_len;
	struct rmq_scram_verifier v;
};

/* Prepares s for one exchange of mech (any earlier content is wiped). */
void rmq_scram_server_init(struct rmq_scram_server *s, enum rmq_scram_mech mech);

/*
 * Step 1: the client-first-message msg[0..len).  On success *user points to
 * the unescaped user name (NUL-terminated; valid until s is cleared or
 * initialised again): look up its verifier for s's mechanism.
 * Returns 0, RMQ_EPROTO (malformed: the reason in rmq_scram_server_why),
 * RMQ_EUNSUPPORTED (channel binding "p=", an "m=" extension, an authzid
 * other than the user), RMQ_ETOOBIG (longer than RMQ_SCRAM_MSG_MAX, or a
 * name or nonce over its bound), RMQ_ESTATE (not the first step).
 * Every refusal ends the exchange.
 */
int rmq_scram_server_client_first(struct rmq_scram_server *s, const uint8_t *msg, size_t len,
				  const char **user);

/*
 * Step 2: the server-first-message into out (cap bytes, a NUL after it;
 * RMQ_SCRAM_OUT_MAX suffices), *out_len its length.  v is the user's
 * verifier, or NULL when the user does not exist: then a verifier is made
 * up from the user name and secret (RMQ_SCRAM_SECRET_MIN..MAX bytes, the
 * same on every node and across restarts) so the answer looks
 * like a real user's.  Returns 0, -EINVAL (v of another mechanism or
 * invalid, a short secret), -ENOSPC, -EIO (no random bytes), RMQ_ESTATE.
 */
int rmq_scram_server_first(struct rmq_scram_server *s, const struct rmq_scram_verifier *v,
			   const uint8_t *secret, size_t secret_len, char *out, size_t cap,
			   size_t *out_len);

/*
 * Step 3: the client-final-message msg[0..len).  Writes the
 * server-final-message into out (cap bytes, NUL-terminated; RMQ_SCRAM_OUT_MAX
 * suffices): "v=<signature>" on success, "e=<error>" when refused after a
 * well-ordered step (send it to the client), and sets *out_len (0 when
 * nothing is to be sent).  Returns 0 (authenticated as the user of step 1),
 * -EACCES (wrong proof, or the user does not exist: "e=invalid-proof"
 * both), RMQ_EPROTO (malformed, channel binding does not match, or a nonce
 * that is not this exchange's: a replay), RMQ_ETOOBIG, RMQ_ESTATE (out of
 * order, or after a refusal or success), -ENOSPC.
 */
int rmq_scram_server_client_final(struct rmq_scram_server *s, const uint8_t *msg, size_t len,
				  char *out, size_t cap, size_t *out_len);

/* Why the last step was refused, for logs (never sent to clients: it may
 * say more than the e= value does); "" when nothing was.  Static string. */
const char *rmq_scram_server_why(const struct rmq_scram_server *s);

/* Wipes s (keys and nonces). */
void rmq_scram_server_clear(struct rmq_scram_server *s);

/* Test hook: the server nonce to use instead of random bytes (printable,
 * no ',', at most RMQ_SCRAM_SNONCE_MAX characters).  Before step 2. */
void rmq_scram_server_test_nonce(struct rmq_scram_server *s, const char *snonce);

/* ---- client side ------------------------------------------------------- */

struct rmq_scram_client {
	enum rmq_scram_mech mech;
	int state;
	const char *why;
	char pw[RMQ_SCRAM_PASSWORD_MAX];
	size_t pw_len;
	char cnonce[RMQ_SCRAM_CNONCE_MAX + 1];
	size_t cnonce_len;
	char bare[RMQ_SCRAM_OUT_MAX]; /* client-first-message-bare */
	size_t bare_len;
	uint8_t server_sig[RMQ_SCRAM_KEY_MAX];
	char server_error[64];   /* the e= value of a refusal, for messages */
};

/*
 * Step 1: client-first-message for user (a principal) and password into
 * out (cap bytes, NUL-terminated; RMQ_SCRAM_OUT_MAX suffices).  The password
 * is kept in c until step 2.  Returns 0, -EINVAL (unknown mechanism, a user
 * that is no principal, a password empty, too long or with a NUL),
 * -ENOSPC, -EIO.
 */
int rmq_scram_client_start(struct rmq_scram_client *c, enum rmq_scram_mech mech,
			   const char *user, size_t user_len, const char *pw, size_t pw_len,
			   char *out, size_t cap, size_t *out_len);

/*
 * Step 2: from the server-first-message msg[0..len), the
 * client-final-message into out (as above).  Returns 0, RMQ_EPROTO
 * (malformed, a nonce that does not extend the client's), RMQ_EUNSUPPORTED
 * (an "m=" extension), -EINVAL (iterations outside
 * RMQ_SCRAM_ITER_MIN..MAX), RMQ_ETOOBIG, RMQ_ESTATE, -ENOSPC, -EIO.
 */
int rmq_scram_client_final(struct rmq_scram_client *c, const uint8_t *msg, size_t len,
			   char *out, size_t cap, size_t *out_len);

/*
 * Step 3: the server-final-message msg[0..len).  Returns 0 (the server
 * knows the verifier: it is authenticated too), -EACCES (the server
 * refused us with e=..., or its signature is wrong), RMQ_EPROTO
 * (malformed), RMQ_ETOOBIG, RMQ_ESTATE.
 */
int rmq_scram_client_finish(struct rmq_scram_client *c, const uint8_t *msg, size_t len);

/* Why the last step failed; "" when nothing did.  Static string.  When
 * the server refused with e=..., its value (printable, truncated to 63
 * bytes) is in c->server_error. */
const char *rmq_scram_client_why(const struct rmq_scram_client *c);

/* Wipes c (the password among others). */
void rmq_scram_client_clear(struct rmq_scram_client *c);

/* Test hook: the client nonce (printable, no ',', 1..RMQ_SCRAM_CNONCE_MAX
 * characters) instead of random bytes.  Call after rmq_scram_client_clear /
 * on a zeroed c and before step 1. */
void rmq_scram_client_test_nonce(struct rmq_scram_client *c, const char *cnonce);

#endif /* RMQ_BROKER_SCRAM_H */
