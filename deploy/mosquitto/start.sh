#!/bin/sh
# Starts the stack's Mosquitto (image iegomez/mosquitto-go-auth) with mosquitto.conf plus the
# database connection of its auth plugin, taken from the environment so that no password is
# written into a config file or map:
#   MQTT_DB_HOST, MQTT_DB_PORT, MQTT_DB_NAME, MQTT_DB_USER, MQTT_DB_PASSWORD
# (the role the portal creates with Mqtt__BrokerDatabaseUser / Mqtt__BrokerDatabasePassword).
# Used as is by docker-compose.prod.yml and the Helm chart, and run by tests/api/mqtt.rs.
set -eu
: "${MQTT_DB_HOST:?MQTT_DB_HOST: the database host}"
: "${MQTT_DB_PORT:=5432}"
: "${MQTT_DB_NAME:?MQTT_DB_NAME: the portal database (POSTGRES_DB)}"
: "${MQTT_DB_USER:?MQTT_DB_USER: the broker role (Mqtt__BrokerDatabaseUser)}"
: "${MQTT_DB_PASSWORD:?set Mqtt__BrokerDatabasePassword (openssl rand -hex 32): the broker logs in to the database with it}"
template=${MQTT_CONF_TEMPLATE:-/mosquitto/config/mosquitto.conf}
conf=${MQTT_CONF:-/tmp/mosquitto.conf}
case "$MQTT_DB_PASSWORD" in
*"
"*) echo "MQTT_DB_PASSWORD must be one line" >&2; exit 2 ;;
esac
# Started as root (the image's default), Mosquitto drops to its user `mosquitto` before it
# writes its persistence file: the data volume must be that user's.
if [ "$(id -u)" = 0 ] && [ -d "${MQTT_DATA:-/mosquitto/data}" ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto: "${MQTT_DATA:-/mosquitto/data}"
fi
umask 077
{
    cat "$template"
    # A template without a final newline (a ConfigMap value) must not swallow the next line.
    echo
    printf 'auth_opt_pg_host %s\n' "$MQTT_DB_HOST"
    printf 'auth_opt_pg_port %s\n' "$MQTT_DB_PORT"
    printf 'auth_opt_pg_dbname %s\n' "$MQTT_DB_NAME"
    printf 'auth_opt_pg_user %s\n' "$MQTT_DB_USER"
    printf 'auth_opt_pg_password %s\n' "$MQTT_DB_PASSWORD"
} >"$conf"
exec "${MOSQUITTO_BIN:-/usr/sbin/mosquitto}" -c "$conf"
