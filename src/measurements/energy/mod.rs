//! Derived energy, the one owner of it: raw readings → 15-minute intervals per device → 15-minute
//! sums per site. This module, and nothing outside it, reads and writes
//! `monitoring."EnergyIntervals"`, `"EnergyWatermarks"` (with a rebuild's claim, `"ClaimedUntil"`),
//! `"EnergyBackfills"`, `"SiteEnergyIntervals"`, the stale-site queue `"SiteEnergyStale"` and
//! `"EnergyAnomalies"` (what was not counted, and why: [`anomalies`]).
//!
//! What others use:
//! - **The door**: [`site_intervals`] / [`sites_intervals`], a site's energy per interval over a
//!   range, with the number of devices summed, and [`site_buckets`], its import summed per
//!   bucket by the database (the site page's day and month bars), and [`demand_peaks`], its highest
//!   demand interval per range (a ratchet's earlier billing periods). Bills, the Overview and the wall displays read
//!   through it; it guarantees freshness itself (below), so no consumer refreshes anything and
//!   no consumer writes. A site's energy is its **main meters'** (device roles, issue 15):
//!   sub-meters, check and generation meters are never in it; [`device_energy`] reads each
//!   meter's own energy for the site page's breakdown.
//! - **Data gaps**: [`estimated_gaps`], the runs of estimated intervals of devices (the alarm
//!   rule `data-gap` reports them).
//! - **The write path's note**: `measurements::write` calls [`note_late_readings`] in each
//!   batch's transaction (one of its late-row notes).
//! - **The job and the rebuild**: [`rollup::job`] (every minute in Client mode) and
//!   [`rebuild::rebuild`] (`tau-portal rollup --from …`).
//!
//! Files: `maths.rs` the pure energy-from-counters (no I/O); `anomalies.rs` what it refused;
//! `rollup.rs` the job's runs (a batch of devices each); `rebuild.rs` the one-pass rebuild;
//! `watermarks.rs` the watermarks, the rebuild's claim and the backfill notes; `intervals.rs`
//! the device intervals; `site_sums.rs` the site sums, their queue and the door. (The applied
//! migrations that made these tables name the files of the time: `energy.rs` is `maths.rs`,
//! `rollup.rs`'s writers are `intervals.rs`, `site_rollup.rs` is `site_sums.rs`; migrations are
//! never edited.)
//!
//! # What is fresh when
//! 1. *Device intervals.* For every device, the intervals before its watermark's
//!    `"ProcessedUntil"` are final; the one at it may be partial and is recomputed (replaced,
//!    never added to) by the next run. A run reads the readings up to a cutoff (now − [`rollup::LAG`]
//!    for the job), so the intervals trail the meters by at most about two minutes in Client
//!    mode; [`rollup::ensure_up_to_date`] closes that gap for given devices when a caller needs
//!    it.
//! 2. *No reading is lost.* A reading committed with a time before its device's
//!    `greatest("ProcessedUntil", "ClaimedUntil")`, or before its `"SeenUntil"` while the
//!    watermark carries the interval in progress (`"Carry"`, the summary of its readings up to
//!    there, so the next run reads only what came after), is noted in `"EnergyBackfills"` by the
//!    very transaction that writes it, and the next run (or the rebuild) recomputes the device
//!    from there (for a note inside the carried interval: reads that interval again). Readings of a device without a watermark row yet are read by its first run
//!    (watermark rows are created, and committed, before any run).
//! 3. *Site sums.* For every site `s` and interval `t` before the site's stale point (its
//!    `"SiteEnergyStale"."From"`; no row: no stale point), `"SiteEnergyIntervals"(s, t)` equals
//!    the sum of `"EnergyIntervals"(d, t)` over the site's current main meters `d`. Every write of
//!    device intervals queues the device's site from the written range's start in the same
//!    transaction (`intervals.rs`); moving a device to another site or deleting it queues both
//!    sites from `-infinity`, and so does changing its role (trigger `TR_Devices_SiteChange`,
//!    migrations `SiteEnergyIntervals` and `DeviceRoles`);
//!    a refresh recomputes a site from its stale point and dequeues it in one transaction.
//! 4. *The door* reads, in one statement (one snapshot), a site's stored sums before its stale
//!    point and sums the device intervals from there on: by 3 its answer always equals the
//!    device intervals of that snapshot, whether or not a refresh has run. The job refreshes the
//!    queued sites after every run and the rebuild when it is done, so the summed part stays
//!    short (a device move makes one page sum the whole range once, until the next run).
//!
//! # Who locks what
//! - *A device's watermark row* is the device's lock. The job's run (a batch of devices) holds
//!   it FOR UPDATE for its whole transaction (take the backfill note, read, compute, replace the
//!   intervals, move the watermark); the write path holds it FOR KEY SHARE from its late-reading check to its
//!   commit, so a reading committed during a run is read by the run or noted, never neither.
//!   The rebuild holds the rows FOR UPDATE only at its start (rewind, take the notes, claim the
//!   range: `"ClaimedUntil"`) and at its end (last intervals, watermarks, claim ended); in
//!   between, the claim makes the write path note every reading inside the range. Rows are
//!   always locked in device id order, so two lockers never wait for each other.
//! - *The rebuild lock*, an advisory lock ([`rollup`]'s `REBUILD_LOCK`): the rebuild holds it
//!   exclusively on a connection of its own for its whole run; each of the job's runs
//!   takes it shared and leaves the device alone when it cannot, so the job never redoes the
//!   rebuild's range one device at a time nor takes notes the rebuild's claim left.
//! - *A site's queue row*: a refresh holds it FOR UPDATE; a writer queueing the site meanwhile
//!   waits and queues it anew after the refresh committed.
//! - *The devices' rows*: the interval writers, like the readings' write path, lock them FOR KEY
//!   SHARE once per batch (`measurements::lock_devices`), skip devices deleted meanwhile, and
//!   keep the devices from being deleted until they commit. The job's run and the write path
//!   take them before the watermark rows, the order a device's delete takes them in (its row,
//!   then by cascade its watermark), so a delete waits for them instead of deadlocking.
//!
//! # Why `"EnergyIntervals"` has no foreign key to the devices
//! The key checked every inserted interval one by one, about 10 µs each and most of a rebuild's
//! write time (migration `RebuildClaim` dropped it). What it guaranteed is kept by the two
//! halves it stood for: the writers' FOR KEY SHARE lock on the devices' rows (above) stands for
//! the check, and the trigger `TR_Devices_DeleteIntervals` deletes a deleted device's intervals
//! as `ON DELETE CASCADE` did.

pub mod anomalies;
mod intervals;
pub mod maths;
pub mod rebuild;
pub mod rollup;
mod site_sums;
mod watermarks;

pub use intervals::{EstimatedGap, estimated_gaps};
pub use site_sums::{
    BucketEnergy, DeviceEnergy, PeakRange, SiteEnergy, SiteInterval, SiteRange, demand_peaks, device_energy,
    refresh_site_sums, site_buckets, site_intervals, sites_intervals,
};
pub(crate) use watermarks::note_late_readings;
