/*
 * A test-only Mosquitto 2.0 auth plugin standing in for mosquitto-go-auth, which Debian does not
 * package: Debian's Mosquitto loads it with the stack's own deploy/mosquitto/mosquitto.conf, so
 * the broker in tests/api/mqtt.rs authenticates exactly as configured there, with the three
 * auth_opt_pg_*query lines (seed 002's queries, verbatim) run by libpq against the portal's
 * mqtt_users and mqtt_acls tables.
 *
 * It does what go-auth's postgres backend does (backends/postgres.go, topics/topics.go):
 *   - CONNECT: the user query with the username as $1; exactly one row whose value is a bcrypt
 *     hash that the password matches (libxcrypt's crypt_r, not the portal's bcrypt crate);
 *   - every ACL check: the superuser query ($1 username; a count > 0 allows everything), else the
 *     ACL query with $1 username and $2 the access asked for (1 read, 2 write, 4 subscribe), each
 *     topic returned (with %u and %c replaced) matched against the topic as go-auth matches:
 *     equal, or level by level where + matches one level and a final # the rest.
 * It refuses to load for any backend but postgres or any hasher but bcrypt. What it cannot show
 * is go-auth itself: its Go bcrypt, its option parsing, caching and logging (README, MQTT).
 *
 * libpq is linked as the runtime library (libpq.so.5, which the PostgreSQL client the tests use
 * already brings) with the few declarations below instead of libpq-dev's header: installing
 * libpq-dev can pull a newer libpq5 and with it upgrade the PostgreSQL server the tests run.
 */
#include <crypt.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libpq's stable C ABI (libpq-fe.h), only what this plugin calls. */
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
typedef unsigned int Oid;
#define CONNECTION_OK 0
#define PGRES_TUPLES_OK 2
extern PGconn *PQconnectdbParams(const char *const *keywords, const char *const *values, int expand_dbname);
extern int PQstatus(const PGconn *conn);
extern void PQfinish(PGconn *conn);
extern char *PQerrorMessage(const PGconn *conn);
extern PGresult *PQexecParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                              const char *const *paramValues, const int *paramLengths, const int *paramFormats,
                              int resultFormat);
extern int PQresultStatus(const PGresult *res);
extern void PQclear(PGresult *res);
extern int PQntuples(const PGresult *res);
extern int PQgetisnull(const PGresult *res, int tup_num, int field_num);
extern char *PQgetvalue(const PGresult *res, int tup_num, int field_num);

static mosquitto_plugin_id_t *plugin_id;
static PGconn *conn;
static const char *keywords[7] = {"host", "port", "dbname", "user", "password", "sslmode", NULL};
static char *values[7];
static char *userquery, *superquery, *aclquery;

static const char *option(struct mosquitto_opt *opts, int count, const char *key)
{
	for (int i = 0; i < count; i++) {
		if (strcmp(opts[i].key, key) == 0) return opts[i].value;
	}
	return NULL;
}

static char *copy(const char *s) { return s ? strdup(s) : NULL; }

/* The connection, opened on first use and again after any failure. */
static PGconn *db(void)
{
	if (conn && PQstatus(conn) == CONNECTION_OK) return conn;
	if (conn) PQfinish(conn);
	conn = PQconnectdbParams(keywords, (const char *const *)values, 0);
	if (PQstatus(conn) != CONNECTION_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "tau-auth: cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
		PQfinish(conn);
		conn = NULL;
	}
	return conn;
}

static PGresult *run(const char *sql, int n, const char *const *params)
{
	PGconn *c = db();
	if (!c) return NULL;
	PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "tau-auth: query failed: %s", PQerrorMessage(c));
		PQclear(r);
		PQfinish(conn);
		conn = NULL;
		return NULL;
	}
	return r;
}

/* go-auth's topics.Match. */
static int match_levels(const char *route, const char *topic)
{
	for (;;) {
		const char *r_end = strchr(route, '/');
		const char *t_end = strchr(topic, '/');
		size_t r_len = r_end ? (size_t)(r_end - route) : strlen(route);
		size_t t_len = t_end ? (size_t)(t_end - topic) : strlen(topic);
		if (r_len == 1 && route[0] == '#') return r_end == NULL;
		if (!(r_len == 1 && route[0] == '+') && (r_len != t_len || strncmp(route, topic, r_len) != 0)) return 0;
		if (!r_end && !t_end) return 1;
		if (!t_end) {
			/* The topic ended: only a final "#" matches what is left of the route. */
			return strcmp(r_end + 1, "#") == 0;
		}
		if (!r_end) return 0;
		route = r_end + 1;
		topic = t_end + 1;
	}
}

