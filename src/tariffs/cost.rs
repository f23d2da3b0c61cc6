//! The site page's Cost tab: a month's bill, CSV exports of its lines and of its 15-minute
//! intervals; the thin I/O around the engine.

use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::bills::{self, Loaded};
use super::engine::{self, Bill, BillInput};
use super::local::Period;
use crate::error::{AppError, AppResult};
use crate::sites::db::SiteRow;
use crate::state::AppState;
use crate::web::page::Page;
use crate::web::session::CurrentUser;
use crate::web::{csv, render};

/// `?month=YYYY-MM&read_day=N`: the billing period asked for, the current one by default; the
/// site's meter-read day unless `read_day` asks for another (a one-off look).
#[derive(Deserialize, Default)]
pub struct PeriodQuery {
    #[serde(default)]
    month: String,
    #[serde(default)]
    read_day: String,
}

impl PeriodQuery {
    fn resolve(&self, site: &SiteRow, now: DateTime<Utc>) -> Result<(Period, u32), AppError> {
        let tz = site.zone();
        let read_day = match self.read_day.trim() {
            "" => site.read_day(),
            raw => raw
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=28).contains(d))
                .ok_or_else(|| AppError::BadRequest(format!("read_day: “{raw}” is not a day from 1 to 28.")))?,
        };
        let today = now.with_timezone(&tz).date_naive();
        let period = match self.month.trim() {
            "" => Period::containing(today, read_day),
            raw => NaiveDate::parse_from_str(&format!("{raw}-01"), "%Y-%m-%d")
                .ok()
                .and_then(|d| Period::month(d.year(), d.month(), read_day)),
        }
        .ok_or_else(|| AppError::BadRequest(format!("month: “{}” is not a month; use YYYY-MM.", self.month)))?;
        Ok((period, read_day))
    }
}

pub struct LineView {
    kind: &'static str,
    code: String,
    description: String,
    quantity: String,
    unit: &'static str,
    rate: String,
    amount: String,
    vat: String,
    note: String,
    segment: usize,
}

fn line_views(bill: &Bill) -> Vec<LineView> {
    bill.lines
        .iter()
        .map(|l| LineView {
            kind: l.kind.label(),
            code: l.code.clone(),
            description: l.description.clone(),
            quantity: l.quantity.round_dp(3).normalize().to_string(),
            unit: l.unit,
            rate: l.rate.normalize().to_string(),
            amount: format!("{:.2}", l.amount),
            vat: if l.vat_percent.is_zero() { "no".into() } else { format!("{} %", l.vat_percent.normalize()) },
            note: l.note.clone(),
            segment: l.segment,
        })
        .collect()
}

/// A part of a billing period split where the tariff or its version changes: its days, what
/// it is billed on, its lines and their sum.
pub struct PartView {
    number: usize,
    start: NaiveDate,
    last_day: NaiveDate,
    days: i64,
    /// "Ontario RPP time-of-use (OEB) (rates from 2024-11-01)", or no tariff.
    tariff: String,
    holidays: Vec<String>,
    lines: Vec<LineView>,
    subtotal: String,
}

