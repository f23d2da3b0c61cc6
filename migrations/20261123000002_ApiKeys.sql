-- API keys for the ingest API: only the SHA-256 of a key is stored; the key is shown once.
CREATE TABLE identity."ApiKeys" (
    "Id"         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "Name"       text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> '' AND length("Name") <= 100),
    -- The first characters of the key, to recognise it in lists and logs.
    "Prefix"     text NOT NULL,
    "KeyHash"    bytea NOT NULL UNIQUE CHECK (length("KeyHash") = 32),
    "CreatedAt"  timestamptz NOT NULL DEFAULT now(),
    "CreatedBy"  text NOT NULL,
    "LastUsedAt" timestamptz,
    "RevokedAt"  timestamptz
);
