-- Hourly minimum, average and maximum of the quantities the device charts draw, so a chart of
-- 30 days or a year reads 720 or 8 760 rows per device instead of 43 200 or 525 600 readings.
-- Kept by the hourly job (src/measurements/hourly.rs) from the marks the single write path
-- leaves in "HourlyStale" (each batch's earliest reading per device, in the batch's transaction).
CREATE TABLE monitoring."HourlyReadings" (
    "DeviceId" integer NOT NULL REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "Hour"     timestamptz NOT NULL CHECK (date_bin('1 hour', "Hour", '2000-01-01') = "Hour"),
    "Samples"  integer NOT NULL,
    "PTotalMin" real, "PTotalAvg" real, "PTotalMax" real,
    "QTotalMin" real, "QTotalAvg" real, "QTotalMax" real,
    "STotalMin" real, "STotalAvg" real, "STotalMax" real,
    "V1Min" real, "V1Avg" real, "V1Max" real,
    "V2Min" real, "V2Avg" real, "V2Max" real,
    "V3Min" real, "V3Avg" real, "V3Max" real,
    "I1Min" real, "I1Avg" real, "I1Max" real,
    "I2Min" real, "I2Avg" real, "I2Max" real,
    "I3Min" real, "I3Avg" real, "I3Max" real,
    "PFTotalMin" real, "PFTotalAvg" real, "PFTotalMax" real,
    "FrequencyMin" real, "FrequencyAvg" real, "FrequencyMax" real,
    PRIMARY KEY ("DeviceId", "Hour")
);

-- Devices whose hours from "From" on are not (or no longer) what the readings say.
CREATE TABLE monitoring."HourlyStale" (
    "DeviceId" integer PRIMARY KEY REFERENCES monitoring."Devices" ("Id") ON DELETE CASCADE,
    "From"     timestamptz NOT NULL
);

-- The readings stored before this migration: every device with any is rolled up from its first.
INSERT INTO monitoring."HourlyStale" ("DeviceId", "From")
SELECT d."Id", m."Time"
FROM monitoring."Devices" d
CROSS JOIN LATERAL (SELECT "Time" FROM monitoring."PowerMeasurements" WHERE "DeviceId" = d."Id" ORDER BY "Time" LIMIT 1) m;
