//! Shared test helpers: configs, a seeded generator, and the real Firestore emulator.
#![allow(dead_code)]

use splitter::{Actor, BasisPoints, PolicyConfig, PolicyName, Version};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn config(name: &str, canary: Option<&str>, bp: u16) -> PolicyConfig {
    PolicyConfig::new(
        PolicyName::new(name).unwrap(),
        Version::new("v1").unwrap(),
        canary.map(|v| Version::new(v).unwrap()),
        BasisPoints::new(bp.into()).unwrap(),
        Actor::new("test").unwrap(),
        jiff::Timestamp::now(),
    )
}

mod splitmix;
#[allow(unused_imports)]
pub use splitmix::SplitMix;

pub const EMULATOR_JAR: &str =
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar";

/// The emulator the test command started (`FIRESTORE_EMULATOR_HOST`). Fails loudly without it:
/// Firestore tests never skip.
pub fn shared_emulator() -> String {
    std::env::var("FIRESTORE_EMULATOR_HOST").unwrap_or_else(|_| {
        panic!(
            "FIRESTORE_EMULATOR_HOST is not set: run the tests with `./dev test`, which starts \
             the Firestore emulator (or start it yourself, see README.md)"
        )
    })
}

/// A project id no other test uses, so tests share one emulator without seeing each other.
pub fn unique_project(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let slug: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!("t-{slug}-{}-{nanos}", std::process::id())
}

/// A private Firestore emulator process, killed on drop (for tests that stop it on purpose).
pub struct Emulator {
    pub host: String,
    child: Option<Child>,
}

impl Emulator {
    pub fn start() -> Emulator {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Emulator::start_on(port)
    }

    /// Starts an emulator on `port` (a restart after [`Emulator::stop`] reuses the port; the
    /// new emulator starts empty, as the emulator keeps data in memory only).
    pub fn start_on(port: u16) -> Emulator {
        let host = format!("127.0.0.1:{port}");
        let child = Command::new("java")
            .args(["-Duser.language=en", "-cp", EMULATOR_JAR])
            .arg("com.google.cloud.datastore.emulator.firestore.CloudFirestore")
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the Firestore emulator (java -cp {EMULATOR_JAR}): {e}")
            });
        let mut emulator = Emulator {
            host,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !emulator.ready() {
            if let Some(status) = emulator.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the Firestore emulator exited at start: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the Firestore emulator did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        emulator
    }

    fn ready(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.host) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("Ok")
    }

    pub fn port(&self) -> u16 {
        self.host.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
