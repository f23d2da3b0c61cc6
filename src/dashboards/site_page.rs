//! The site page's dashboard: what the site draws now, today against yesterday, daily bars of a
//! month and monthly bars of its year, the month's energy and charge per TOU period, and the
//! site's devices compared on one chart, and the meters' hierarchy (each main meter's sub-meters
//! and its unmetered remainder). Energy comes through the energy door (one read of the month's
//! intervals and of yesterday-to-tomorrow's, the day and month bars summed by the database, main
//! meters only, and one of each meter's today and month for the hierarchy), money from the
//! tariff engine; every figure is also text or a table in the page, and the charts are drawn by
//! the same uPlot code as the device chart.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::charts::{self, Line};
use super::figures::{self, Live};
use super::series::{self, PRESETS, Preset};
use super::site_energy::{self, Bar, TodayYesterday};
use super::svg;
use crate::error::AppResult;
use crate::measurements::energy::{self, SiteRange};
use crate::measurements::queries;
use crate::sites::db::{self as sites_db, DeviceRow, SiteRow};
use crate::sites::hierarchy::{self, HierarchyView, Kwh};
use crate::state::AppState;
use crate::tariffs::bills;
use crate::tariffs::db as tariffs_db;
use crate::tariffs::engine::{self, BillInput};
use crate::tariffs::local::{Period, local_midnight};

/// The site page's query string: the month of the bars and TOU table, the comparison's range.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct SiteQuery {
    pub month: Option<String>,
    pub compare: Option<String>,
}

/// A chart's data in the page (`data-chart`, drawn by static/app.js): uPlot's columns.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InlineChart {
    label: String,
    unit: &'static str,
    bucket: &'static str,
    bucket_seconds: i64,
    time_zone: &'static str,
    from: i64,
    to: i64,
    times: Vec<i64>,
    lines: Vec<Line>,
    /// "bars" or "lines".
    style: &'static str,
    /// Tooltips show dates only (day and month bars).
    date_only: bool,
    decimals: u8,
}

