-- Readings stored per UTC day, the figure an operator bills on (/metrics,
-- tau_portal_readings_stored_per_day): counted by the single write path (src/measurements) in
-- each batch's own transaction, so a count commits with its rows or not at all. By the day the
-- readings were stored, not their timestamps; deleting readings later does not lower it.
-- "Slot" (the writing connection's backend pid modulo 16) spreads concurrent batches over rows:
-- a batch holds its counter row's lock until its commit is flushed, and with one row per day
-- every concurrent writer would wait for the others' flushes. The day's figure is the sum.
CREATE TABLE monitoring."ReadingsStoredPerDay" (
    "Day"      date NOT NULL,
    "Slot"     smallint NOT NULL CHECK ("Slot" BETWEEN 0 AND 15),
    "Readings" bigint NOT NULL CHECK ("Readings" >= 0),
    PRIMARY KEY ("Day", "Slot")
);
