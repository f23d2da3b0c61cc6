//! The device chart: any stored quantity over a preset or custom range, min/avg/max per bucket
//! computed by the database (a year is 365 day buckets, never 525 600 points), drawn by uPlot
//! from `/devices/{id}/series` with an SVG of the same data in the page for browsers without
//! JavaScript; and the readings of a range as a streamed CSV.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::series::{self, Bucket, PRESETS, Preset, QUANTITIES, Quantity, Span};
use super::svg;
use crate::error::{AppError, AppResult};
use crate::measurements::queries::{self, Bucketed, SeriesBucket, StoredReading};
use crate::sites::db::{self as sites_db, DeviceRow, SiteRow};
use crate::state::AppState;
use crate::web::csv;
use crate::web::session::CurrentUser;

/// The chart's query string: quantity, preset range or custom days, or a zoomed span in ms.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ChartQuery {
    pub q: Option<String>,
    pub range: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

impl ChartQuery {
    fn span(&self, now: DateTime<Utc>, tz: Tz) -> Result<Span, series::RangeError> {
        let millis = self.start.zip(self.end);
        series::resolve(self.range.as_deref(), self.from.as_deref(), self.to.as_deref(), millis, now, tz)
    }

    /// The query string that asks for the same chart (for the data and CSV links).
    fn encoded(&self, quantity: Quantity, span: &Span, tz: Tz) -> String {
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        pairs.append_pair("q", quantity.key);
        match span.preset {
            Preset::Custom => {
                pairs.append_pair("from", &series::iso_date(span.from, tz));
                pairs.append_pair("to", &series::iso_date(span.to - chrono::TimeDelta::seconds(1), tz));
            }
            _ => {
                let key = PRESETS.iter().find(|(p, ..)| *p == span.preset).map_or("24h", |(_, k, _)| *k);
                pairs.append_pair("range", key);
            }
        }
        pairs.finish()
    }
}

pub(super) fn store_bucket(bucket: Bucket, tz: Tz) -> SeriesBucket {
    match bucket {
        Bucket::Fixed(width) => SeriesBucket::Fixed(width),
        Bucket::LocalDay => SeriesBucket::LocalDay(tz),
    }
}

async fn load(state: &AppState, device_id: i32, quantity: Quantity, span: &Span, tz: Tz) -> AppResult<Vec<Bucketed>> {
    let bucket = store_bucket(span.bucket, tz);
    Ok(queries::series(&state.db, state.bucketing, device_id, quantity.columns, span.from, span.to, bucket).await?)
}

/// How a unit is drawn: kW rather than W on a chart axis.
fn display_unit(unit: &str) -> (&'static str, f64) {
    match unit {
        "W" => ("kW", 1e3),
        "var" => ("kvar", 1e3),
        "VA" => ("kVA", 1e3),
        "V" => ("V", 1.0),
        "A" => ("A", 1.0),
        "Hz" => ("Hz", 1.0),
        _ => ("", 1.0),
    }
}

/// One drawn line: a column's minimum, average or maximum per bucket.
#[derive(Serialize)]
pub struct Line {
    label: String,
    kind: &'static str,
    values: Vec<Option<f64>>,
}

impl Line {
    /// A line of `kind` "min", "avg" or "max" (the chart draws a band between min and max).
    pub(super) fn new(label: String, kind: &'static str, values: Vec<Option<f64>>) -> Line {
        Line { label, kind, values }
    }
}

/// What `/devices/{id}/series` answers: uPlot's columns (seconds, then one array per line).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeriesJson {
    quantity: &'static str,
    label: &'static str,
    unit: &'static str,
    bucket: String,
    bucket_seconds: i64,
    time_zone: &'static str,
    from: i64,
    to: i64,
    times: Vec<i64>,
    samples: Vec<i64>,
    lines: Vec<Line>,
}

