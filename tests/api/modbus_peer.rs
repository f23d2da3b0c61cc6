//! The independent Modbus peer: `tests/modbus/acuvim_image.py`, a pymodbus server with a
//! hand-written Acuvim II register image (see tests/modbus/README.md). `ModbusPeer` starts it for
//! any test; the tests here check that the image serves the words written in it. Skipped when
//! `TAU_TEST_MODBUS_PYTHON` is not set (scripts/test.sh installs pymodbus and sets it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_modbus::client::Reader;
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
        let Some(python) = std::env::var_os("TAU_TEST_MODBUS_PYTHON").filter(|p| !p.is_empty()) else {
            eprintln!("SKIPPED: Modbus peer (TAU_TEST_MODBUS_PYTHON is not set; scripts/test.sh installs pymodbus)");
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/modbus/acuvim_image.py");
        let port = free_port();
        let mut child = Command::new(python)
            .arg(script)
            .args([image, &port.to_string()])
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
        let mut ctx = tokio_modbus::client::tcp::connect_slave(self.addr, Slave(PEER_UNIT_ID)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), ctx.read_holding_registers(address, quantity));
        reply.await.expect("the peer answers within 5 s").expect("Modbus transport")
    }

    /// SIGTERM, then the exit status.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id().expect("running") as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.expect("exit within 10 s").unwrap()
    }
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
