-- The fleet aggregator (docs/FLEET-DESIGN.md). One migrator serves both run modes, so every
-- database gets these tables; they stay empty (and plain) where they are not used. Only an Admin
-- portal's FleetTimescaleBootstrapper turns fleet."PowerMeasurements" into a hypertable and
-- creates the continuous aggregate fleet.hourly_per_device, so a customer's database carries no
-- fleet hypertable, chunk or background job.

CREATE SCHEMA IF NOT EXISTS fleet;

-- ---------------------------------------------------------------- Admin: the customer registry

CREATE TABLE fleet."Customers" (
    "Id"                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Three capital letters and four digits, as the stacks' Compose project names (lowercased).
    "Code"              text NOT NULL UNIQUE CHECK ("Code" ~ '^[A-Z]{3}[0-9]{4}$'),
    "Name"              text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> '' AND length("Name") <= 200),
    -- Off: the fleet ingest answers 401 at once; stored data is untouched.
    "Active"            boolean NOT NULL DEFAULT true,
    -- Only the SHA-256 of the push token is stored; the token is shown once.
    "TokenHash"         bytea NOT NULL UNIQUE CHECK (length("TokenHash") = 32),
    "TokenPrefix"       text NOT NULL,
    -- The token a rotation replaced: refused like any other, but its 401s are recorded on the
    -- customer's Recent ingest tab (a stack still running with it is the usual cause of a gap).
    "PreviousTokenHash" bytea CHECK (length("PreviousTokenHash") = 32),
    "TokenRotatedAt"    timestamptz,
    "CreatedAt"         timestamptz NOT NULL DEFAULT now(),
    "CreatedBy"         text NOT NULL,
    -- Kept by the ingest: the last accepted batch and the newest reading time received.
    "LastPushAt"        timestamptz,
    "LastReadingAt"     timestamptz,
    "LastErrorAt"       timestamptz,
    "LastError"         text
);
CREATE INDEX "IX_Customers_PreviousTokenHash" ON fleet."Customers" ("PreviousTokenHash");

-- A customer's sites and devices as its portal last pushed them, keyed by the customer's own ids.
CREATE TABLE fleet."Sites" (
    "Id"         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "CustomerId" uuid NOT NULL REFERENCES fleet."Customers" ("Id") ON DELETE CASCADE,
    "SourceId"   integer NOT NULL,
    "Name"       text NOT NULL,
    "Address"    text NOT NULL DEFAULT '',
    "TimeZone"   text NOT NULL,
    "UpdatedAt"  timestamptz NOT NULL DEFAULT now(),
    UNIQUE ("CustomerId", "SourceId")
);

CREATE TABLE fleet."Devices" (
    "Id"         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "CustomerId" uuid NOT NULL REFERENCES fleet."Customers" ("Id") ON DELETE CASCADE,
    "SourceId"   integer NOT NULL,
    "SiteId"     integer NOT NULL REFERENCES fleet."Sites" ("Id") ON DELETE CASCADE,
    "ExternalId" text NOT NULL,
    "Name"       text NOT NULL,
    "Model"      text NOT NULL,
    "Enabled"    boolean NOT NULL,
    "UpdatedAt"  timestamptz NOT NULL DEFAULT now(),
    UNIQUE ("CustomerId", "SourceId"),
    -- The target of the measurements' key: a row can only name a device of its own customer.
    UNIQUE ("CustomerId", "Id")
);

-- The same wide columns as monitoring."PowerMeasurements" (LIKE keeps the two in step), keyed by
-- customer, device and time.
CREATE TABLE fleet."PowerMeasurements" (LIKE monitoring."PowerMeasurements" INCLUDING DEFAULTS);
ALTER TABLE fleet."PowerMeasurements" ADD COLUMN "CustomerId" uuid NOT NULL;
ALTER TABLE fleet."PowerMeasurements" ADD PRIMARY KEY ("CustomerId", "DeviceId", "Time");
ALTER TABLE fleet."PowerMeasurements" ADD CONSTRAINT "FK_PowerMeasurements_Devices"
    FOREIGN KEY ("CustomerId", "DeviceId") REFERENCES fleet."Devices" ("CustomerId", "Id") ON DELETE CASCADE;