impl InlineChart {
    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// A bar as a row of its fallback table.
pub struct BarRow {
    pub label: String,
    pub href: Option<String>,
    pub kwh: String,
}

pub struct BarsView {
    /// The first column's heading: "Day" or "Month".
    pub unit: &'static str,
    pub title: String,
    pub total: String,
    pub rows: Vec<BarRow>,
    pub chart: String,
}

pub struct TodayView {
    pub today_kwh: String,
    pub yesterday_same_time_kwh: String,
    pub yesterday_kwh: String,
    pub chart: String,
    pub svg: Option<svg::Chart>,
}

pub struct TouRow {
    pub key: &'static str,
    pub label: &'static str,
    pub kwh: String,
    pub share: String,
    pub charge: String,
}

/// The month's TOU table, or why there is none.
pub struct TouView {
    pub rows: Vec<TouRow>,
    pub total_kwh: String,
    pub total_charge: String,
    pub message: Option<&'static str>,
}

pub struct CompareView {
    pub ranges: Vec<charts::RangeLink>,
    pub title: String,
    pub chart: String,
    pub svg: Option<svg::Chart>,
    pub legend: Vec<String>,
    /// How many devices are not drawn and which are, in words (none: all are drawn).
    pub note: Option<String>,
}

/// Everything the site page shows about the site's energy.
pub struct SiteDashboard {
    pub live: Live,
    pub live_seconds: u32,
    pub newest: String,
    pub today: TodayView,
    pub month_value: String,
    pub month_label: String,
    /// The billing period containing today, by the site's meter-read day: "15 Nov – 14 Dec 2026".
    pub bill_period: String,
    pub month_error: Option<&'static str>,
    pub previous_month: String,
    pub next_month: Option<String>,
    /// The month's days, then the year's months.
    pub bars: Vec<BarsView>,
    pub tou: TouView,
    pub compare: CompareView,
    pub hierarchy: HierarchyView,
}

fn month_key(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

fn bars_chart(title: &str, bars: &[Bar], end: DateTime<Utc>, bucket: &'static str, tz: Tz) -> String {
    InlineChart {
        label: title.into(),
        unit: "kWh",
        bucket,
        bucket_seconds: if bucket == "day" { 86_400 } else { 30 * 86_400 },
        time_zone: tz.name(),
        from: bars.first().map_or(0, |b| b.start.timestamp()),
        to: end.timestamp(),
        times: bars.iter().map(|b| b.start.timestamp()).collect(),
        lines: vec![Line::new("Energy imported".into(), "avg", bars.iter().map(|b| b.kwh).collect())],
        style: "bars",
        date_only: true,
        decimals: 1,
    }
    .json()
}

fn bars_view(
    unit: &'static str,
    title: String,
    bars: &[Bar],
    label: impl Fn(&Bar) -> (String, Option<String>),
) -> BarsView {
    let total: f64 = bars.iter().filter_map(|b| b.kwh).sum();
    BarsView {
        total: figures::kwh_text(total),
        rows: bars
            .iter()
            .map(|b| {
                let (label, href) = label(b);
                BarRow { label, href, kwh: b.kwh.map_or_else(|| "–".into(), figures::kwh_text) }
            })
            .collect(),
        chart: String::new(),
        unit,
        title,
    }
}

fn today_view(c: &TodayYesterday, tz: Tz) -> TodayView {
    let lines = vec![
        Line::new("Today".into(), "avg", c.today_kw.clone()),
        Line::new("Yesterday".into(), "avg", c.yesterday_kw.clone()),
    ];
    let (from, to) = (c.slots.first().copied(), c.slots.last().map(|t| *t + TimeDelta::minutes(15)));
    let watts = |values: &[Option<f64>]| -> Vec<(DateTime<Utc>, f64)> {
        c.slots.iter().zip(values).filter_map(|(t, v)| v.map(|v| (*t, v * 1e3))).collect()
    };
    let svg = from.zip(to).and_then(|(from, to)| {
        svg::line_chart(&[watts(&c.today_kw), watts(&c.yesterday_kw)], from, to, TimeDelta::minutes(15), tz, "W")
    });
    TodayView {
        today_kwh: figures::kwh_text(c.today_kwh),
        yesterday_same_time_kwh: figures::kwh_text(c.yesterday_same_time_kwh),
        yesterday_kwh: figures::kwh_text(c.yesterday_kwh),
        chart: InlineChart {
            label: "Today against yesterday".into(),
            unit: "kW",
            bucket: "15 minutes",
            bucket_seconds: 900,
            time_zone: tz.name(),
            from: from.map_or(0, |t| t.timestamp()),
            to: to.map_or(0, |t| t.timestamp()),
            times: c.slots.iter().map(|t| t.timestamp()).collect(),
            lines,
            style: "lines",
            date_only: false,
            decimals: 2,
        }
        .json(),
        svg,
    }
}

fn tou_view(bill: Option<engine::Bill>) -> TouView {
    let empty = |message| TouView { rows: Vec::new(), total_kwh: String::new(), total_charge: String::new(), message };
    const NO_TARIFF: &str =
        "No tariff is assigned to this site for this month, so there are no TOU periods to split by.";
    let Some(bill) = bill.filter(|b| b.segments.iter().any(|s| s.tariff.is_some())) else {
        return empty(Some(NO_TARIFF));
    };
    let totals = engine::tou_totals(&bill);
    if totals.is_empty() {
        return empty(Some(
            "The site's tariff this month is not time-of-use: all energy is charged at one rate or in blocks.",
        ));
    }
    let kwh: rust_decimal::Decimal = totals.iter().map(|t| t.1).sum();
    let charge: rust_decimal::Decimal = totals.iter().map(|t| t.2).sum();
    let f = |d: rust_decimal::Decimal| f64::try_from(d).unwrap_or(0.0);
    TouView {
        rows: totals
            .iter()
            .map(|(p, k, c)| TouRow {
                key: p.key(),
                label: p.label(),
                kwh: figures::kwh_text(f(*k)),
                share: if kwh.is_zero() { "–".into() } else { format!("{:.1} %", f(*k) * 100.0 / f(kwh)) },
                charge: figures::money_text(&bill.currency, *c),
            })
            .collect(),
        total_kwh: figures::kwh_text(f(kwh)),
        total_charge: figures::money_text(&bill.currency, charge),
        message: None,
    }
}

/// Devices drawn on the comparison chart at most: the six colours of the charts (static/app.js
/// and the SVG fallback's `line-N` classes), so every line keeps a colour of its own; more lines
/// would repeat colours and be told apart by nobody. Bounding them also bounds the read: the
/// page's cost no longer grows with the site's devices (issue 21).
pub const COMPARED: usize = 6;

/// The devices to compare: the [`COMPARED`] that used the most energy this month to date (the
/// breakdown's figures, already read: ranking costs no query and keeps the same devices whatever
/// range is chosen), ties by the site's order; shown in the site's order.
fn compared<'a>(devices: &'a [DeviceRow], kwh: &HashMap<i32, Kwh>) -> Vec<&'a DeviceRow> {
    let month = |d: &DeviceRow| kwh.get(&d.id).map_or(0.0, |k| k.month);
    let mut ranked: Vec<(usize, &DeviceRow)> = devices.iter().enumerate().collect();
    ranked.sort_by(|(i, a), (j, b)| month(b).total_cmp(&month(a)).then(i.cmp(j)));
    ranked.truncate(COMPARED);
    ranked.sort_by_key(|(i, _)| *i);
    ranked.into_iter().map(|(_, d)| d).collect()
}

