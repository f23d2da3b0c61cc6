-- The rules that need the tariff or the energy rollup (src/alarms/): a site's demand forecast
-- against a limit, a new maximum demand of the billing month, a budget of the month's cost, and
-- a data gap the rollup had to estimate. Demand and budget rules watch sites, not devices.
ALTER TABLE alarms."Rules" DROP CONSTRAINT "Rules_Kind_check";
ALTER TABLE alarms."Rules" ADD CONSTRAINT "Rules_Kind_check"
    CHECK ("Kind" IN ('communication-loss', 'threshold', 'demand-limit', 'max-demand', 'budget', 'data-gap'));

-- Demand limit: "Limit" (and "Hysteresis") in "Unit", kW or kVA. Budget: "Limit" in the
-- currency of the site's tariff, compared with the month to date or its projection ("Basis").
ALTER TABLE alarms."Rules"
    ADD COLUMN "Unit" text CHECK ("Unit" IN ('kW', 'kVA')),
    ADD COLUMN "Basis" text CHECK ("Basis" IN ('to-date', 'projected')),
    ADD CONSTRAINT "Rules_DemandLimit_check"
        CHECK ("Kind" <> 'demand-limit' OR ("Limit" > 0 AND "Unit" IS NOT NULL)),
    ADD CONSTRAINT "Rules_Budget_check" CHECK ("Kind" <> 'budget' OR ("Limit" > 0 AND "Basis" IS NOT NULL)),
    ADD CONSTRAINT "Rules_SiteKinds_check"
        CHECK ("Kind" NOT IN ('demand-limit', 'max-demand', 'budget') OR "DeviceId" IS NULL);

-- Defaults, on: a data gap of any device, and a new monthly maximum demand of any site whose
-- tariff has a demand charge (a site without one never raises it).
INSERT INTO alarms."Rules" ("Name", "Kind", "Severity", "Enabled") VALUES
    ('Data gap', 'data-gap', 'warning', true),
    ('New maximum demand', 'max-demand', 'minor', true);
