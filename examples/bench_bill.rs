//! Times a site's bill (load through the energy door + engine) against a plain SUM of the device
//! intervals it sums, on the same connection pool, after timing the site rollup's refresh of the
//! whole month (the work the rollup job does in the background). Driven by scripts/bench-bill.sh.
//!
//! Usage: bench_bill SITE_ID YYYY-MM [RUNS]   (DATABASE_URL: the database)

use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use tau_acuvim_portal::measurements::energy;
use tau_acuvim_portal::tariffs::{bills, engine, local::Period};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bench_bill SITE_ID YYYY-MM [RUNS]";
    let site_id: i32 = args.get(1).ok_or(usage)?.parse()?;
    let (year, month) = args.get(2).ok_or(usage)?.split_once('-').ok_or(usage)?;
    let runs: usize = args.get(3).map_or(Ok(20), |r| r.parse())?;
    #[expect(clippy::disallowed_methods, reason = "a benchmark tool, given its database by bench-bill.sh")]
    let url = std::env::var("DATABASE_URL")?;
    let pool = PgPoolOptions::new().max_connections(2).connect(&url).await?;
    let site = tau_acuvim_portal::sites::db::site(&pool, site_id).await?.ok_or("no such site")?;
    let period = Period::month(year.parse()?, month.parse()?, 1).ok_or("bad month")?;
    let (from, to) = period.utc(site.zone());

    // The inserted intervals queued the site: this is a full month's refresh.
    let t = Instant::now();
    let refreshed = energy::refresh_site_sums(&pool).await?;
    let refresh = t.elapsed();

    let (mut bills, mut engines, mut sums) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    // One warm-up round (caches, prepared statements), then `runs` measured ones.
    for round in 0..=runs {
        let t0 = Instant::now();
        let loaded = bills::load(&pool, &site, period).await?;
        let t1 = Instant::now();
        let bill = engine::bill(&loaded.input());
        let t2 = Instant::now();
        let sum: (Option<f64>, i64) = sqlx::query_as(
            r#"SELECT sum(e."ImportWh"), count(*) FROM monitoring."EnergyIntervals" e
               JOIN monitoring."Devices" d ON d."Id" = e."DeviceId"
               WHERE d."SiteId" = $1 AND e."Start" >= $2 AND e."Start" < $3"#,
        )
        .bind(site_id)
        .bind(from)
        .bind(to)
        .fetch_one(&pool)
        .await?;
        let t3 = Instant::now();
        if round > 0 {
            bills.push(t2 - t0);
            engines.push(t2 - t1);
            sums.push(t3 - t2);
        }
        last = Some((bill, sum));
    }
    let (bill, (sum_wh, rows)) = last.ok_or("no runs")?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "rows={rows} intervals={} lines={} total={} {}",
        bill.intervals,
        bill.lines.len(),
        bill.total,
        bill.currency
    );
    println!("check: bill import kWh {} vs SUM {:.3}", bill.import_kwh.round_dp(3), sum_wh.unwrap_or(0.0) / 1000.0);
    println!(
        "bill_ms_median={:.2} bill_ms_best={:.2} engine_ms_median={:.3} sum_ms_median={:.2} sum_ms_best={:.2} ratio={:.2} refresh_ms={:.1} refreshed_sites={refreshed}",
        ms(median(bills.clone())),
        ms(*bills.iter().min().ok_or("no runs")?),
        ms(median(engines)),
        ms(median(sums.clone())),
        ms(*sums.iter().min().ok_or("no runs")?),
        ms(median(bills)) / ms(median(sums)).max(1e-9),
        ms(refresh),
    );
    Ok(())
}
