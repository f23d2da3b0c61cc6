-- A site's 15-minute energy: its devices' monitoring."EnergyIntervals" summed, so a month's bill
-- reads 2,880 rows instead of 2,880 per device. Triggers queue the sites whose sums are stale
-- from some interval on (any write to a device's intervals; a device moved to another site or
-- deleted); src/measurements/site_rollup.rs refreshes them (after every rollup run, and before a
-- bill reads them), so the sums can never disagree with the device intervals they come from.
CREATE TABLE monitoring."SiteEnergyIntervals" (
    "SiteId"    integer NOT NULL REFERENCES monitoring."Sites" ("Id") ON DELETE CASCADE,
    "Start"     timestamptz NOT NULL,
    "ImportWh"  double precision NOT NULL,
    "ExportWh"  double precision NOT NULL,
    -- Apparent energy for kVA demand, with per-device fallbacks (see site_rollup.rs).
    "DemandVAh" double precision NOT NULL,
    "Rows"      integer NOT NULL,           -- device intervals summed
    "Estimated" boolean NOT NULL,
    PRIMARY KEY ("SiteId", "Start")
);

-- No foreign key: a site being deleted cascades to its devices, whose trigger still queues it.
CREATE TABLE monitoring."SiteEnergyStale" (
    "SiteId" integer PRIMARY KEY,
    "From"   timestamptz NOT NULL
);

CREATE FUNCTION monitoring."QueueStaleSitesFromIntervals"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From")
    SELECT d."SiteId", min(c."Start")
    FROM changed c JOIN monitoring."Devices" d ON d."Id" = c."DeviceId"
    GROUP BY d."SiteId"
    ON CONFLICT ("SiteId") DO UPDATE SET "From" = least(monitoring."SiteEnergyStale"."From", EXCLUDED."From");
    RETURN NULL;
END
$$;

CREATE TRIGGER "TR_EnergyIntervals_Insert" AFTER INSERT ON monitoring."EnergyIntervals"
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION monitoring."QueueStaleSitesFromIntervals"();
CREATE TRIGGER "TR_EnergyIntervals_Update" AFTER UPDATE ON monitoring."EnergyIntervals"
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION monitoring."QueueStaleSitesFromIntervals"();
CREATE TRIGGER "TR_EnergyIntervals_Delete" AFTER DELETE ON monitoring."EnergyIntervals"
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION monitoring."QueueStaleSitesFromIntervals"();

-- A device leaving a site (moved or deleted) changes every interval of both sites.
CREATE FUNCTION monitoring."QueueStaleSitesOfDevice"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW."SiteId" IS DISTINCT FROM OLD."SiteId" THEN
        INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From")
        SELECT s, '-infinity' FROM unnest(ARRAY[OLD."SiteId", CASE WHEN TG_OP = 'UPDATE' THEN NEW."SiteId" END]) s
        WHERE s IS NOT NULL
        ON CONFLICT ("SiteId") DO UPDATE SET "From" = '-infinity';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER "TR_Devices_SiteChange" AFTER UPDATE OF "SiteId" OR DELETE ON monitoring."Devices"
    FOR EACH ROW EXECUTE FUNCTION monitoring."QueueStaleSitesOfDevice"();