/// The devices' average active power on one chart over a preset range (24 h by default): the
/// [`compared`] ones, read in one statement (the hourly rollup for hour or coarser buckets, the
/// readings only for the 24 h view's 5 minutes), the rest named in words.
async fn compare(
    state: &AppState,
    site: &SiteRow,
    devices: &[DeviceRow],
    kwh: &HashMap<i32, Kwh>,
    now: DateTime<Utc>,
    query: &SiteQuery,
    month: &str,
) -> AppResult<CompareView> {
    let (tz, all_devices) = (site.zone(), devices.len());
    let range = query.compare.as_deref().filter(|r| PRESETS.iter().any(|(_, k, _)| k == r));
    let span = series::resolve(range, None, None, None, now, tz)
        .map_err(|e| crate::error::AppError::BadRequest(e.0.into()))?;
    // Sub-hour buckets only for the 24 h view: longer ranges read the hourly rollup (7 days of
    // half hours from the readings was 5.8 s for 100 devices: issue 21).
    let span = match span.bucket {
        series::Bucket::Fixed(w) if span.to - span.from > TimeDelta::days(1) && w < TimeDelta::hours(1) => {
            series::Span { bucket: series::Bucket::Fixed(TimeDelta::hours(1)), ..span }
        }
        _ => span,
    };
    let bucket = charts::store_bucket(span.bucket, tz);
    let devices = compared(devices, kwh);
    let ids: Vec<i32> = devices.iter().map(|d| d.id).collect();
    let rows = queries::series_many(&state.db, state.bucketing, &ids, &["PTotal"], span.from, span.to, bucket).await?;
    let mut per_device: Vec<Vec<queries::Bucketed>> = vec![Vec::new(); devices.len()];
    for (id, b) in rows {
        if let Some(k) = ids.iter().position(|d| *d == id) {
            per_device[k].push(b);
        }
    }
    // One time axis for all devices: every bucket any of them has.
    let mut times: Vec<DateTime<Utc>> = per_device.iter().flatten().map(|b| b.start).collect();
    times.sort_unstable();
    times.dedup();
    let lines: Vec<Line> = devices
        .iter()
        .zip(&per_device)
        .map(|(d, buckets)| {
            let values = times
                .iter()
                .map(|t| buckets.iter().find(|b| b.start == *t).and_then(|b| b.values[0][1]).map(|w| w / 1e3))
                .collect();
            Line::new(d.name.clone(), "avg", values)
        })
        .collect();
    let hidden = all_devices - devices.len();
    let note = (hidden > 0).then(|| {
        format!(
            "{hidden} more device{} not drawn: the chart shows the {} that used the most energy this month.",
            if hidden == 1 { " is" } else { "s are" },
            devices.len()
        )
    });
    let watts: Vec<Vec<(DateTime<Utc>, f64)>> =
        per_device.iter().map(|bs| bs.iter().filter_map(|b| b.values[0][1].map(|w| (b.start, w))).collect()).collect();
    let width = TimeDelta::seconds(span.bucket.nominal_seconds());
    let label = PRESETS.iter().find(|(p, ..)| *p == span.preset).map_or("24 hours", |(_, _, l)| *l);
    let title = format!("Active power per device (kW), last {label}, per {}", span.bucket.label());
    Ok(CompareView {
        ranges: PRESETS
            .iter()
            .map(|(preset, key, label)| charts::RangeLink {
                label,
                href: format!("/sites/{}?month={month}&compare={key}#compare", site.id),
                current: *preset == span.preset && span.preset != Preset::Custom,
            })
            .collect(),
        svg: svg::line_chart(&watts, span.from, span.to, width, tz, "W"),
        legend: devices.iter().map(|d| d.name.clone()).collect(),
        note,
        chart: InlineChart {
            label: title.clone(),
            unit: "kW",
            bucket: "",
            bucket_seconds: span.bucket.nominal_seconds(),
            time_zone: tz.name(),
            from: span.from.timestamp(),
            to: span.to.timestamp(),
            times: times.iter().map(|t| t.timestamp()).collect(),
            lines,
            style: "lines",
            date_only: false,
            decimals: 2,
        }
        .json(),
        title,
    })
}