static int topics_match(const char *saved, const char *given)
{
	return strcmp(saved, given) == 0 || match_levels(saved, given);
}

/* saved with every %u and %c replaced (go-auth's strings.Replace). */
static char *expand(const char *saved, const char *username, const char *client_id)
{
	size_t cap = strlen(saved) * (strlen(username) + strlen(client_id) + 1) + 1;
	char *out = calloc(1, cap);
	if (!out) return NULL;
	for (const char *p = saved; *p; p++) {
		if (p[0] == '%' && (p[1] == 'u' || p[1] == 'c')) {
			strcat(out, p[1] == 'u' ? username : client_id);
			p++;
		} else {
			strncat(out, p, 1);
		}
	}
	return out;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	if (!ed->username || !ed->password) return MOSQ_ERR_AUTH;
	const char *params[1] = {ed->username};
	PGresult *r = run(userquery, 1, params);
	if (!r) return MOSQ_ERR_AUTH;
	int ok = 0;
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
		const char *hash = PQgetvalue(r, 0, 0);
		/* hasher bcrypt: nothing but a bcrypt hash is ever compared. */
		if (strncmp(hash, "$2a$", 4) == 0 || strncmp(hash, "$2b$", 4) == 0) {
			struct crypt_data data;
			memset(&data, 0, sizeof data);
			const char *out = crypt_r(ed->password, hash, &data);
			ok = out && out[0] != '*' && strcmp(out, hash) == 0;
		}
	}
	PQclear(r);
	mosquitto_log_printf(MOSQ_LOG_INFO, "tau-auth: %s %s", ed->username, ok ? "authenticated" : "refused");
	return ok ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	const char *client_id = mosquitto_client_id(ed->client);
	if (!username || !ed->topic) return MOSQ_ERR_ACL_DENIED;
	if (ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	const char *user_params[1] = {username};
	if (superquery) {
		PGresult *r = run(superquery, 1, user_params);
		int super = r && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) && atoll(PQgetvalue(r, 0, 0)) > 0;
		if (r) PQclear(r);
		if (super) return MOSQ_ERR_SUCCESS;
	}
	char access[12];
	snprintf(access, sizeof access, "%d", ed->access);
	const char *acl_params[2] = {username, access};
	PGresult *r = run(aclquery, 2, acl_params);
	if (!r) return MOSQ_ERR_ACL_DENIED;
	int allowed = 0;
	for (int i = 0; i < PQntuples(r) && !allowed; i++) {
		char *saved = expand(PQgetvalue(r, i, 0), username, client_id ? client_id : "");
		allowed = saved && topics_match(saved, ed->topic);
		free(saved);
	}
	PQclear(r);
	mosquitto_log_printf(MOSQ_LOG_INFO, "tau-auth: %s access %d to %s %s", username, ed->access, ed->topic,
	                     allowed ? "allowed" : "denied");
	return allowed ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data, struct mosquitto_opt *opts,
                          int opt_count)
{
	(void)user_data;
	plugin_id = identifier;
	const char *backends = option(opts, opt_count, "backends");
	const char *hasher = option(opts, opt_count, "hasher");
	if (!backends || strcmp(backends, "postgres") != 0 || !hasher || strcmp(hasher, "bcrypt") != 0) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "tau-auth: only auth_opt_backends postgres with auth_opt_hasher bcrypt");
		return MOSQ_ERR_INVAL;
	}
	userquery = copy(option(opts, opt_count, "pg_userquery"));
	superquery = copy(option(opts, opt_count, "pg_superquery"));
	aclquery = copy(option(opts, opt_count, "pg_aclquery"));
	const char *names[6] = {"pg_host", "pg_port", "pg_dbname", "pg_user", "pg_password", "pg_sslmode"};
	for (int i = 0; i < 6; i++) values[i] = copy(option(opts, opt_count, names[i]));
	if (!userquery || !aclquery || !values[2] || !values[3] || !values[4]) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "tau-auth: missing pg_userquery, pg_aclquery, pg_dbname, pg_user or pg_password");
		return MOSQ_ERR_INVAL;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "tau-auth: user query: %s", userquery);
	mosquitto_log_printf(MOSQ_LOG_INFO, "tau-auth: superuser query: %s", superquery ? superquery : "(none)");
	mosquitto_log_printf(MOSQ_LOG_INFO, "tau-auth: ACL query: %s", aclquery);
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if (rc == MOSQ_ERR_SUCCESS) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	return rc;
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	if (conn) PQfinish(conn);
	conn = NULL;
	return MOSQ_ERR_SUCCESS;
}
