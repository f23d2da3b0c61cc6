//! The independent Modbus peer: `tests/modbus/acuvim_image.py`, a pymodbus server with a
//! hand-written Acuvim II register image (see tests/modbus/README.md). `ModbusPeer` starts it for
//! any test; the tests here check that the image serves the words written in it. Skipped when
//! `TAU_TEST_MODBUS_PYTHON` is not set (scripts/test.sh installs pymodbus and sets it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};

use crate::helpers::free_port;

/// The peer process serving one image on 127.0.0.1; killed on drop.
pub struct ModbusPeer {
    child: Child,
    pub addr: SocketAddr,
}

/// Unit id of the meter in every image.
pub const PEER_UNIT_ID: u8 = 1;

impl ModbusPeer {
    /// Starts `acuvim_image.py <image>` and waits for its READY line; `None` (after printing
    /// why) when the python with pymodbus is not available.
    pub async fn start(image: &str) -> Option<ModbusPeer> {
        ModbusPeer::start_with(image, &[]).await
    }

    /// A peer that closes connections left idle for `idle` (`--idle-close`), like a gateway.
    pub async fn idle_closing(image: &str, idle: Duration) -> Option<ModbusPeer> {
        ModbusPeer::start_with(image, &["--idle-close", &idle.as_secs_f64().to_string()]).await
    }

    async fn start_with(image: &str, options: &[&str]) -> Option<ModbusPeer> {
        let Some(python) = std::env::var_os("TAU_TEST_MODBUS_PYTHON").filter(|p| !p.is_empty()) else {
            eprintln!("SKIPPED: Modbus peer (TAU_TEST_MODBUS_PYTHON is not set; scripts/test.sh installs pymodbus)");
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus/acuvim_image.py");
        let port = free_port();
        let mut child = Command::new(python)
            .arg(script)
            .args([image, &port.to_string()])
            .args(options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/modbus/acuvim_image.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = format!("READY {port}");
        let wait = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line == ready {
                    return true;
                }
            }
            false
        };
        let started = tokio::time::timeout(Duration::from_secs(30), wait).await;
        assert!(matches!(started, Ok(true)), "acuvim_image.py {image} did not print {ready:?}: {started:?}");
        Some(ModbusPeer { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) })
    }

    pub async fn read(&self, address: u16, quantity: u16) -> Result<Vec<u16>, ExceptionCode> {
        read_on(&mut self.connect().await, address, quantity).await.expect("Modbus transport")
    }

    async fn connect(&self) -> Context {
        tokio_modbus::client::tcp::connect_slave(self.addr, Slave(PEER_UNIT_ID)).await.unwrap()
    }

    /// SIGTERM, then the exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.expect("exit within 10 s").unwrap()
    }
}

/// Sends one request (2 registers at 0x4000) on a raw socket, reads its reply, and waits (at
/// most 10 s) for the server to close the connection: how long it stayed idle before it did.
pub async fn closed_after_idle(addr: SocketAddr, unit: u8) -> Duration {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(&[0, 7, 0, 0, 0, 6, unit, 3, 0x40, 0x00, 0, 2]).await.unwrap();
    let mut reply = [0u8; 13];
    socket.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[..2], [0, 7], "the reply to the request");
    let answered = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut reply)).await;
    assert!(matches!(end, Ok(Ok(0))), "the server closes the idle connection: {end:?}");
    answered.elapsed()
}

async fn read_on(ctx: &mut Context, address: u16, quantity: u16) -> tokio_modbus::Result<Vec<u16>> {
    let reply = tokio::time::timeout(Duration::from_secs(5), ctx.read_holding_registers(address, quantity));
    reply.await.expect("the peer answers or closes within 5 s")
}

#[tokio::test]
async fn primary_image_serves_its_hand_written_words() {
    let Some(peer) = ModbusPeer::start("primary-3ln").await else { return };
    let real_time = peer.read(0x4000, 72).await.unwrap();
    assert_eq!(real_time.len(), 72);
    assert_eq!(real_time[2..4], [0x4366, 0x8000], "V1 = 230.5 V");
    assert_eq!(real_time[0x22..0x24], [0x45CD, 0x5000], "P total = 6570 W");
    let energy = peer.read(0x4048, 18).await.unwrap();
    assert_eq!(energy[0..2], [0x075B, 0xCD15], "kWh import = 123,456,789 counts");
    assert_eq!(peer.read(0xC350, 2).await, Err(ExceptionCode::IllegalDataAddress), "no SunSpec without AXM-WEB");
    assert!(peer.stop().await.success(), "exits 0 on SIGTERM");
}

#[tokio::test]
async fn secondary_image_holds_the_ratios_and_mode() {
    let Some(peer) = ModbusPeer::start("secondary-3ll").await else { return };
    let settings = peer.read(0x1003, 27).await.unwrap();
    assert_eq!(settings[0], 3, "0x1003 wiring 3LL");
    assert_eq!(settings[2..7], [0x0000, 0x2AF8, 0x006E, 0x00C8, 0x0005], "PT1 11000, PT2 110, CT1 200, CT2 5");
    assert_eq!(settings[0x101D - 0x1003], 0, "0x101D secondary");
    let real_time = peer.read(0x4000, 72).await.unwrap();
    assert_eq!(real_time[0x0A..0x0C], [0x42DC, 0x0000], "V12 = 110 V secondary");
    assert_eq!(real_time[2..4], [0, 0], "V1 reads 0 in 3LL");
}

#[tokio::test]
async fn an_idle_closing_peer_keeps_a_busy_connection_and_closes_an_idle_one() {
    let idle = Duration::from_millis(600);
    let Some(peer) = ModbusPeer::idle_closing("primary-3ln", idle).await else { return };
    let mut busy = peer.connect().await;
    let started = std::time::Instant::now();
    while started.elapsed() < idle * 2 {
        assert!(read_on(&mut busy, 0x4000, 2).await.is_ok_and(|r| r.is_ok()), "a busy connection stays open");
        tokio::time::sleep(idle / 4).await;
    }
    let idled = closed_after_idle(peer.addr, PEER_UNIT_ID).await;
    assert!(idled >= idle * 9 / 10, "closed after {idled:?} idle, not {idle:?}");
    assert_eq!(peer.read(0x4000, 2).await.map(|r| r.len()), Ok(2), "a new connection is served");
    peer.stop().await;
}
