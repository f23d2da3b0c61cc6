-- MQTT ingestion (src/mqtt/). The broker authenticates devices with mosquitto-go-auth against
-- these two tables, created exactly as the per-customer chart of seed 002 defines them and
-- queried with its three queries verbatim; that is why they are unquoted and in the default
-- schema (the queries name them so), unlike every other table of the portal.
CREATE TABLE mqtt_users (
  username VARCHAR(255) PRIMARY KEY,
  password_hash VARCHAR(255) NOT NULL,
  is_active BOOLEAN DEFAULT true,
  is_superuser BOOLEAN DEFAULT false,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE mqtt_acls (
  username VARCHAR(255),
  topic VARCHAR(255),
  access INTEGER,  -- 1=read, 2=write, 3=read+write, 4=subscribe
  PRIMARY KEY (username, topic)
);

-- A device's broker account. The seed's tables know nothing of devices, so this table ties an
-- account to its device; mqtt_users and mqtt_acls hold what the broker reads.
CREATE TABLE monitoring."MqttCredentials" (
    "DeviceId"  integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "Username"  varchar(255) NOT NULL UNIQUE,
    "CreatedAt" timestamptz NOT NULL DEFAULT now(),
    "CreatedBy" text NOT NULL,
    "RotatedAt" timestamptz
);

-- Revoking credentials, or deleting the device (or its site), removes the broker account and
-- its ACLs in the same transaction: a device that is gone can no longer connect, and one still
-- connected can no longer publish (the ACL query finds nothing).
CREATE FUNCTION monitoring.mqtt_credentials_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM mqtt_acls WHERE username = OLD."Username";
    DELETE FROM mqtt_users WHERE username = OLD."Username" AND NOT coalesce(is_superuser, false);
    RETURN OLD;
END
$$;
CREATE TRIGGER "MqttCredentialsDeleted" AFTER DELETE ON monitoring."MqttCredentials"
    FOR EACH ROW EXECUTE FUNCTION monitoring.mqtt_credentials_deleted();

-- The topics of a device's ACLs carry its externalId (sensor/<externalId>/#, ...): a renamed
-- device's ACLs follow its new externalId, so the portal still knows whose readings arrive.
CREATE FUNCTION monitoring.mqtt_device_renamed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mqtt_acls a
       SET topic = split_part(a.topic, '/', 1) || '/' || NEW."ExternalId" || '/#'
      FROM monitoring."MqttCredentials" c
     WHERE c."DeviceId" = NEW."Id" AND a.username = c."Username";
    RETURN NEW;
END
$$;
CREATE TRIGGER "MqttDeviceRenamed" AFTER UPDATE OF "ExternalId" ON monitoring."Devices"
    FOR EACH ROW WHEN (OLD."ExternalId" IS DISTINCT FROM NEW."ExternalId")
    EXECUTE FUNCTION monitoring.mqtt_device_renamed();

-- Devices may publish over MQTT.
ALTER TABLE monitoring."Devices" DROP CONSTRAINT "Devices_Source_check",
    ADD CONSTRAINT "Devices_Source_check" CHECK ("Source" IN ('modbus-tcp', 'push', 'mqtt'));

-- A device that no longer publishes over MQTT (its source changed) keeps no broker account: the
-- device page offers MQTT credentials only for MQTT devices, so one left behind could be neither
-- seen nor revoked there.
CREATE FUNCTION monitoring.mqtt_device_source_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM monitoring."MqttCredentials" WHERE "DeviceId" = NEW."Id";
    RETURN NEW;
END
$$;
CREATE TRIGGER "MqttDeviceSourceChanged" AFTER UPDATE OF "Source" ON monitoring."Devices"
    FOR EACH ROW WHEN (OLD."Source" = 'mqtt' AND NEW."Source" <> 'mqtt')
    EXECUTE FUNCTION monitoring.mqtt_device_source_changed();
