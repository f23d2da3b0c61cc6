-- A site's notified (contracted) maximum demand, NMD (issue 17 item 2): the demand the supply
-- agreement allows, in kVA or kW, or none. Tariffs bill capacity charges on at least it and
-- penalise demand above it; the demand-limit alarm takes it as its limit when a rule has none.
ALTER TABLE monitoring."Sites"
    ADD COLUMN "NotifiedMaxDemand" numeric(12, 3) CHECK ("NotifiedMaxDemand" > 0),
    ADD COLUMN "NotifiedMaxDemandUnit" text CHECK ("NotifiedMaxDemandUnit" IN ('kW', 'kVA')),
    ADD CONSTRAINT "CK_Sites_NmdHasUnit" CHECK (("NotifiedMaxDemand" IS NULL) = ("NotifiedMaxDemandUnit" IS NULL));

-- A demand-limit rule without a limit of its own uses each site's NMD (sites without one are not
-- watched by it); a limit it has is still above 0, in "Unit".
ALTER TABLE alarms."Rules" DROP CONSTRAINT "Rules_DemandLimit_check";
ALTER TABLE alarms."Rules" ADD CONSTRAINT "Rules_DemandLimit_check"
    CHECK ("Kind" <> 'demand-limit' OR (("Limit" IS NULL OR "Limit" > 0) AND "Unit" IS NOT NULL));