/// Each meter's energy today and this month to date (the site's local days, from `today_start`
/// and `month_start`): the sub-meter breakdown's figures and the comparison's ranking.
async fn meter_energy(
    state: &AppState,
    site: &SiteRow,
    today_start: DateTime<Utc>,
    month_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> AppResult<HashMap<i32, Kwh>> {
    let energy = energy::device_energy(&state.db, site.id, &[(today_start, now), (month_start, now)]).await?;
    Ok(energy
        .into_iter()
        .map(|e| {
            let at = |k: usize| e.import_wh.get(k).copied().unwrap_or(0.0) / 1e3;
            (e.device, Kwh { today: at(0), month: at(1) })
        })
        .collect())
}

/// The site page's dashboard for `query` (a refused month falls back to this month and says why).
pub async fn dashboard(
    state: &AppState,
    site: &SiteRow,
    devices: &[DeviceRow],
    query: &SiteQuery,
) -> AppResult<SiteDashboard> {
    let (tz, now) = (site.zone(), state.clock.now());
    let today = now.with_timezone(&tz).date_naive();
    let (first, month_error) = match site_energy::month_of(query.month.as_deref(), today) {
        Ok(first) => (first, None),
        Err(e) => (site_energy::month_of(None, today).unwrap_or(today), Some(e)),
    };
    let month_end = first.checked_add_months(Months::new(1)).unwrap_or(first);
    let yesterday = today.pred_opt().unwrap_or(today);
    let tomorrow = today.succ_opt().unwrap_or(today);
    // The month's intervals for its bill, yesterday-to-tomorrow's for today's chart; the bars are
    // summed by the database (a year of intervals was 35,000 rows a page: issue 21).
    let ranges = [
        SiteRange { site: site.id, from: local_midnight(tz, first), to: local_midnight(tz, month_end).min(now) },
        SiteRange { site: site.id, from: local_midnight(tz, yesterday), to: local_midnight(tz, tomorrow).min(now) },
    ];
    let (day_buckets, month_buckets) =
        (site_energy::Buckets::days(tz, first), site_energy::Buckets::months(tz, first.year()));
    let (read, day_sums, month_sums) = tokio::try_join!(
        energy::sites_intervals(&state.db, &ranges),
        energy::site_buckets(&state.db, site.id, &day_buckets.bounds),
        energy::site_buckets(&state.db, site.id, &month_buckets.bounds),
    )?;
    let mut read = read.into_iter();
    let (month, recent) = (read.next(), read.next());
    // The devices the door summed (the main meters): the bill's data completeness.
    let mains = month.as_ref().map_or(0, |e| e.devices);
    let month = month.map(|e| e.intervals).unwrap_or_default();
    let recent = recent.map(|e| e.intervals).unwrap_or_default();

    let month_key_now = month_key(first);
    let month_label = first.format("%B %Y").to_string();
    let day_bars = day_buckets.bars(now, &day_sums);
    let mut days = bars_view("Day", format!("Energy per day, {month_label} (kWh)"), &day_bars, |b| {
        (b.date.format("%a %d %b").to_string(), None)
    });
    days.chart = bars_chart(&days.title, &day_bars, local_midnight(tz, month_end), "day", tz);
    let month_bars = month_buckets.bars(now, &month_sums);
    let mut months = bars_view("Month", format!("Energy per month, {} (kWh)", first.year()), &month_bars, |b| {
        let href = b.kwh.is_some().then(|| format!("/sites/{}?month={}#energy", site.id, month_key(b.date)));
        (b.date.format("%B").to_string(), href)
    });
    let year_end = month_buckets.bounds.last().copied().unwrap_or(now);
    months.chart = bars_chart(&months.title, &month_bars, year_end, "month", tz);

    let schedule = tariffs_db::site_schedule(&state.db, site.id).await?;
    let bill = match Period::month(first.year(), first.month(), 1).filter(|_| !schedule.is_empty()) {
        Some(period) => {
            let asked = [(site, period, schedule.as_slice())];
            let history = bills::earlier_peaks(&state.db, &asked).await?.pop().unwrap_or_default();
            let input = BillInput {
                tz,
                period,
                devices: mains,
                assignments: &schedule,
                intervals: &month,
                nmd: site.nmd(),
                history: &history,
            };
            Some(engine::bill(&input))
        }
        None => None,
    };

    let live_devices = sites_db::live_devices(&state.db).await?;
    let mine: Vec<_> = live_devices.iter().filter(|d| d.site_id == site.id).collect();
    let live = figures::live(&mine, now, tz);
    let newest = super::overview::newest_text(&live, tz);
    let this_month = site_energy::month_of(None, today).unwrap_or(today);
    let kwh = meter_energy(state, site, local_midnight(tz, today), local_midnight(tz, this_month), now).await?;
    let nodes = sites_db::hierarchy(&state.db, site.id).await?;
    let hierarchy = hierarchy::view(&nodes, &hierarchy::breakdown(&nodes, &kwh));
    Ok(SiteDashboard {
        today: today_view(&site_energy::today_yesterday(tz, now, &recent), tz),
        compare: compare(state, site, devices, &kwh, now, query, &month_key_now).await?,
        previous_month: month_key(first.checked_sub_months(Months::new(1)).unwrap_or(first)),
        next_month: (first < this_month).then(|| month_key(month_end)),
        month_value: month_key_now,
        month_label,
        bill_period: Period::containing(today, site.read_day())
            .map(|p| format!("{} – {}", p.start.format("%-d %b %Y"), p.last_day().format("%-d %b %Y")))
            .unwrap_or_default(),
        month_error,
        bars: vec![days, months],
        tou: tou_view(bill),
        live,
        live_seconds: super::overview::LIVE_SECONDS,
        newest,
        hierarchy,
    })
}