-- TimescaleDB does not apply the foreign key's ON DELETE CASCADE to compressed chunks (their rows
-- live in the chunks' compressed tables), so deleting a customer deletes its measurements
-- explicitly first, by the compression's segment key.
CREATE FUNCTION fleet."DeleteMeasurementsOfCustomer"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM fleet."PowerMeasurements" WHERE "CustomerId" = OLD."Id";
    RETURN OLD;
END
$$;

CREATE TRIGGER "TR_Customers_DeleteMeasurements" BEFORE DELETE ON fleet."Customers"
    FOR EACH ROW EXECUTE FUNCTION fleet."DeleteMeasurementsOfCustomer"();

-- Every batch a customer sent (or tried to): accepted ones are unique per batch id, and a replay
-- is answered with the stored "Result"; refusals (401, 400, …) are kept for the Recent ingest tab.
CREATE TABLE fleet."IngestEvents" (
    "Id"            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "CustomerId"    uuid NOT NULL REFERENCES fleet."Customers" ("Id") ON DELETE CASCADE,
    "BatchId"       uuid,
    "BatchType"     text NOT NULL,
    "WireVersion"   integer,
    "RowsAccepted"  integer NOT NULL DEFAULT 0,
    "RowsDuplicate" integer NOT NULL DEFAULT 0,
    "RowsRejected"  integer NOT NULL DEFAULT 0,
    "Status"        integer NOT NULL,
    "Error"         text,
    "Result"        jsonb,
    "ReceivedAt"    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX "UX_IngestEvents_Batch" ON fleet."IngestEvents" ("CustomerId", "BatchId") WHERE "Status" = 200;
CREATE INDEX "IX_IngestEvents_Customer_ReceivedAt" ON fleet."IngestEvents" ("CustomerId", "ReceivedAt" DESC);
CREATE INDEX "IX_IngestEvents_ReceivedAt" ON fleet."IngestEvents" ("ReceivedAt" DESC);

-- Plain PostgreSQL only (the continuous aggregate needs no help): the earliest reading time per
-- device written since the portal last recomputed the hourly table from it.
CREATE TABLE fleet."HourlyStale" (
    "DeviceId" integer PRIMARY KEY REFERENCES fleet."Devices" ("Id") ON DELETE CASCADE,
    "From"     timestamptz NOT NULL
);

-- ---------------------------------------------------------------- Client: the push to an Admin

-- Per device: every reading with "Time" < "SentUntil" is in a batch of the outbox (or already
-- delivered). The single write path notes readings that commit below it in FleetLateReadings.
CREATE TABLE monitoring."FleetPositions" (
    "DeviceId"  integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "SentUntil" timestamptz NOT NULL DEFAULT '0001-01-01 00:00:00+00'
);

-- The earliest late reading per device: the push sends that device again from there.
CREATE TABLE monitoring."FleetLateReadings" (
    "DeviceId" integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "From"     timestamptz NOT NULL
);

-- Batches formed but not yet acknowledged, in order. "Body" is the exact gzip request body, so
-- every retry is byte-identical and carries the same idempotency key ("BatchId").
CREATE TABLE monitoring."FleetOutbox" (
    "Seq"           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "BatchId"       uuid NOT NULL UNIQUE,
    "BatchType"     text NOT NULL CHECK ("BatchType" IN ('sites', 'devices', 'measurements')),
    "Rows"          integer NOT NULL,
    "Body"          bytea NOT NULL,
    "CreatedAt"     timestamptz NOT NULL DEFAULT now(),
    "Attempts"      integer NOT NULL DEFAULT 0,
    "Refusals"      integer NOT NULL DEFAULT 0,
    "LastAttemptAt" timestamptz,
    "LastStatus"    integer,
    "LastError"     text,
    -- Refused as malformed too often: kept for the operator, no longer sent.
    "QuarantinedAt" timestamptz
);
-- The body is gzip already: no point in PostgreSQL trying to compress it again.
ALTER TABLE monitoring."FleetOutbox" ALTER COLUMN "Body" SET STORAGE EXTERNAL;
