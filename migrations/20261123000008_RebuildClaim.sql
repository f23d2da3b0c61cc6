-- Faster rebuilds of the energy intervals (src/measurements/rebuild.rs).

-- A rebuild reads the readings up to this time without holding the devices' watermark rows;
-- meanwhile the write path notes every reading older than it as late too (EnergyBackfills),
-- so none written during the rebuild is missed. NULL when no rebuild has a claim.
ALTER TABLE monitoring."EnergyWatermarks" ADD COLUMN "ClaimedUntil" timestamptz;

-- The foreign key to Devices checked every inserted interval one by one (about 10 µs each, most
-- of a rebuild's write time). Writers now lock their devices' rows FOR KEY SHARE once per batch
-- and skip devices that are gone (rollup.rs, write_intervals), and deleting devices deletes
-- their intervals here, as the key's ON DELETE CASCADE did.
ALTER TABLE monitoring."EnergyIntervals" DROP CONSTRAINT "EnergyIntervals_DeviceId_fkey";

CREATE FUNCTION monitoring."DeleteIntervalsOfDevices"() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM monitoring."EnergyIntervals" e USING gone g WHERE e."DeviceId" = g."Id";
    RETURN NULL;
END
$$;

CREATE TRIGGER "TR_Devices_DeleteIntervals" AFTER DELETE ON monitoring."Devices"
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION monitoring."DeleteIntervalsOfDevices"();
