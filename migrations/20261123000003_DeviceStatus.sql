-- What the Modbus poller reports about a device that a reading cannot say: its last failure.
-- "Last reading at" is not stored: it is the newest row in monitoring."PowerMeasurements",
-- whichever path (poller, ingest API, fleet) wrote it, so it can never disagree with the data.
ALTER TABLE monitoring."Devices"
    ADD COLUMN "LastError"   text,
    ADD COLUMN "LastErrorAt" timestamptz,
    ADD CHECK (("LastError" IS NULL) = ("LastErrorAt" IS NULL));
