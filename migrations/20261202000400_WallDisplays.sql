-- Wall display links: a read-only live page of one site for a control-room screen, opened
-- without signing in. Only the SHA-256 of the link's token is stored; the link is shown once.
CREATE TABLE portal."WallDisplays" (
    "Id"         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    "SiteId"     integer NOT NULL REFERENCES monitoring."Sites" ("Id") ON DELETE CASCADE,
    "Name"       text NOT NULL CHECK ("Name" = btrim("Name") AND "Name" <> '' AND length("Name") <= 100),
    "Prefix"     text NOT NULL,
    "TokenHash"  bytea NOT NULL UNIQUE CHECK (length("TokenHash") = 32),
    "CreatedAt"  timestamptz NOT NULL DEFAULT now(),
    "CreatedBy"  text NOT NULL,
    "LastUsedAt" timestamptz,
    "RevokedAt"  timestamptz
);
CREATE INDEX "IX_WallDisplays_SiteId" ON portal."WallDisplays" ("SiteId");
