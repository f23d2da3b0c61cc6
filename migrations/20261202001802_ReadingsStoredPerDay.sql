-- Readings stored per UTC day, the figure an operator bills on (/metrics,
-- tau_portal_readings_stored_per_day): counted by the single write path (src/measurements) in
-- each batch's own transaction, so a count commits with its rows or not at all. By the day the
-- readings were stored, not their timestamps; deleting readings later does not lower it.
CREATE TABLE monitoring."ReadingsStoredPerDay" (
    "Day"      date PRIMARY KEY,
    "Readings" bigint NOT NULL CHECK ("Readings" >= 0)
);
