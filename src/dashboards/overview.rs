//! The Overview, the page a user lands on: per site what it draws now, today's and this month's
//! energy and cost, and which meters are down; a portfolio total above several sites. Two live
//! regions keep it current without reloads: power and device health every few seconds (one
//! statement per update), energy and cost every minute (the rollup's pace).

use std::collections::HashMap;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::Html;
use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use serde_json::{Value, json};

use super::figures::{self, Energy, Live};
use crate::auth::sessions::SessionUser;
use crate::error::{AppError, AppResult};
use crate::sites::db::{self as sites_db, LiveDevice, SiteRow};
use crate::sites::readings::{self, Status};
use crate::state::AppState;
use crate::tariffs::bills;
use crate::tariffs::local::Period;
use crate::web::page::Page;
use crate::web::render;
use crate::web::session::CurrentUser;

/// How often the page asks for power and device health, and for energy and cost.
pub const LIVE_SECONDS: u32 = 5;
pub const ENERGY_SECONDS: u32 = 60;

fn by_site(devices: &[LiveDevice]) -> HashMap<i32, Vec<&LiveDevice>> {
    let mut map: HashMap<i32, Vec<&LiveDevice>> = HashMap::new();
    for d in devices {
        map.entry(d.site_id).or_default().push(d);
    }
    map
}

/// A site's card.
pub struct SiteCard {
    pub id: i32,
    pub name: String,
    pub time_zone: String,
    pub live: Live,
    pub devices: Vec<DeviceLine>,
    pub energy: Option<EnergyView>,
    pub newest: String,
}

/// A device in the card's list of meters down (every device is listed, the healthy ones hidden,
/// so a live update can show or hide any of them).
pub struct DeviceLine {
    pub id: i32,
    pub text: String,
    pub class: &'static str,
    pub down: bool,
}

pub struct EnergyView {
    pub today_kwh: String,
    pub month_kwh: String,
    pub export_kwh: Option<String>,
    pub month_label: String,
    pub today_cost: Option<String>,
    pub month_cost: Option<String>,
    pub projected_cost: Option<String>,
    pub completeness: String,
}

/// "November 2026" for a calendar month; "Bill 15 Nov – 14 Dec 2026" for a billing period by
/// another meter-read day, so the figures say which days they cover.
pub(super) fn period_label(p: Period) -> String {
    if p.start.day() == 1 && p.end.day() == 1 {
        p.start.format("%B %Y").to_string()
    } else {
        format!("Bill {} – {}", p.start.format("%-d %b"), p.last_day().format("%-d %b %Y"))
    }
}

fn energy_view(e: &Energy) -> EnergyView {
    let money = |f: &dyn Fn(&figures::Cost) -> rust_decimal::Decimal| {
        e.cost.as_ref().map(|c| figures::money_text(&c.currency, f(c)))
    };
    EnergyView {
        today_kwh: figures::kwh_text(e.today_kwh),
        month_kwh: figures::kwh_text(e.month_kwh),
        export_kwh: (e.month_export_kwh > 0.0).then(|| figures::kwh_text(e.month_export_kwh)),
        month_label: period_label(e.period),
        today_cost: money(&|c| c.today),
        month_cost: money(&|c| c.month_to_date),
        projected_cost: money(&|c| c.projected),
        completeness: e.completeness.map_or_else(|| "–".into(), |p| format!("{p:.1} %")),
    }
}

fn device_lines(devices: &[&LiveDevice], live: &Live) -> Vec<DeviceLine> {
    devices
        .iter()
        .map(|d| match live.down.iter().find(|down| down.id == d.id) {
            Some(down) => DeviceLine {
                id: d.id,
                text: format!("{}: {}, {}", down.name, down.status.label(), down.detail),
                class: if down.status == Status::Failing { "down failing" } else { "down" },
                down: true,
            },
            None => DeviceLine { id: d.id, text: d.name.clone(), class: "down", down: false },
        })
        .collect()
}

pub(super) fn newest_text(live: &Live, tz: Tz) -> String {
    live.newest.map_or_else(|| "no readings yet".into(), |t| format!("newest reading {}", readings::local_time(t, tz)))
}

