-- Licences the Admin portal issued (src/licence/issue.rs): one row per signed licence key, kept
-- so that a key can be copied again and every issue is on record. Empty on customer portals.
CREATE TABLE fleet."Licences" (
    "Id"         uuid PRIMARY KEY,
    "CustomerId" uuid NOT NULL REFERENCES fleet."Customers" ("Id") ON DELETE CASCADE,
    "IssuedAt"   timestamptz NOT NULL,
    "ExpiresAt"  timestamptz NOT NULL CHECK ("ExpiresAt" > "IssuedAt"),
    -- The signed claims, as in the key.
    "Claims"     jsonb NOT NULL,
    "Token"      text NOT NULL,
    "IssuedBy"   text NOT NULL
);
CREATE INDEX "IX_Licences_CustomerId" ON fleet."Licences" ("CustomerId", "IssuedAt");
