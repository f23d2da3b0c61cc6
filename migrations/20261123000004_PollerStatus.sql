-- What the Modbus poller learns about a meter beyond its readings.
ALTER TABLE monitoring."Devices"
    -- Failed polls in a row since the last success (0 = the last poll succeeded).
    ADD COLUMN "ConsecutiveFailures" integer NOT NULL DEFAULT 0 CHECK ("ConsecutiveFailures" >= 0),
    -- The meter's own settings as last read (wiring, PT1/PT2, CT1/CT2, parameter and energy
    -- modes): the poller scales secondary values with them; shown on the device page.
    ADD COLUMN "MeterSettings"       jsonb,
    ADD COLUMN "MeterSettingsAt"     timestamptz,
    -- Manufacturer, model, serial, firmware from the identity probe, when the meter answers it.
    ADD COLUMN "MeterIdentity"       jsonb,
    -- Register blocks the meter answered with a Modbus exception; polled no more until it reconnects.
    ADD COLUMN "UnsupportedBlocks"   text[] NOT NULL DEFAULT '{}';
