-- White-label branding: exactly one row, seeded from WhiteLabel__* on first boot only, then edited
-- in Settings -> Branding.
CREATE SCHEMA IF NOT EXISTS portal;

CREATE TABLE portal."Branding" (
    "Id"              boolean PRIMARY KEY DEFAULT true CHECK ("Id"),
    "ApplicationName" text NOT NULL CHECK ("ApplicationName" <> '' AND length("ApplicationName") <= 100),
    "PrimaryColor"    text NOT NULL CHECK ("PrimaryColor" ~ '^#[0-9a-f]{6}$'),
    "SecondaryColor"  text NOT NULL CHECK ("SecondaryColor" ~ '^#[0-9a-f]{6}$'),
    "AccentColor"     text NOT NULL CHECK ("AccentColor" ~ '^#[0-9a-f]{6}$'),
    "FooterText"      text NOT NULL DEFAULT '' CHECK (length("FooterText") <= 200),
    -- File name under <data dir>/branding (its content hash), NULL without a logo.
    "LogoFile"        text CHECK ("LogoFile" ~ '^[0-9a-f]{32}\.png$'),
    "UpdatedAt"       timestamptz NOT NULL DEFAULT now()
);
