-- Schema v1: identity, sites and devices, and the measurement table.
-- Convention (kept from the original deployment, relied on by the runbook and Grafana):
-- lowercase schema names, quoted PascalCase table and column names.
-- Migrations are append-only: never edit this file once released; add a new one.

CREATE SCHEMA IF NOT EXISTS identity;
CREATE SCHEMA IF NOT EXISTS monitoring;

-- ---------------------------------------------------------------- identity

CREATE TABLE identity."Users" (
    "Id"                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "Email"             text NOT NULL CHECK ("Email" = btrim("Email") AND "Email" LIKE '%_@_%'),
    "DisplayName"       text NOT NULL DEFAULT '',
    -- PHC string (argon2id); the parameters live inside it, so they can be upgraded on login.
    "PasswordHash"      text NOT NULL,
    "IsAdmin"           boolean NOT NULL DEFAULT false,
    "IsDisabled"        boolean NOT NULL DEFAULT false,
    "CreatedAt"         timestamptz NOT NULL DEFAULT now(),
    "PasswordChangedAt" timestamptz NOT NULL DEFAULT now(),
    "LastLoginAt"       timestamptz
);
-- Emails are compared case-insensitively (the seed checks "an account with that email").
CREATE UNIQUE INDEX "UX_Users_Email" ON identity."Users" (lower("Email"));

-- Server-side sessions: only the SHA-256 of the cookie token is stored.
CREATE TABLE identity."Sessions" (
    "Id"         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "TokenHash"  bytea NOT NULL UNIQUE CHECK (length("TokenHash") = 32),
    "UserId"     uuid NOT NULL REFERENCES identity."Users" ("Id") ON DELETE CASCADE,
    "CreatedAt"  timestamptz NOT NULL DEFAULT now(),
    "LastSeenAt" timestamptz NOT NULL DEFAULT now(),
    "ExpiresAt"  timestamptz NOT NULL,
    "IpAddress"  text,
    "UserAgent"  text
);
CREATE INDEX "IX_Sessions_UserId" ON identity."Sessions" ("UserId");
CREATE INDEX "IX_Sessions_ExpiresAt" ON identity."Sessions" ("ExpiresAt");

-- Security-relevant actions: who (kept even when the user is deleted), what, when, from where.
CREATE TABLE identity."AuditLog" (
    "Id"          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "At"          timestamptz NOT NULL DEFAULT now(),
    "ActorUserId" uuid REFERENCES identity."Users" ("Id") ON DELETE SET NULL,
    "ActorEmail"  text NOT NULL,
    "Action"      text NOT NULL,
    "Target"      text,
    "Detail"      jsonb NOT NULL DEFAULT '{}',
    "IpAddress"   text
);
CREATE INDEX "IX_AuditLog_At" ON identity."AuditLog" ("At" DESC);

-- ---------------------------------------------------------------- sites and devices

CREATE TABLE monitoring."Sites" (
    "Id"        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "Name"      text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> ''),
    "Address"   text NOT NULL DEFAULT '',
    -- IANA zone name: every daily/monthly figure and tariff window is computed in it.
    "TimeZone"  text NOT NULL,
    "Notes"     text NOT NULL DEFAULT '',
    "CreatedAt" timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX "UX_Sites_Name" ON monitoring."Sites" (lower("Name"));

CREATE TABLE monitoring."Devices" (
    "Id"                  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "SiteId"              integer NOT NULL REFERENCES monitoring."Sites" ("Id") ON DELETE CASCADE,
    -- The key every ingestion path (API, poller, fleet) uses to find the device.
    "ExternalId"          text NOT NULL UNIQUE CHECK ("ExternalId" = btrim("ExternalId") AND "ExternalId" <> ''),
    "Name"                text NOT NULL,
    "Model"               text NOT NULL CHECK ("Model" IN ('acuvim-ii', 'acuvim-l', 'generic')),
    "Source"              text NOT NULL CHECK ("Source" IN ('modbus-tcp', 'push')),
    "ModbusHost"          text,
    "ModbusPort"          integer NOT NULL DEFAULT 502 CHECK ("ModbusPort" BETWEEN 1 AND 65535),
    "ModbusUnitId"        smallint NOT NULL DEFAULT 1 CHECK ("ModbusUnitId" BETWEEN 1 AND 247),
    "PollIntervalSeconds" integer NOT NULL DEFAULT 60 CHECK ("PollIntervalSeconds" BETWEEN 1 AND 3600),
    "Enabled"             boolean NOT NULL DEFAULT true,
    "CreatedAt"           timestamptz NOT NULL DEFAULT now(),
    CHECK ("Source" <> 'modbus-tcp' OR "ModbusHost" IS NOT NULL)
);
CREATE INDEX "IX_Devices_SiteId" ON monitoring."Devices" ("SiteId");

-- ---------------------------------------------------------------- measurements

-- One wide row per device and timestamp, SI units. The Timescale bootstrapper turns it into a
-- compressed hypertable when the extension is present; otherwise it gets a BRIN index on "Time".
-- Instantaneous values are float4 (the meters deliver IEEE-754 f32); cumulative counters are
-- float8 so that whole Wh stay exact far beyond the meters' 10^11 Wh range.
CREATE TABLE monitoring."PowerMeasurements" (
    "DeviceId"           integer NOT NULL REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "Time"               timestamptz NOT NULL,
    "Frequency"          real,              -- Hz
    "V1"                 real,              -- V, line to neutral (NULL in 3-wire wiring)
    "V2"                 real,
    "V3"                 real,
    "V12"                real,              -- V, line to line
    "V23"                real,
    "V31"                real,
    "I1"                 real,              -- A
    "I2"                 real,
    "I3"                 real,
    "IN"                 real,              -- A, neutral
    "P1"                 real,              -- W
    "P2"                 real,
    "P3"                 real,
    "PTotal"             real,
    "Q1"                 real,              -- var
    "Q2"                 real,
    "Q3"                 real,
    "QTotal"             real,
    "S1"                 real,              -- VA
    "S2"                 real,
    "S3"                 real,
    "STotal"             real,
    "PF1"                real,              -- power factor, -1..1
    "PF2"                real,
    "PF3"                real,
    "PFTotal"            real,
    "DemandW"            real,              -- W, the meter's demand (sliding window)
    "DemandVar"          real,              -- var
    "DemandVA"           real,              -- VA
    "EnergyImportWh"     double precision,  -- Wh, cumulative counters as read
    "EnergyExportWh"     double precision,
    "ReactiveImportVarh" double precision,  -- varh
    "ReactiveExportVarh" double precision,
    "ApparentVAh"        double precision,  -- VAh
    PRIMARY KEY ("DeviceId", "Time")
);
