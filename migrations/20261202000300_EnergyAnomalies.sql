-- What the energy rollup did not count, and why (src/measurements/energy/maths.rs, Anomaly): a
-- counter value no meter can hold, a rise implying an implausible power, a gap too long to place
-- the energy in time. Shown on the device's page, so that a hostile or broken value is visible
-- instead of a silent zero or a poisoned figure. Rare rows: a foreign key is affordable here.
CREATE TABLE monitoring."EnergyAnomalies" (
    "DeviceId"     integer NOT NULL REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "Time"         timestamptz NOT NULL,                     -- the point that did not count
    "Channel"      text NOT NULL CHECK ("Channel" IN ('import', 'export', 'apparent')),
    "Kind"         text NOT NULL CHECK ("Kind" IN ('implausible-value', 'implausible-rise', 'gap-too-long')),
    "Description"  text NOT NULL,
    "NotedAt"      timestamptz NOT NULL DEFAULT now(),
    -- A recomputation meets the same point again: noted once.
    PRIMARY KEY ("DeviceId", "Time", "Channel")
);
