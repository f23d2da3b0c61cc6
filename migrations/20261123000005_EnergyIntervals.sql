-- 15-minute energy per device, derived from the meters' cumulative counters (never by
-- integrating power) by src/measurements/energy.rs and kept up to date by the rollup job.
-- Every offset of every IANA zone is a multiple of 15 minutes, so intervals aligned in UTC are
-- aligned in the site's local time too; daily, monthly and TOU figures sum whole intervals.
CREATE TABLE monitoring."EnergyIntervals" (
    "DeviceId"     integer NOT NULL REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "Start"        timestamptz NOT NULL CHECK (date_bin('15 minutes', "Start", '2000-01-01') = "Start"),
    "ImportWh"     double precision NOT NULL CHECK ("ImportWh" >= 0),
    "ExportWh"     double precision NOT NULL CHECK ("ExportWh" >= 0),
    "ApparentVAh"  double precision CHECK ("ApparentVAh" >= 0),  -- NULL when the meter has no VAh counter
    "MaxW"         real,              -- highest instantaneous total active power sampled
    "MaxVA"        real,              -- highest instantaneous total apparent power sampled
    "Samples"      integer NOT NULL CHECK ("Samples" >= 0),
    -- Energy spread over a data gap (the counters say how much, not when): not measured here.
    "Estimated"    boolean NOT NULL DEFAULT false,
    -- A counter drop that is not a wrap (meter reset or replacement) started a new baseline here.
    "CounterReset" boolean NOT NULL DEFAULT false,
    PRIMARY KEY ("DeviceId", "Start")
);

-- How far the rollup job has got per device (src/measurements/rollup.rs). Intervals before
-- "ProcessedUntil" are final; the next run re-reads the readings from there (the interval there
-- may be partial) and overwrites the intervals from there on, starting from the baselines below:
-- per counter, its last value before "ProcessedUntil" and whether it had gone stale (missing for
-- longer than a day while the meter kept reporting). "SeenUntil": readings before it have been
-- read, so a later run never rolls up less than an earlier one did.
CREATE TABLE monitoring."EnergyWatermarks" (
    "DeviceId"       integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "ProcessedUntil" timestamptz NOT NULL DEFAULT '1900-01-01',
    "SeenUntil"      timestamptz NOT NULL DEFAULT '1900-01-01',
    "ImportAt"       timestamptz,
    "ImportWh"       double precision,
    "ImportStale"    boolean NOT NULL DEFAULT false,
    "ExportAt"       timestamptz,
    "ExportWh"       double precision,
    "ExportStale"    boolean NOT NULL DEFAULT false,
    "ApparentAt"     timestamptz,
    "ApparentVAh"    double precision,
    "ApparentStale"  boolean NOT NULL DEFAULT false
);

-- Readings written before a device's "ProcessedUntil" (a backfill through the ingest API, a
-- meter's buffered data): the earliest such time per device, recorded by the write path in the
-- same statement as the readings; the rollup job recomputes from there and deletes the row.
CREATE TABLE monitoring."EnergyBackfills" (
    "DeviceId" integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "From"     timestamptz NOT NULL
);
