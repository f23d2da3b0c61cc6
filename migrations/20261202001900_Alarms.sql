-- Alarm rules and the alarms they raise (src/alarms/, the only module that touches this schema).
-- A schema of its own: Grafana's read-only role reads `monitoring` only, and the notification
-- settings that come next (webhook secrets) must stay out of its reach.
CREATE SCHEMA IF NOT EXISTS alarms;

-- What to watch. Scope: no site and no device = every device; a site = its devices; a device =
-- that device. A communication-loss rule needs "MissedPolls"; a threshold rule its quantity,
-- direction and limit ("Nominal" set: "Limit" and "Hysteresis" are percent of it).
CREATE TABLE alarms."Rules" (
    "Id"          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "Name"        text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> ''),
    "Kind"        text NOT NULL CHECK ("Kind" IN ('communication-loss', 'threshold')),
    "Severity"    text NOT NULL CHECK ("Severity" IN ('critical', 'major', 'minor', 'warning')),
    "Enabled"     boolean NOT NULL DEFAULT true,
    "SiteId"      integer REFERENCES monitoring."Sites" ("Id") ON DELETE CASCADE,
    "DeviceId"    integer REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "MissedPolls" integer CHECK ("MissedPolls" BETWEEN 1 AND 1000),
    "Quantity"    text,
    "Direction"   text CHECK ("Direction" IN ('above', 'below')),
    "Limit"       double precision,
    "Nominal"     double precision CHECK ("Nominal" > 0),
    "Hysteresis"  double precision NOT NULL DEFAULT 0 CHECK ("Hysteresis" >= 0),
    "HoldSeconds" integer NOT NULL DEFAULT 0 CHECK ("HoldSeconds" BETWEEN 0 AND 86400),
    "CreatedAt"   timestamptz NOT NULL DEFAULT now(),
    "UpdatedAt"   timestamptz NOT NULL DEFAULT now(),
    CHECK ("Kind" <> 'communication-loss' OR "MissedPolls" IS NOT NULL),
    CHECK ("Kind" <> 'threshold' OR ("Quantity" IS NOT NULL AND "Direction" IS NOT NULL AND "Limit" IS NOT NULL))
);
CREATE UNIQUE INDEX "UX_AlarmRules_Name" ON alarms."Rules" (lower("Name"));

-- The defaults: communication loss on for every device; the electrical thresholds ready for a
-- 230 V / 50 Hz supply but off, since the nominal voltage and frequency are the site's to confirm.
INSERT INTO alarms."Rules" ("Name", "Kind", "Severity", "Enabled", "MissedPolls") VALUES
    ('Communication loss', 'communication-loss', 'major', true, 3);
INSERT INTO alarms."Rules" ("Name", "Kind", "Severity", "Enabled", "Quantity", "Direction", "Limit", "Nominal", "Hysteresis", "HoldSeconds") VALUES
    ('Over-voltage', 'threshold', 'major', false, 'voltageLN', 'above', 10, 230, 2, 60),
    ('Under-voltage', 'threshold', 'major', false, 'voltageLN', 'below', 10, 230, 2, 60),
    ('Low power factor', 'threshold', 'minor', false, 'pfAbs', 'below', 0.85, NULL, 0.03, 900),
    ('Frequency high', 'threshold', 'major', false, 'frequency', 'above', 1, 50, 0.4, 10),
    ('Frequency low', 'threshold', 'major', false, 'frequency', 'below', 1, 50, 0.4, 10);

-- Raised alarms, open ("EndedAt" NULL) or history. Rule name, kind, severity and subject are
-- copied at raise time, so history reads as it was when the rule changes or goes.
CREATE TABLE alarms."Alarms" (
    "Id"                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "RuleId"               integer REFERENCES alarms."Rules" ("Id") ON DELETE SET NULL,
    "RuleName"             text NOT NULL,
    "Kind"                 text NOT NULL,
    "Severity"             text NOT NULL CHECK ("Severity" IN ('critical', 'major', 'minor', 'warning')),
    "SiteId"               integer NOT NULL REFERENCES monitoring."Sites" ("Id") ON DELETE CASCADE,
    "DeviceId"             integer REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "Subject"              text NOT NULL,
    "Message"              text NOT NULL,
    "StartedAt"            timestamptz NOT NULL,
    "EndedAt"              timestamptz,
    -- The values that raised it (and, once ended, that cleared it), with the limit and unit.
    "TriggerValue"         double precision,
    "ClearValue"           double precision,
    "Details"              jsonb NOT NULL DEFAULT '{}',
    -- 'condition' (the value recovered), 'rule' (rule disabled, changed or deleted, device
    -- disabled or out of scope), or the email of the user who cleared it.
    "ClearedBy"            text,
    "AcknowledgedAt"       timestamptz,
    "AcknowledgedByUserId" uuid REFERENCES identity."Users" ("Id") ON DELETE SET NULL,
    "AcknowledgedBy"       text,
    "AckComment"           text,
    CHECK ("EndedAt" IS NULL OR ("EndedAt" >= "StartedAt" AND "ClearedBy" IS NOT NULL)),
    CHECK (("AcknowledgedAt" IS NULL) = ("AcknowledgedBy" IS NULL))
);
-- At most one open alarm per rule and subject: a raise that races another is a no-op.
CREATE UNIQUE INDEX "UX_Alarms_Open" ON alarms."Alarms" ("RuleId", "SiteId", coalesce("DeviceId", 0))
    WHERE "EndedAt" IS NULL;
CREATE INDEX "IX_Alarms_StartedAt" ON alarms."Alarms" ("StartedAt" DESC);