/// What one live update answers: text per `data-field` key (see static/app.js).
pub(super) fn live_fields(
    sites: &[SiteRow],
    devices: &[LiveDevice],
    now: DateTime<Utc>,
) -> serde_json::Map<String, Value> {
    let grouped = by_site(devices);
    let mut fields = serde_json::Map::new();
    let mut lives = Vec::new();
    for site in sites {
        let tz = site.zone();
        let mine = grouped.get(&site.id).cloned().unwrap_or_default();
        let live = figures::live(&mine, now, tz);
        fields.insert(format!("site-{}-kw", site.id), json!(live.kw_text()));
        fields.insert(format!("site-{}-devices", site.id), json!(live.summary()));
        fields.insert(format!("site-{}-newest", site.id), json!(newest_text(&live, tz)));
        for line in device_lines(&mine, &live) {
            fields.insert(
                format!("device-{}", line.id),
                json!({ "text": line.text, "hidden": !line.down, "class": line.class }),
            );
        }
        lives.push(live);
    }
    let total = figures::portfolio(&lives.iter().collect::<Vec<_>>());
    fields.insert("portfolio-kw".into(), json!(total.kw_text()));
    fields.insert("portfolio-devices".into(), json!(total.summary()));
    fields
}

/// A site's card: its live figures, meters and (when it has a month) energy.
pub(super) fn card(site: SiteRow, energy: Option<&Energy>, devices: &[LiveDevice], now: DateTime<Utc>) -> SiteCard {
    let tz = site.zone();
    let mine: Vec<&LiveDevice> = devices.iter().filter(|d| d.site_id == site.id).collect();
    let live = figures::live(&mine, now, tz);
    SiteCard {
        id: site.id,
        devices: device_lines(&mine, &live),
        newest: newest_text(&live, tz),
        name: site.name,
        time_zone: site.time_zone,
        energy: energy.map(energy_view),
        live,
    }
}

#[derive(Template)]
#[template(path = "dashboards/overview.html")]
struct Overview {
    page: Page,
    user: SessionUser,
    sites: Vec<SiteCard>,
    portfolio: Option<Portfolio>,
    live_seconds: u32,
    energy_seconds: u32,
    /// Open alarms (`alarms/active.html`).
    active: crate::alarms::ActiveAlarmView,
}

pub struct Portfolio {
    pub kw: String,
    pub devices: String,
    pub today_kwh: String,
    pub month_kwh: String,
    /// Per currency: today, month to date, projected.
    pub costs: Vec<(String, String, String)>,
}

fn portfolio_view(live: &Live, energies: &[&Energy]) -> Portfolio {
    let mut costs: Vec<(String, [rust_decimal::Decimal; 3])> = Vec::new();
    for c in energies.iter().filter_map(|e| e.cost.as_ref()) {
        match costs.iter_mut().find(|(cur, _)| *cur == c.currency) {
            Some((_, sums)) => {
                sums[0] += c.today;
                sums[1] += c.month_to_date;
                sums[2] += c.projected;
            }
            None => costs.push((c.currency.clone(), [c.today, c.month_to_date, c.projected])),
        }
    }
    Portfolio {
        kw: live.kw_text(),
        devices: live.summary(),
        today_kwh: figures::kwh_text(energies.iter().map(|e| e.today_kwh).sum()),
        month_kwh: figures::kwh_text(energies.iter().map(|e| e.month_kwh).sum()),
        costs: costs
            .into_iter()
            .map(|(cur, [t, m, p])| {
                (figures::money_text(&cur, t), figures::money_text(&cur, m), figures::money_text(&cur, p))
            })
            .collect(),
    }
}

