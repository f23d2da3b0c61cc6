-- Municipalities, their tariffs, and each site's tariff history (src/tariffs owns these tables).
-- A tariff's versions, seasons, windows and rates are one JSON document (src/tariffs/model.rs,
-- the same document Settings → Rates imports and exports), validated by the portal before it is
-- stored: the rules (no overlapping windows or versions, every hour covered) span the document.

CREATE TABLE portal."Municipalities" (
    "Id"         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "Name"       text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> ''),
    "Country"    text NOT NULL DEFAULT '',
    "Currency"   text NOT NULL CHECK ("Currency" ~ '^[A-Z]{3}$'),
    "VatPercent" numeric(6, 3) NOT NULL CHECK ("VatPercent" BETWEEN 0 AND 100),
    -- Public holidays: a TOU tariff bills them as the day type it chooses.
    "Holidays"   date[] NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX "UX_Municipalities_Name" ON portal."Municipalities" (lower("Name"));

CREATE TABLE portal."Tariffs" (
    "Id"             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "MunicipalityId" integer NOT NULL REFERENCES portal."Municipalities" ("Id"),
    "Name"           text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> ''),
    "Definition"     jsonb NOT NULL,
    "UpdatedAt"      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX "UX_Tariffs_Name" ON portal."Tariffs" ("MunicipalityId", lower("Name"));

-- A site's tariff from "EffectiveFrom" (a local date of the site) until its next row.
CREATE TABLE portal."SiteTariffs" (
    "SiteId"        integer NOT NULL REFERENCES monitoring."Sites" ("Id") ON DELETE CASCADE,
    "EffectiveFrom" date NOT NULL,
    "TariffId"      integer NOT NULL REFERENCES portal."Tariffs" ("Id"),
    PRIMARY KEY ("SiteId", "EffectiveFrom")
);
CREATE INDEX "IX_SiteTariffs_TariffId" ON portal."SiteTariffs" ("TariffId");
