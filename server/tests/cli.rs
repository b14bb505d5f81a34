//! The server binary as the README starts it: `./dev run` sets `APX_DEMO=1` (a boolean from the
//! environment: 1/true/yes are on, 0/false/no off), and the demo service must then answer.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn start(demo: &str, dir: &std::path::Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_apx-canary"))
        .args(["--addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("APX_DEMO", demo)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server binary starts");
    (Server(child), format!("http://127.0.0.1:{port}"))
}

async fn status(url: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(url)
        .header("x-tenant-id", "t-1")
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn demo_status(demo: &str) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base) = start(demo, dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&format!("{base}/healthz")).await != Some(200) {
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "APX_DEMO={demo}: the server exited at start"
        );
        assert!(
            Instant::now() < deadline,
            "APX_DEMO={demo}: no /healthz within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    status(&format!("{base}/demo/demo-payment-api"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apx_demo_from_the_environment_turns_the_demo_service_on_and_off() {
    assert_eq!(
        demo_status("1").await,
        200,
        "APX_DEMO=1, as ./dev run sets it"
    );
    assert_eq!(demo_status("true").await, 200);
    assert_eq!(demo_status("0").await, 404);
}
