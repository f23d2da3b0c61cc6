-- Site hierarchy (issue 15): each device has a role. 'main' meters are a site's supply points
-- and the only ones its totals and bills add up; a 'sub' meter measures part of what its parent
-- (a main or another sub meter of the same site) measures; 'generation' (e.g. solar) and 'check'
-- meters are shown but never added to consumption. Every existing device becomes 'main': the
-- site sums stay what they were (every device added up) until an admin says otherwise.
ALTER TABLE monitoring."Devices"
    ADD COLUMN "Role" text NOT NULL DEFAULT 'main' CHECK ("Role" IN ('main', 'sub', 'generation', 'check')),
    ADD COLUMN "ParentId" integer,
    ADD CONSTRAINT "CK_Devices_SubHasParent" CHECK (("Role" = 'sub') = ("ParentId" IS NOT NULL)),
    ADD CONSTRAINT "CK_Devices_NotOwnParent" CHECK ("ParentId" <> "Id");

-- The parent is on the same site: the key includes the site. NO ACTION (checked at the end of the
-- statement) lets a site's deletion cascade to a parent and its sub-meters together, and refuses
-- deleting or moving a parent alone (the form says so first).
CREATE UNIQUE INDEX "UX_Devices_SiteId_Id" ON monitoring."Devices" ("SiteId", "Id");
ALTER TABLE monitoring."Devices"
    ADD CONSTRAINT "FK_Devices_Parent" FOREIGN KEY ("SiteId", "ParentId")
        REFERENCES monitoring."Devices" ("SiteId", "Id");
CREATE INDEX "IX_Devices_ParentId" ON monitoring."Devices" ("ParentId") WHERE "ParentId" IS NOT NULL;

-- A role change changes which devices a site's stored sums add up: it queues the site from
-- -infinity like a device leaving the site does (the energy owner's stale-site queue). DISTINCT:
-- a role change on one site names that site twice, and ON CONFLICT DO UPDATE refuses to update
-- one row twice in a statement.
CREATE OR REPLACE FUNCTION monitoring."QueueStaleSitesOfDevice"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW."SiteId" IS DISTINCT FROM OLD."SiteId" OR NEW."Role" IS DISTINCT FROM OLD."Role" THEN
        INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From")
        SELECT DISTINCT s, '-infinity'::timestamptz FROM unnest(ARRAY[OLD."SiteId", CASE WHEN TG_OP = 'UPDATE' THEN NEW."SiteId" END]) s
        WHERE s IS NOT NULL
        ON CONFLICT ("SiteId") DO UPDATE SET "From" = '-infinity';
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER "TR_Devices_SiteChange" ON monitoring."Devices";
CREATE TRIGGER "TR_Devices_SiteChange" AFTER UPDATE OF "SiteId", "Role" OR DELETE ON monitoring."Devices"
    FOR EACH ROW EXECUTE FUNCTION monitoring."QueueStaleSitesOfDevice"();