/// Every site's energy figures, in `sites` order.
pub(super) async fn energies(
    state: &AppState,
    sites: &[SiteRow],
    now: DateTime<Utc>,
) -> AppResult<Vec<Option<Energy>>> {
    // This billing period in each site's zone (by its meter-read day), its energy read through
    // the energy door in one statement.
    let months: Vec<(&SiteRow, Period)> = sites
        .iter()
        .filter_map(|site| {
            Period::containing(now.with_timezone(&site.zone()).date_naive(), site.read_day()).map(|p| (site, p))
        })
        .collect();
    let loaded = bills::load_all(&state.db, &months).await?;
    let mut by_id: HashMap<i32, bills::Loaded> = months.iter().map(|(s, _)| s.id).zip(loaded).collect();
    Ok(sites
        .iter()
        .map(|site| {
            let l = by_id.remove(&site.id)?;
            figures::energy(now, site.read_day(), &l.input())
        })
        .collect())
}

pub async fn overview(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    page: Page,
) -> AppResult<Html<String>> {
    let now = state.clock.now();
    let sites = sites_db::sites_by_name(&state.db).await?;
    let devices = sites_db::live_devices(&state.db).await?;
    let energies = energies(&state, &sites, now).await?;
    let cards: Vec<SiteCard> =
        sites.into_iter().zip(&energies).map(|(site, energy)| card(site, energy.as_ref(), &devices, now)).collect();
    let portfolio = (cards.len() > 1).then(|| {
        let live = figures::portfolio(&cards.iter().map(|c| &c.live).collect::<Vec<_>>());
        portfolio_view(&live, &energies.iter().flatten().collect::<Vec<_>>())
    });
    render(&Overview {
        page,
        user,
        sites: cards,
        portfolio,
        live_seconds: LIVE_SECONDS,
        energy_seconds: ENERGY_SECONDS,
        active: crate::alarms::active_alarms(&state).await?,
    })
}

/// A live update's answer: `{"fields": {...}, "updatedAt": "..."}`.
pub(super) fn answer(fields: serde_json::Map<String, Value>, now: DateTime<Utc>) -> Json<Value> {
    Json(json!({ "fields": fields, "updatedAt": now.to_rfc3339() }))
}

/// `GET /api/live/overview`: power and device health (one statement); 401 once the session is
/// over, so the page stops asking.
pub async fn live(State(state): State<AppState>, user: Option<CurrentUser>) -> AppResult<Json<Value>> {
    user.ok_or_else(|| AppError::Unauthorized("Your session has ended.".into()))?;
    let now = state.clock.now();
    let sites = sites_db::sites_by_name(&state.db).await?;
    let devices = sites_db::live_devices(&state.db).await?;
    Ok(answer(live_fields(&sites, &devices, now), now))
}

/// `GET /api/live/overview/energy`: today's and this month's energy and cost per site.
pub async fn live_energy(State(state): State<AppState>, user: Option<CurrentUser>) -> AppResult<Json<Value>> {
    user.ok_or_else(|| AppError::Unauthorized("Your session has ended.".into()))?;
    let now = state.clock.now();
    let sites = sites_db::sites_by_name(&state.db).await?;
    let energies = energies(&state, &sites, now).await?;
    Ok(answer(energy_fields(&sites, &energies), now))
}

/// Today's and this month's figures per site (and their sum over several sites) as live fields.
pub(super) fn energy_fields(sites: &[SiteRow], energies: &[Option<Energy>]) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    for (site, energy) in sites.iter().zip(energies) {
        let Some(e) = energy else { continue };
        let v = energy_view(e);
        let id = site.id;
        fields.insert(format!("site-{id}-today-kwh"), json!(v.today_kwh));
        fields.insert(format!("site-{id}-month-kwh"), json!(v.month_kwh));
        fields.insert(format!("site-{id}-completeness"), json!(v.completeness));
        if let (Some(t), Some(m), Some(p)) = (v.today_cost, v.month_cost, v.projected_cost) {
            fields.insert(format!("site-{id}-today-cost"), json!(t));
            fields.insert(format!("site-{id}-month-cost"), json!(m));
            fields.insert(format!("site-{id}-projected-cost"), json!(p));
        }
    }
    if sites.len() > 1 {
        let total = portfolio_view(&Live::default(), &energies.iter().flatten().collect::<Vec<_>>());
        fields.insert("portfolio-today-kwh".into(), json!(total.today_kwh));
        fields.insert("portfolio-month-kwh".into(), json!(total.month_kwh));
    }
    fields
}
