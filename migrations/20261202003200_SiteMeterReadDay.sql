-- A site's meter-read day: its billing periods run from this day of one month to the day
-- before it in the next (1: the calendar month). 1 to 28, so every month has the day.
ALTER TABLE monitoring."Sites"
    ADD COLUMN "MeterReadDay" smallint NOT NULL DEFAULT 1
        CONSTRAINT "CK_Sites_MeterReadDay" CHECK ("MeterReadDay" BETWEEN 1 AND 28);
