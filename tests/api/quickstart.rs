//! The README's first command, `scripts/dev.sh`, end to end: its own PostgreSQL cluster, the
//! simulated meters, the demo site, the portal, and live readings within seconds; the metrics on
//! the TAU_DEV_METRICS_PORT of loopback and every listener of the script on loopback; then Ctrl-C
//! (SIGTERM) stops everything it started.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use tokio::process::Command;

use crate::helpers::{free_port, wait_for};

#[tokio::test]
async fn the_quick_start_shows_live_readings_from_simulated_meters_and_stops_cleanly() {
    if std::env::var_os("TAU_SKIP_QUICKSTART").is_some() {
        eprintln!("SKIPPED: TAU_SKIP_QUICKSTART is set");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The postgres OS user must reach the cluster below it when the test runs as root.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (portal, pg, modbus, metrics) = (free_port(), free_port(), free_port(), free_port());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev.sh");
    let mut child = Command::new("bash")
        .arg(script)
        .env("TAU_DEV_DIR", dir.path())
        .env("TAU_DEV_BIN", env!("CARGO_BIN_EXE_tau-portal"))
        .env("TAU_DEV_PORT", portal.to_string())
        .env("TAU_DEV_PG_PORT", pg.to_string())
        .env("TAU_DEV_MODBUS_PORT", modbus.to_string())
        .env("TAU_DEV_METRICS_PORT", metrics.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run scripts/dev.sh");
    let dev_sh = Pid::from_raw(child.id().unwrap() as i32);
    let mut stop = StopOnDrop(Some(dev_sh));

    let db = PgConnectOptions::new().host("127.0.0.1").port(pg).username("postgres").database("power_monitoring");
    // Generous: a loaded machine; the cluster is created on the first run.
    let readings = wait_for("readings of the demo meters", Duration::from_secs(120), || async {
        let pool = sqlx::PgPool::connect_with(db.clone()).await.ok()?;
        let n: i64 = sqlx::query_scalar(
            r#"SELECT count(DISTINCT m."DeviceId") FROM monitoring."PowerMeasurements" m
               JOIN monitoring."Devices" d ON d."Id" = m."DeviceId" WHERE d."ExternalId" LIKE 'demo-%'"#,
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        pool.close().await;
        (n == 3).then_some(n)
    })
    .await;
    assert_eq!(readings, 3, "every demo meter has readings");
    let health = reqwest::get(format!("http://127.0.0.1:{portal}/health")).await.unwrap();
    assert!(health.status().is_success());
    let password = std::fs::read_to_string(dir.path().join("admin-password")).unwrap();
    assert!(password.trim().len() >= 12, "an admin password was generated");

    let scrape = wait_for("the portal's metrics on TAU_DEV_METRICS_PORT", Duration::from_secs(30), || async {
        let response = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics")).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.text().await.ok()
    })
    .await;
    assert!(scrape.contains("tau_portal_build_info"), "the metrics port serves the portal's metrics:\n{scrape}");
    let listening = listening_sockets_below(dev_sh);
    let ports: BTreeSet<u16> = listening.iter().map(SocketAddr::port).collect();
    for (what, port) in [("portal", portal), ("simulator", modbus)] {
        assert!(ports.contains(&port), "the {what} of dev.sh listens on {port}: {listening:?}");
    }
    assert!(
        listening.contains(&SocketAddr::from((Ipv4Addr::LOCALHOST, metrics))),
        "the portal's metrics listener is bound to 127.0.0.1:{metrics}: {listening:?}"
    );
    assert!(!ports.contains(&9090), "nothing of dev.sh listens on the binary's default 9090: {listening:?}");
    assert!(listening.iter().all(|a| a.ip().is_loopback()), "dev.sh listens on loopback only: {listening:?}");

    kill(dev_sh, Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("dev.sh stops").unwrap();
    stop.0 = None;
    assert!(status.code().is_some(), "dev.sh exited by itself after SIGTERM: {status:?}");
    for port in [portal, pg, modbus, metrics] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still open after Ctrl-C");
    }
}

/// Stops dev.sh like Ctrl-C when the test fails half way: SIGTERM lets its trap stop the portal,
/// the simulator and the cluster (a SIGKILL of the script would orphan them, still listening),
/// and waiting keeps the temporary directory (dropped next) until they are gone.
struct StopOnDrop(Option<Pid>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let Some(pid) = self.0 else { return };
        if kill(pid, Signal::SIGTERM).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(50)),
                _ => return,
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}

/// The TCP sockets that processes below `root` (dev.sh's portal and simulator; PostgreSQL detaches
/// through pg_ctl) listen on, with the address each is bound to: the kernel's socket tables
/// (/proc/net/tcp, /proc/net/tcp6) joined on inode with the processes' open files. No `ss` or
/// `netstat` needed, and a socket of an unrelated process on the machine never counts.
fn listening_sockets_below(root: Pid) -> Vec<SocketAddr> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some(ppid) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        else {
            continue;
        };
        children.entry(ppid).or_default().push(pid);
    }
    let mut inodes = HashSet::new();
    let mut queue = vec![root.as_raw()];
    while let Some(pid) = queue.pop() {
        queue.extend(children.get(&pid).into_iter().flatten());
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else { continue };
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; 0A = LISTEN
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                listening.push(proc_net_address(fields[1]));
            }
        }
    }
    listening
}

/// `0100007F:1F90` -> 127.0.0.1:8080: the kernel prints the address's network-order bytes as
/// 32-bit words in host byte order, the port as a hex number.
fn proc_net_address(field: &str) -> SocketAddr {
    let (ip, port) = field.split_once(':').unwrap();
    let words: Vec<[u8; 4]> =
        (0..ip.len() / 8).map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16).unwrap().to_ne_bytes()).collect();
    let ip = match words.as_slice() {
        [a] => IpAddr::V4(Ipv4Addr::from(*a)),
        _ => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(words.concat()).unwrap())),
    };
    SocketAddr::new(ip.to_canonical(), u16::from_str_radix(port, 16).unwrap())
}

#[test]
fn proc_net_addresses_read_as_the_kernel_writes_them() {
    assert_eq!(proc_net_address("0100007F:1F90"), SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)));
    assert_eq!(proc_net_address("00000000:2382"), SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9090)));
    assert_eq!(proc_net_address("00000000000000000000000001000000:0050"), SocketAddr::from((Ipv6Addr::LOCALHOST, 80)));
    // An IPv4-mapped address counts as the IPv4 one.
    assert_eq!(proc_net_address("0000000000000000FFFF00000100007F:0050"), SocketAddr::from((Ipv4Addr::LOCALHOST, 80)));
}