fn lines(quantity: Quantity, buckets: &[Bucketed]) -> Vec<Line> {
    let (_, scale) = display_unit(quantity.unit);
    let column = |i: usize, k: usize| buckets.iter().map(|b| b.values[i][k].map(|v| v / scale)).collect();
    if let [only] = quantity.columns {
        // One column: its band (minimum and maximum of each bucket) around the average.
        [("min", 0, "minimum"), ("avg", 1, "average"), ("max", 2, "maximum")]
            .into_iter()
            .map(|(kind, k, word)| Line { label: format!("{only} {word}"), kind, values: column(0, k) })
            .collect()
    } else {
        // Per phase: the averages (three bands would hide each other).
        quantity
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Line { label: c.to_string(), kind: "avg", values: column(i, 1) })
            .collect()
    }
}

pub fn series_json(quantity: Quantity, span: &Span, tz: Tz, buckets: &[Bucketed]) -> SeriesJson {
    SeriesJson {
        quantity: quantity.key,
        label: quantity.label,
        unit: display_unit(quantity.unit).0,
        bucket: span.bucket.label(),
        bucket_seconds: span.bucket.nominal_seconds(),
        time_zone: tz.name(),
        from: span.from.timestamp(),
        to: span.to.timestamp(),
        times: buckets.iter().map(|b| b.start.timestamp()).collect(),
        samples: buckets.iter().map(|b| b.samples).collect(),
        lines: lines(quantity, buckets),
    }
}

