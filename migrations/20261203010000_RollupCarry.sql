-- The rollup job re-read every device's interval in progress on each run, from its start: at
-- 1 s polls up to 900 readings per device and minute, and at 10,000 meters runs longer than
-- their one-minute period. A run now saves the summary of that interval so far (count, highest
-- powers, each counter's first and last point; src/measurements/energy/watermarks.rs, Carry),
-- of the readings before "SeenUntil", and the next run reads only the readings after it. NULL:
-- nothing carried (a counter dropped in the interval, a rebuild just saved it), the next run
-- reads the interval from "ProcessedUntil" as before. The write path notes a reading before
-- "SeenUntil" as late while a carry is set (watermarks.rs, note_late_readings), so the carry
-- never misses a reading.
ALTER TABLE monitoring."EnergyWatermarks" ADD COLUMN "Carry" jsonb;