fn part_views(bill: &Bill) -> Vec<PartView> {
    let mut lines = line_views(bill);
    bill.segments
        .iter()
        .enumerate()
        .map(|(n, s)| {
            let mine: Vec<LineView> = lines.extract_if(.., |l| l.segment == n).collect();
            let subtotal: Decimal = bill.lines.iter().filter(|l| l.segment == n).map(|l| l.amount).sum();
            PartView {
                number: n + 1,
                start: s.start,
                last_day: s.last_day(),
                days: (s.end - s.start).num_days(),
                tariff: match (&s.tariff, s.version_from) {
                    (Some(t), Some(v)) => format!("{t} (rates from {v})"),
                    (Some(t), None) => t.clone(),
                    (None, _) => "no tariff in effect".into(),
                },
                holidays: s.holidays.clone(),
                lines: mine,
                subtotal: format!("{subtotal:.2}"),
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "tariffs/cost.html")]
struct CostPage {
    page: Page,
    site: SiteRow,
    month: String,
    read_day: u32,
    query: String,
    bill: Bill,
    parts: Vec<PartView>,
    has_tariff: bool,
    /// The tariff bills on the site's NMD (capacity or excess-NMD charges): the page states it.
    uses_nmd: bool,
    /// The site's own meter-read day (the query may ask for another).
    site_read_day: u32,
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    page: Page,
    Path(id): Path<i32>,
    Query(q): Query<PeriodQuery>,
) -> AppResult<Html<String>> {
    let site = crate::sites::db::site(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let (period, read_day) = q.resolve(&site, state.clock.now())?;
    let loaded = bills::load(&state.db, &site, period).await?;
    let bill = engine::bill(&loaded.input());
    let month = period.start.format("%Y-%m").to_string();
    let query = format!("month={month}&read_day={read_day}");
    render(&CostPage {
        page,
        has_tariff: !loaded.schedule.is_empty(),
        uses_nmd: engine::uses_nmd(period, &loaded.schedule),
        parts: part_views(&bill),
        site_read_day: site.read_day(),
        site,
        month,
        read_day,
        query,
        bill,
    })
}

fn file_stem(site: &SiteRow, period: Period) -> String {
    format!("site-{}-{}-to-{}", site.id, period.start, period.last_day())
}

/// The bill's lines as CSV: one row per line, then subtotal, VAT and total.
pub fn bill_csv(bill: &Bill) -> String {
    let mut out = String::from("kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency\n");
    for l in &bill.lines {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.2},{},{},{}",
            csv::text(l.kind.label()),
            csv::text(&l.code),
            csv::text(&l.description),
            l.quantity.normalize(),
            l.unit,
            l.rate.normalize(),
            l.amount,
            l.vat_percent.normalize(),
            csv::text(&l.note),
            bill.currency
        );
    }
    for (label, v) in [("Subtotal", bill.subtotal), ("VAT", bill.vat), ("Total", bill.total)] {
        let _ = writeln!(out, "{label},,,,,,{v:.2},,,{}", bill.currency);
    }
    out
}

/// What both CSV exports need: the file name stem and the period's data.
async fn export_data(state: &AppState, id: i32, q: &PeriodQuery) -> AppResult<(String, Loaded)> {
    let site = crate::sites::db::site(&state.db, id).await?.ok_or(AppError::NotFound)?;
    let (period, _) = q.resolve(&site, state.clock.now())?;
    let loaded = bills::load(&state.db, &site, period).await?;
    Ok((file_stem(&site, period), loaded))
}

pub async fn bill_export(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    Path(id): Path<i32>,
    Query(q): Query<PeriodQuery>,
) -> AppResult<Response> {
    let (stem, loaded) = export_data(&state, id, &q).await?;
    let bill = engine::bill(&loaded.input());
    Ok(csv::download(&format!("{stem}-bill.csv"), bill_csv(&bill)))
}

/// The site's 15-minute intervals as CSV, local time and UTC side by side.
pub fn intervals_csv(input: &BillInput<'_>) -> String {
    let mut out = String::from(
        "local_start,utc_offset,utc_start,import_kwh,export_kwh,apparent_kvah,device_rows,estimated,season,period\n",
    );
    for r in engine::interval_rows(input) {
        let kwh = |wh: f64| (engine::wh(wh) / Decimal::ONE_THOUSAND).normalize();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            r.local.format("%Y-%m-%d %H:%M"),
            r.utc_offset,
            r.interval.start.format("%Y-%m-%dT%H:%M:%SZ"),
            kwh(r.interval.import_wh),
            kwh(r.interval.export_wh),
            kwh(r.interval.vah),
            r.interval.rows,
            r.interval.estimated,
            csv::text(r.season.unwrap_or("")),
            r.period.map_or("", |p| p.key()),
        );
    }
    out
}

pub async fn intervals_export(
    State(state): State<AppState>,
    CurrentUser(_): CurrentUser,
    Path(id): Path<i32>,
    Query(q): Query<PeriodQuery>,
) -> AppResult<Response> {
    let (stem, loaded) = export_data(&state, id, &q).await?;
    Ok(csv::download(&format!("{stem}-intervals.csv"), intervals_csv(&loaded.input())))
}