async fn device_and_zone(state: &AppState, id: i32) -> AppResult<(DeviceRow, SiteRow, Tz)> {
    let device = sites_db::device(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let site = sites_db::site(&state.db, device.site_id).await?.ok_or(AppError::NotFound)?;
    let tz = site.zone();
    Ok((device, site, tz))
}

/// `GET /devices/{id}/series`: the chart's data as JSON (the page script asks again on zoom).
pub async fn series(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    Path(id): Path<i32>,
    Query(query): Query<ChartQuery>,
) -> AppResult<Json<SeriesJson>> {
    let (_, _, tz) = device_and_zone(&state, id).await?;
    let quantity = series::quantity(query.q.as_deref());
    let span = query.span(state.clock.now(), tz).map_err(|e| AppError::BadRequest(e.0.into()))?;
    let buckets = load(&state, id, quantity, &span, tz).await?;
    Ok(Json(series_json(quantity, &span, tz, &buckets)))
}

/// A link of the range picker.
pub struct RangeLink {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

pub struct QuantityChoice {
    pub key: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The chart section of the device page.
pub struct ChartView {
    pub title: String,
    pub quantities: Vec<QuantityChoice>,
    pub ranges: Vec<RangeLink>,
    pub from_date: String,
    pub to_date: String,
    pub error: Option<&'static str>,
    pub svg: Option<svg::Chart>,
    /// Line labels, in the SVG's order (its legend).
    pub legend: Vec<String>,
    pub data_url: String,
    pub csv_url: String,
    pub points: usize,
}

/// The chart of the device page for `query` (a refused custom range falls back to 24 hours and
/// says why beside the picker).
pub async fn device_chart(state: &AppState, device_id: i32, tz: Tz, query: &ChartQuery) -> AppResult<ChartView> {
    let now = state.clock.now();
    let quantity = series::quantity(query.q.as_deref());
    let (span, error) = match query.span(now, tz) {
        Ok(span) => (span, None),
        Err(e) => (ChartQuery::default().span(now, tz).map_err(|e| AppError::BadRequest(e.0.into()))?, Some(e.0)),
    };
    let buckets = load(state, device_id, quantity, &span, tz).await?;
    let drawn = lines(quantity, &buckets);
    let (unit, scale) = display_unit(quantity.unit);
    let per_line: Vec<Vec<(DateTime<Utc>, f64)>> = drawn
        .iter()
        .filter(|l| l.kind == "avg")
        .map(|l| buckets.iter().zip(&l.values).filter_map(|(b, v)| v.map(|v| (b.start, v * scale))).collect())
        .collect();
    let width = chrono::TimeDelta::seconds(span.bucket.nominal_seconds());
    let svg = svg::line_chart(&per_line, span.from, span.to, width, tz, quantity.unit);
    let legend = drawn.iter().filter(|l| l.kind == "avg").map(|l| l.label.clone()).collect();
    let encoded = query.encoded(quantity, &span, tz);
    let ranges = PRESETS
        .iter()
        .map(|(preset, key, label)| RangeLink {
            label,
            href: format!("/devices/{device_id}?q={}&range={key}#chart", quantity.key),
            current: *preset == span.preset,
        })
        .collect();
    let range_words = match span.preset {
        Preset::Custom => format!(
            "{} to {}",
            series::iso_date(span.from, tz),
            series::iso_date(span.to - chrono::TimeDelta::seconds(1), tz)
        ),
        p => format!("last {}", PRESETS.iter().find(|(q, ..)| *q == p).map_or("24 hours", |(_, _, l)| *l)),
    };
    let unit_words = if unit.is_empty() { String::new() } else { format!(" ({unit})") };
    Ok(ChartView {
        title: format!("{}{unit_words}, {range_words}, per {}", quantity.label, span.bucket.label()),
        quantities: QUANTITIES
            .iter()
            .map(|q| QuantityChoice { key: q.key, label: q.label, selected: q.key == quantity.key })
            .collect(),
        ranges,
        from_date: series::iso_date(span.from, tz),
        to_date: series::iso_date(span.to - chrono::TimeDelta::seconds(1), tz),
        error,
        svg,
        legend,
        data_url: format!("/devices/{device_id}/series?{encoded}"),
        csv_url: format!("/devices/{device_id}/readings.csv?{encoded}"),
        points: buckets.len(),
    })
}

/// Rows per database round trip of an export.
const EXPORT_PAGE: i64 = 5_000;

fn csv_row(r: &StoredReading, tz: Tz, out: &mut String) {
    out.push_str(&r.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    out.push(',');
    out.push_str(&r.time.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S%:z").to_string());
    for cell in r.cells() {
        out.push(',');
        out.push_str(&cell);
    }
    out.push_str("\r\n");
}

/// `GET /devices/{id}/readings.csv`: every stored quantity of the range's readings, streamed a
/// page at a time (keyset on the time: a year of 1-minute readings never sits in memory).
pub async fn readings_csv(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    Path(id): Path<i32>,
    Query(query): Query<ChartQuery>,
) -> AppResult<Response> {
    let (device, _, tz) = device_and_zone(&state, id).await?;
    let span = query.span(state.clock.now(), tz).map_err(|e| AppError::BadRequest(e.0.into()))?;
    let mut header = String::from("time_utc,time_local");
    for (column, unit) in StoredReading::columns() {
        header.push(',');
        header.push_str(&if unit.is_empty() { column.to_string() } else { format!("{column} ({unit})") });
    }
    header.push_str("\r\n");
    let db = state.db.clone();
    let to = span.to;
    // (where the next page starts, whether that time was already written, header pending)
    let start = Some((span.from, false, Some(header)));
    let pages = futures_util::stream::try_unfold(start, move |cursor| {
        let db = db.clone();
        async move {
            let Some((from, after, header)) = cursor else { return Ok::<_, sqlx::Error>(None) };
            let rows = queries::readings_page(&db, id, from, after, to, EXPORT_PAGE).await?;
            let mut chunk = header.unwrap_or_default();
            for r in &rows {
                csv_row(r, tz, &mut chunk);
            }
            let next = match rows.last() {
                Some(last) if rows.len() as i64 == EXPORT_PAGE => Some((last.time, true, None)),
                _ => None,
            };
            Ok(Some((chunk, next)))
        }
    });
    let stem: String =
        device.external_id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let name = format!(
        "{stem}-{}-{}.csv",
        series::iso_date(span.from, tz),
        series::iso_date(span.to - chrono::TimeDelta::seconds(1), tz)
    );
    Ok(csv::stream(&name, pages).into_response())
}
