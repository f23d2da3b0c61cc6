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

-- How far the rollup job has processed each device's readings, and the last counter values it
-- saw there, so the next run continues without re-reading history.
CREATE TABLE monitoring."EnergyWatermarks" (
    "DeviceId"       integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "ProcessedUntil" timestamptz NOT NULL,
    "LastTime"       timestamptz,
    "LastImportWh"   double precision,
    "LastExportWh"   double precision,
    "LastVAh"        double precision
);
