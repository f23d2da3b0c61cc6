-- Reactive energy per 15-minute interval (issue 17 item 3: reactive energy charges and power-factor
-- adjustments), derived from the meters' "ReactiveImportVarh" / "ReactiveExportVarh" counters by
-- src/measurements/energy/ exactly as active energy is from its counters: two more channels.
--
-- Existing rows get NULL, meaning unknown (not zero): they were rolled up before the counters
-- were read, and a bill must not take them for a perfect power factor. Intervals rolled up from
-- now on carry the figures; `tau-portal rollup --from …` recomputes older ones from the stored
-- readings. NULL stays the value for a meter without the counters.
ALTER TABLE monitoring."EnergyIntervals"
    ADD COLUMN "ReactiveImportVarh" double precision CHECK ("ReactiveImportVarh" >= 0),
    ADD COLUMN "ReactiveExportVarh" double precision CHECK ("ReactiveExportVarh" >= 0);

-- A site's interval has reactive energy only when every device interval summed into it has
-- (src/measurements/energy/site_sums.rs); NULL otherwise, and for the rows summed before.
ALTER TABLE monitoring."SiteEnergyIntervals"
    ADD COLUMN "ReactiveImportVarh" double precision,
    ADD COLUMN "ReactiveExportVarh" double precision;

-- The two channels' baselines, as for the other counters. A device's watermark without them
-- starts the reactive channels at their next reading (nothing is known before it).
ALTER TABLE monitoring."EnergyWatermarks"
    ADD COLUMN "ReactiveImportAt"    timestamptz,
    ADD COLUMN "ReactiveImportVarh"  double precision,
    ADD COLUMN "ReactiveImportStale" boolean NOT NULL DEFAULT false,
    ADD COLUMN "ReactiveExportAt"    timestamptz,
    ADD COLUMN "ReactiveExportVarh"  double precision,
    ADD COLUMN "ReactiveExportStale" boolean NOT NULL DEFAULT false;
