//! The real `apx-canary` binary, started as an operator would start it.
//!
//! - IAP mode, with the JWK set from a file and from a URL (a tiny key server here): a valid
//!   assertion for a mapped e-mail signs in with the mapped role; unsigned, badly signed,
//!   expired, wrong-audience assertions and the bare e-mail header are refused; an unmapped
//!   e-mail is refused 403; a rotated key is fetched on its unknown `kid` (rate-limited); a key
//!   server that fails keeps the last good set; no setup link is printed.
//! - Every setting in the README's table ("| flag | environment | default | meaning |") is
//!   started for real and its effect observed; the test reads the table itself and fails when
//!   a documented setting is not exercised here, or when `--help` lists a flag the table does
//!   not document (or documents with another environment variable).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use base64::Engine;
use jsonwebtoken::{encode, EncodingKey, Header};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AUDIENCE: &str = "/projects/123/global/backendServices/456";
const ISSUER: &str = "https://cloud.google.com/iap";
const ASSERTION: &str = "x-goog-iap-jwt-assertion";
const DENIED: &str = "x-apx-denied";
/// How long a debug binary on a busy 2-core machine may take to answer `/healthz`.
const START_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The binary.

/// A command for the binary with none of this environment's settings leaking in.
fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_apx-canary"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("APX_")
            || k.starts_with("LEPTOS_")
            || k == "RUST_LOG"
            || k == "FIRESTORE_EMULATOR_HOST"
        {
            c.env_remove(k);
        }
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Log = Arc<Mutex<String>>;

/// Spawns `c` with standard output and error collected (both) into one log.
fn spawn_logged(mut c: Command, what: &str) -> (Child, Log, Vec<std::thread::JoinHandle<()>>) {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: the binary cannot be started: {e}"));
    let log: Log = Default::default();
    let readers: Vec<Box<dyn Read + Send>> = vec![
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    let threads = readers
        .into_iter()
        .map(|r| {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    let mut l = log.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        })
        .collect();
    (child, log, threads)
}

/// A running server; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: Log,
    what: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Server {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls until `log` contains `needle`.
    async fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{}: no '{needle}' in the log within {within:?}:\n{}",
                self.what,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts `c` (which must make the binary listen on `port`) and waits for `/healthz`; fails
/// loudly, with the binary's output, if it exits or never answers.
async fn start(c: Command, port: u16, what: &str) -> Server {
    let (mut child, log, _) = spawn_logged(c, what);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what}: the binary exited ({status}) before answering /healthz:\n{}",
                log.lock().unwrap()
            );
        }
        if let Ok(r) = client().get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!(
                "{what}: no /healthz within {START_DEADLINE:?}:\n{}",
                log.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Server {
        child,
        base,
        log,
        what: what.to_string(),
    }
}

/// Runs `c` expecting it to exit on its own (within 60 s): its exit code (None if it had to
/// be killed) and everything it printed.
async fn run_to_exit(c: Command, what: &str) -> (Option<i32>, String) {
    let (mut child, log, threads) = spawn_logged(c, what);
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for t in threads {
        t.join().ok();
    }
    let out = log.lock().unwrap().clone();
    (code, out)
}

/// Asserts that the binary, started with `c`, refuses to start and says `message`.
async fn refuses(c: Command, what: &str, message: &str) {
    let (code, out) = run_to_exit(c, what).await;
    assert!(
        code.is_some_and(|c| c != 0),
        "{what}: expected a refusal at start, got exit {code:?}:\n{out}"
    );
    assert!(
        out.contains(message),
        "{what}: the refusal does not say '{message}':\n{out}"
    );
    assert!(!out.contains("/setup?token="), "{what}: {out}");
}

/// The usual arguments: listen on `port`, store in `data`, built files in `site`.
fn base_command(port: u16, data: &Path, site: &Path) -> Command {
    let mut c = command();
    c.arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data)
        .arg("--site-root")
        .arg(site);
    c
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Status, the `x-apx-denied` header and the body of `GET path` with `headers`.
async fn get(s: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, Option<String>, String) {
    let mut req = client().get(s.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: GET {path}: {e}", s.what));
    let status = res.status().as_u16();
    let denied = res
        .headers()
        .get(DENIED)
        .map(|v| v.to_str().unwrap().to_string());
    (status, denied, res.text().await.unwrap_or_default())
}

/// `token add NAME --role admin` into the store in `data` (before the server holds it).
async fn admin_token(data: &Path, use_env: bool) -> String {
    let mut c = command();
    c.args(["token", "add", "flags-admin", "--role", "admin"]);
    if use_env {
        c.env("APX_DATA_DIR", data);
    } else {
        c.arg("--data-dir").arg(data);
    }
    let out = c.output().expect("apx-canary token add runs");
    assert!(
        out.status.success(),
        "token add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ---------------------------------------------------------------------------------------------
// Keys and assertions.

struct Signer {
    kid: String,
    key: EncodingKey,
    /// The public key as one JWK (JSON object).
    jwk: String,
}

fn signer(kid: &str) -> Signer {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Signer {
        kid: kid.to_string(),
        key: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: format!(
            r#"{{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"{kid}","x":"{}","y":"{}"}}"#,
            b64(&point[1..33]),
            b64(&point[33..65])
        ),
    }
}

fn jwks(keys: &[&Signer]) -> String {
    let keys: Vec<&str> = keys.iter().map(|s| s.jwk.as_str()).collect();
    format!(r#"{{"keys":[{}]}}"#, keys.join(","))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// An assertion signed by `s` under `kid` with these claims.
fn signed(s: &Signer, kid: &str, email: &str, aud: &str, iat: i64, exp: i64) -> String {
    let mut h = Header::new(jsonwebtoken::Algorithm::ES256);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({ "email": email, "aud": aud, "iss": ISSUER, "iat": iat, "exp": exp, "sub": "accounts.google.com:1" });
    encode(&h, &claims, &s.key).unwrap()
}

/// A valid assertion for `email`, signed by `s` under its own kid.
fn good(s: &Signer, email: &str) -> String {
    let t = now();
    signed(s, &s.kid, email, AUDIENCE, t - 5, t + 600)
}

async fn session(s: &Server, assertion: &str) -> (u16, Option<String>, String) {
    get(s, "/api/v1/session", &[(ASSERTION, assertion)]).await
}

/// Asserts that `assertion` signs in as `email` with `role`.
async fn signs_in(s: &Server, assertion: &str, email: &str, role: &str) {
    let (status, _, body) = session(s, assertion).await;
    assert_eq!(status, 200, "{}: {email}: {body}", s.what);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["principal"]["name"], email, "{}: {body}", s.what);
    assert_eq!(v["principal"]["role"], role, "{}: {body}", s.what);
    assert_eq!(v["principal"]["via"], "iap", "{}: {body}", s.what);
}

/// Asserts that a request with `headers` is refused by the guard (401/403 and `x-apx-denied`).
async fn refused_with(s: &Server, what: &str, headers: &[(&str, &str)]) {
    let (status, denied, body) = get(s, "/api/v1/session", headers).await;
    assert!(
        status == 401 || status == 403,
        "{}: {what}: expected 401/403, got {status}: {body}",
        s.what
    );
    assert!(
        denied.is_some(),
        "{}: {what}: no {DENIED} header ({status}: {body})",
        s.what
    );
}

/// The checks every IAP run makes with its current key `s` (olga is an operator, the rest of
/// example.com viewers).
async fn iap_checks(s: &Server, k: &Signer) {
    signs_in(
        s,
        &good(k, "olga@example.com"),
        "olga@example.com",
        "operator",
    )
    .await;
    signs_in(s, &good(k, "Vic@Example.com"), "vic@example.com", "viewer").await;
    let (status, denied, body) = session(s, &good(k, "eve@elsewhere.org")).await;
    assert_eq!(
        (status, denied.as_deref()),
        (403, Some("forbidden")),
        "{}: an unmapped e-mail: {body}",
        s.what
    );

    let t = now();
    let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
    let claims = format!(
        r#"{{"email":"olga@example.com","aud":"{AUDIENCE}","iss":"{ISSUER}","iat":{t},"exp":{}}}"#,
        t + 600
    );
    let unsigned = format!(
        "{}.{}.",
        b64(&format!(r#"{{"alg":"none","kid":"{}"}}"#, k.kid)),
        b64(&claims)
    );
    let valid = good(k, "olga@example.com");
    let (head_and_body, _) = valid.rsplit_once('.').unwrap();
    let garbage_signature = format!(
        "{head_and_body}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 64])
    );
    let other = signer(&k.kid);
    let refusals = [
        ("unsigned (alg none)", unsigned),
        ("a garbage signature", garbage_signature),
        (
            "another key under the same kid",
            good(&other, "olga@example.com"),
        ),
        (
            "expired",
            signed(k, &k.kid, "olga@example.com", AUDIENCE, t - 7200, t - 3600),
        ),
        (
            "another audience",
            signed(k, &k.kid, "olga@example.com", "/projects/999/x", t, t + 600),
        ),
        ("not a JWT", "not.a.jwt".to_string()),
    ];
    for (what, a) in &refusals {
        let (status, denied, body) = session(s, a).await;
        assert_eq!(
            (status, denied.as_deref()),
            (401, Some("unauthenticated")),
            "{}: {what}: {body}",
            s.what
        );
    }
    let email_header = (
        "x-goog-authenticated-user-email",
        "accounts.google.com:olga@example.com",
    );
    refused_with(s, "the bare e-mail header", &[email_header]).await;
    let (status, _, _) = get(s, "/api/v1/session", &[email_header]).await;
    assert_eq!(status, 401, "{}: the bare e-mail header", s.what);
    refused_with(
        s,
        "the e-mail header beside a forged assertion",
        &[email_header, (ASSERTION, &refusals[1].1)],
    )
    .await;
}

fn iap_args(c: &mut Command) {
    c.args([
        "--no-demo",
        "--iap-audience",
        AUDIENCE,
        "--iap-role",
        "operator=olga@example.com",
        "--iap-role",
        "viewer=@example.com",
    ]);
}

fn no_setup_link(s: &Server) {
    let log = s.log();
    assert!(
        !log.contains("/setup?token="),
        "{}: IAP mode printed a setup link:\n{log}",
        s.what
    );
    assert!(
        log.contains("IAP mode") && log.contains(AUDIENCE),
        "{}: no line saying IAP mode is on with the audience:\n{log}",
        s.what
    );
}

/// Writes `text` to `path` so a reader never sees half of it.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A key server (and webhook receiver) in the test.

#[derive(Clone, Default)]
struct KeyServer(Arc<Mutex<(u16, String, usize)>>);

impl KeyServer {
    fn serve(&self, status: u16, body: &str) {
        let mut s = self.0.lock().unwrap();
        s.0 = status;
        s.1 = body.to_string();
    }
    fn hits(&self) -> usize {
        self.0.lock().unwrap().2
    }
    async fn wait_hits(&self, n: usize, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.hits() < n {
            assert!(
                Instant::now() < deadline,
                "{what}: the key server saw {} fetches, not {n}, within {within:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn jwks_handler(State(k): State<KeyServer>) -> axum::response::Response {
    let mut s = k.0.lock().unwrap();
    s.2 += 1;
    (
        StatusCode::from_u16(s.0).unwrap(),
        [("content-type", "application/json")],
        s.1.clone(),
    )
        .into_response()
}

/// Serves `router` on a free local port; its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

async fn key_server(body: &str) -> (KeyServer, String) {
    let k = KeyServer::default();
    k.serve(200, body);
    let base = serve(
        Router::new()
            .route("/jwks", axum::routing::get(jwks_handler))
            .with_state(k.clone()),
    )
    .await;
    (k, format!("{base}/jwks"))
}

/// Webhook bodies received, by path.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<(String, String, Instant)>>>);

impl Hooks {
    async fn start() -> (Hooks, String) {
        let h = Hooks::default();
        let base = serve(
            Router::new()
                .route(
                    "/{name}",
                    axum::routing::post(
                        |State(h): State<Hooks>,
                         axum::extract::Path(name): axum::extract::Path<String>,
                         body: String| async move {
                            h.0.lock().unwrap().push((name, body, Instant::now()));
                            StatusCode::OK
                        },
                    ),
                )
                .with_state(h.clone()),
        )
        .await;
        (h, base)
    }

    /// Waits for a notice on `/name` containing `needle`; when it came.
    async fn wait(&self, name: &str, needle: &str, within: Duration, what: &str) -> Instant {
        let deadline = Instant::now() + within;
        loop {
            if let Some((_, _, at)) = self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(n, b, _)| n == name && b.contains(needle))
            {
                return *at;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no webhook notice '{needle}' at /{name} within {within:?}: {:?}",
                self.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IAP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iap_mode_with_the_keys_in_a_file() {
    let (data, site, keys) = (tempdir(), tempdir(), tempdir());
    let k1 = signer("k1");
    let path = keys.path().join("iap-keys.json");
    write_atomic(&path, &jwks(&[&k1]));
    let port = free_port();
    let mut c = base_command(port, data.path(), site.path());
    iap_args(&mut c);
    c.arg("--iap-jwks")
        .arg(&path)
        .args(["--iap-jwks-refresh-secs", "1"]);
    let s = start(c, port, "IAP, keys in a file").await;
    iap_checks(&s, &k1).await;
    no_setup_link(&s);

    // The file is read again on the schedule: k1 replaced by k2 stops verifying.
    let k2 = signer("k2");
    write_atomic(&path, &jwks(&[&k2]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while session(&s, &good(&k1, "olga@example.com")).await.0 != 401 {
        assert!(
            Instant::now() < deadline,
            "the rotated key file was not read again within 30 s:\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signs_in(
        &s,
        &good(&k2, "olga@example.com"),
        "olga@example.com",
        "operator",
    )
    .await;

    // A broken file keeps the last good set.
    write_atomic(&path, "{ this is not JSON");
    s.wait_log("keeping the last good set", Duration::from_secs(30))
        .await;
    signs_in(
        &s,
        &good(&k2, "olga@example.com"),
        "olga@example.com",
        "operator",
    )
    .await;
    iap_checks(&s, &k2).await;
    no_setup_link(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iap_mode_with_the_keys_at_a_url_fetches_a_rotated_key_on_its_unknown_kid() {
    let (data, site) = (tempdir(), tempdir());
    let k1 = signer("k1");
    let (keys, url) = key_server(&jwks(&[&k1])).await;
    let port = free_port();
    let mut c = base_command(port, data.path(), site.path());
    iap_args(&mut c);
    // The default schedule (an hour): any fetch below is for an unknown kid.
    c.args(["--iap-jwks-url", &url]);
    let s = start(c, port, "IAP, keys at a URL").await;
    assert_eq!(keys.hits(), 1, "the first key set, fetched at start");
    iap_checks(&s, &k1).await;
    no_setup_link(&s);
    assert_eq!(keys.hits(), 1, "known kids need no fetch");

    // Google rotates: the new key signs before the next scheduled refresh.
    let k2 = signer("k2");
    keys.serve(200, &jwks(&[&k2]));
    signs_in(
        &s,
        &good(&k2, "olga@example.com"),
        "olga@example.com",
        "operator",
    )
    .await;
    let refreshed_at = Instant::now();
    assert_eq!(keys.hits(), 2, "one fetch for the unknown kid");
    let (status, _, body) = session(&s, &good(&k1, "olga@example.com")).await;
    assert_eq!(status, 401, "the set was replaced, k1 is gone: {body}");

    // A flood of made-up kids does not hammer the key server.
    for i in 0..20 {
        let t = now();
        let a = signed(
            &k2,
            &format!("bogus-{i}"),
            "olga@example.com",
            AUDIENCE,
            t,
            t + 600,
        );
        let (status, denied, _) = session(&s, &a).await;
        assert_eq!((status, denied.as_deref()), (401, Some("unauthenticated")));
    }
    assert_eq!(
        keys.hits(),
        2,
        "unknown kids within 30 s of a refresh fetch nothing"
    );

    // The key server fails: once the rate limit allows another fetch, an unknown kid makes
    // one, it gets a 500, and the last good set (k2) still verifies.
    keys.serve(500, "upstream broke");
    let deadline = Instant::now() + Duration::from_secs(90);
    while keys.hits() < 3 {
        assert!(
            Instant::now() < deadline,
            "no fetch for an unknown kid within 90 s"
        );
        let t = now();
        let a = signed(&k2, "bogus-later", "olga@example.com", AUDIENCE, t, t + 600);
        assert_eq!(session(&s, &a).await.0, 401);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        refreshed_at.elapsed() >= Duration::from_secs(25),
        "an unscheduled refresh came {:?} after the last one (at most one per 30 s)",
        refreshed_at.elapsed()
    );
    s.wait_log("keeping the last good set", Duration::from_secs(30))
        .await;
    iap_checks(&s, &k2).await;
    no_setup_link(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iap_key_refreshes_that_fail_keep_the_last_good_set() {
    let (data, site) = (tempdir(), tempdir());
    let k1 = signer("k1");
    let (keys, url) = key_server(&jwks(&[&k1])).await;
    let port = free_port();
    let mut c = base_command(port, data.path(), site.path());
    iap_args(&mut c);
    c.args(["--iap-jwks-url", &url, "--iap-jwks-refresh-secs", "1"]);
    let s = start(c, port, "IAP, failing key server").await;
    signs_in(
        &s,
        &good(&k1, "olga@example.com"),
        "olga@example.com",
        "operator",
    )
    .await;
    let p384 =
        r#"{"keys":[{"kty":"EC","crv":"P-384","alg":"ES384","kid":"big","x":"AAAA","y":"AAAA"}]}"#;
    for (status, body, what) in [
        (500, "upstream broke", "a 500"),
        (200, "<html>not JSON</html>", "not JSON"),
        (200, r#"{"keys":[]}"#, "an empty set"),
        (200, p384, "no ES256 key"),
    ] {
        keys.serve(status, body);
        // Two scheduled fetches of the bad answer.
        let n = keys.hits() + 2;
        keys.wait_hits(n, Duration::from_secs(30), what).await;
        signs_in(
            &s,
            &good(&k1, "olga@example.com"),
            "olga@example.com",
            "operator",
        )
        .await;
    }
    assert!(s.log().contains("keeping the last good set"), "{}", s.log());
    // And the next good answer is taken (by the schedule, or k2's unknown kid).
    let k2 = signer("k2");
    keys.serve(200, &jwks(&[&k2]));
    let n = keys.hits() + 1;
    keys.wait_hits(n, Duration::from_secs(30), "a good answer")
        .await;
    signs_in(
        &s,
        &good(&k2, "olga@example.com"),
        "olga@example.com",
        "operator",
    )
    .await;
    no_setup_link(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iap_mode_refuses_to_start_without_a_first_key_set() {
    let (data, site) = (tempdir(), tempdir());
    let (_failing, failing_url) = key_server("").await;
    _failing.serve(500, "no");
    let closed = format!("http://127.0.0.1:{}/jwks", free_port());
    let not_json = data.path().join("bad.json");
    std::fs::write(&not_json, "hello").unwrap();
    let cases: Vec<(&str, Vec<&OsStr>, &str)> = vec![
        (
            "a missing file",
            vec!["--iap-jwks".as_ref(), "/nonexistent/keys.json".as_ref()],
            "the first key set cannot be loaded",
        ),
        (
            "a file that is not JSON",
            vec!["--iap-jwks".as_ref(), not_json.as_os_str()],
            "the first key set cannot be loaded",
        ),
        (
            "a URL answering 500",
            vec!["--iap-jwks-url".as_ref(), failing_url.as_ref()],
            "the first key set cannot be loaded",
        ),
        (
            "a URL nobody answers",
            vec!["--iap-jwks-url".as_ref(), closed.as_ref()],
            "the first key set cannot be loaded",
        ),
        (
            "a file and a URL",
            vec![
                "--iap-jwks".as_ref(),
                not_json.as_os_str(),
                "--iap-jwks-url".as_ref(),
                closed.as_ref(),
            ],
            "cannot be used with",
        ),
        (
            "a URL that is not http",
            vec!["--iap-jwks-url".as_ref(), "ftp://example.com/keys".as_ref()],
            "is not http or https",
        ),
        (
            "a bad role mapping",
            vec!["--iap-role".as_ref(), "boss=alice@example.com".as_ref()],
            "the role is viewer, operator or admin",
        ),
        (
            "a refresh period of 0",
            vec!["--iap-jwks-refresh-secs".as_ref(), "0".as_ref()],
            "--iap-jwks-refresh-secs: 0 is outside",
        ),
    ];
    for (what, args, message) in cases {
        let mut c = base_command(free_port(), data.path(), site.path());
        iap_args(&mut c);
        c.args(args);
        refuses(c, what, message).await;
    }
    let mut c = base_command(free_port(), data.path(), site.path());
    c.args(["--iap-role", "admin=alice@example.com"]);
    refuses(c, "--iap-role without --iap-audience", "--iap-audience").await;

    // Neither a file nor a URL: Google's URL (fetched if this machine reaches it, else the
    // refusal names it).
    let mut c = base_command(free_port(), data.path(), site.path());
    iap_args(&mut c);
    let (mut child, log, _) = spawn_logged(c, "Google's key URL by default");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log
        .lock()
        .unwrap()
        .contains("https://www.gstatic.com/iap/verify/public_key-jwk")
    {
        assert!(
            Instant::now() < deadline,
            "without --iap-jwks or --iap-jwks-url, Google's URL is not used:\n{}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().ok();
    child.wait().ok();
    assert!(!log.lock().unwrap().contains("/setup?token="));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Every documented setting.

/// One row of the README's settings table: its flag (`--addr`) and environment variable.
#[derive(Debug)]
struct Row {
    flag: Option<String>,
    env: Option<String>,
}

impl Row {
    fn key(&self) -> &str {
        self.flag.as_deref().or(self.env.as_deref()).unwrap()
    }
}

/// The first `` `…` `` in a cell, if the cell is not `—`.
fn first_code(cell: &str) -> Option<String> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    let code = cell[start..start + len].split_whitespace().next()?;
    Some(code.to_string())
}

fn readme_settings() -> Vec<Row> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md beside the workspace");
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.starts_with("| flag | environment | default | meaning |"));
    assert!(lines.next().is_some(), "README.md: no settings table");
    let rows: Vec<Row> = lines
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            Row {
                flag: first_code(cells[1]).filter(|f| f.starts_with("--")),
                env: first_code(cells[2]),
            }
        })
        .collect();
    assert!(rows.len() > 10, "README.md: the settings table: {rows:?}");
    rows
}

/// The long flags `apx-canary --help` lists, with their environment variables.
fn help_flags() -> BTreeMap<String, Option<String>> {
    let out = command().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with('-') {
            let long = t
                .split([' ', ',', '='])
                .find(|w| w.starts_with("--"))
                .map(str::to_string);
            if let Some(l) = &long {
                flags.insert(l.clone(), None);
            }
            current = long;
        }
        if let (Some(f), Some(i)) = (&current, t.find("[env: ")) {
            let env = t[i + 6..].split('=').next().unwrap().to_string();
            flags.insert(f.clone(), Some(env));
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    flags
}

/// What the checks exercised: flags and environment variables.
#[derive(Default, Clone)]
struct Seen(Arc<Mutex<BTreeSet<String>>>);

impl Seen {
    fn mark(&self, names: &[&str]) {
        let mut s = self.0.lock().unwrap();
        for n in names {
            s.insert(n.to_string());
        }
    }
    fn has(&self, name: &str) -> bool {
        self.0.lock().unwrap().contains(name)
    }
}

/// A metric's summed value over the samples whose line starts with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(s: &Server, token: &str) -> String {
    let (status, _, body) = get(
        s,
        "/metrics",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200, "{}: /metrics: {body}", s.what);
    body
}

async fn healthz(s: &Server) -> serde_json::Value {
    serde_json::from_str(&get(s, "/healthz", &[]).await.2).unwrap()
}

/// The `Set-Cookie` of a sign-out by whoever `who` (a header) proves, with its CSRF token.
async fn signout_cookie(s: &Server, who: (&str, &str)) -> String {
    let (status, _, body) = get(s, "/api/v1/session", &[who]).await;
    assert_eq!(
        status, 200,
        "{}: the session before signing out: {body}",
        s.what
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let csrf = v["csrf"].as_str().unwrap_or_default().to_string();
    let res = client()
        .post(s.url("/signout"))
        .header(who.0, who.1)
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        status,
        303,
        "{}: sign-out: {}",
        s.what,
        res.text().await.unwrap()
    );
    cookie.unwrap_or_else(|| panic!("{}: sign-out set no cookie", s.what))
}

/// Creates the first admin through the setup link the server printed; the session cookie it
/// sets.
async fn setup_first_admin(s: &Server) -> String {
    let log = s.log();
    let token = log
        .split("/setup?token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}: no setup link:\n{log}", s.what))
        .to_string();
    let res = client()
        .post(s.url("/setup"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "token={token}&name=first-admin&password=correct-horse-battery&password2=correct-horse-battery"
        ))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let cookie = res
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        status,
        303,
        "{}: setup: {}",
        s.what,
        res.text().await.unwrap()
    );
    cookie.unwrap_or_else(|| panic!("{}: the setup set no cookie", s.what))
}

/// Starts a one-step plan (100 % for 30 s, then promote) on `policy`.
async fn start_plan(s: &Server, token: &str, policy: &str) {
    let got = client()
        .get(s.url(&format!("/api/v1/policies/{policy}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "{}: GET {policy}", s.what);
    let etag = got.headers()["etag"].to_str().unwrap().to_string();
    let res = client()
        .post(s.url(&format!("/api/v1/policies/{policy}/plan")))
        .bearer_auth(token)
        .header("if-match", etag)
        .header("content-type", "application/json")
        .body(r#"{"steps":"100% 30s","at_end":"promote","reason":"flags test"}"#)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(
        status.is_success(),
        "{}: plan: {status} {}",
        s.what,
        res.text().await.unwrap()
    );
}

/// Sends demo requests while watching the flushed-writes counter; how many distinct flushes
/// it saw within `window`.
async fn flushes_within(s: &Server, token: &str, policy: &str, window: Duration) -> usize {
    let start = Instant::now();
    let mut last = metric(
        &metrics(s, token).await,
        "apx_canary_recorder_flushed_writes_total",
    );
    let mut changes = 0;
    let mut n = 0;
    while start.elapsed() < window {
        n += 1;
        let tenant = format!("t-{n}");
        let _ = get(s, &format!("/demo/{policy}"), &[("x-tenant-id", &tenant)]).await;
        let now = metric(
            &metrics(s, token).await,
            "apx_canary_recorder_flushed_writes_total",
        );
        if now != last {
            changes += 1;
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    changes
}

/// `n` failed sign-ins (a name that is no account: cheap, counted against the address only)
/// said to come from `forwarded_for`; where the last one was sent back to.
async fn failed_signins(s: &Server, forwarded_for: &str, n: usize) -> String {
    let mut location = String::new();
    for _ in 0..n {
        let res = client()
            .post(s.url("/signin"))
            .header("sec-fetch-site", "same-origin")
            .header("x-forwarded-for", forwarded_for)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("name=%21%21&password=wrong-password&next=%2F")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{}: sign-in", s.what);
        location = res.headers()["location"].to_str().unwrap().to_string();
    }
    location
}

/// Whether a sign-in redirect says the address is blocked.
fn blocked(location: &str) -> bool {
    location.contains("Too")
}

/// 20 failures "from" one forwarded address block it; is another forwarded address blocked
/// too (it is when `X-Forwarded-For` is not trusted: both are the TCP peer)?
async fn other_forwarded_address_blocked(s: &Server) -> bool {
    let first = failed_signins(s, "203.0.113.7", 21).await;
    assert!(
        blocked(&first),
        "{}: 21 failures from one address: {first}",
        s.what
    );
    blocked(&failed_signins(s, "198.51.100.9", 1).await)
}

/// Everything set by flags (and `APX_METRICS_TOKEN`, which has no flag): an IAP deployment
/// with its keys at a URL, no demo policies, the demo service on.
async fn flags_run(seen: Seen) {
    let (data, site) = (tempdir(), tempdir());
    std::fs::write(
        site.path().join("favicon.svg"),
        "<svg><!--flags-run--></svg>",
    )
    .unwrap();
    let token = admin_token(data.path(), false).await;
    let (hooks, hook_base) = Hooks::start().await;
    let k1 = signer("k1");
    let (keys, url) = key_server(&jwks(&[&k1])).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = command();
    c.args(["--addr", &addr, "--data-dir"])
        .arg(data.path())
        .arg("--site-root")
        .arg(site.path())
        .args([
            "--secure-cookies",
            "--demo",
            "--no-demo",
            "--no-demo-traffic",
            "--replica",
            "replica-by-flag",
            "--traffic-flush-secs",
            "0.2",
            "--plan-secs",
            "0.5",
            "--webhook",
            &format!("{hook_base}/flag"),
            "--iap-audience",
            AUDIENCE,
            "--iap-jwks-url",
            &url,
            "--iap-jwks-refresh-secs",
            "1",
            "--iap-role",
            "admin=olga@example.com",
            "--allowed-host",
            &addr,
            "--allowed-host",
            "canary.example.com",
            "--trusted-proxy",
            "127.0.0.1/32",
        ])
        .env("APX_METRICS_TOKEN", "metrics-secret")
        .env("RUST_LOG", "debug");
    let s = start(c, port, "flags run").await;

    // --no-demo: no policies. Then one demo-… policy of our own, with a plan.
    let (status, _, body) = get(
        &s,
        "/api/v1/policies",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!((status, body.trim()), (200, "[]"), "--no-demo");
    seen.mark(&["--no-demo", "--data-dir"]);
    let res = client()
        .post(s.url("/api/v1/policies"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"name":"demo-flags","stable_version":"v1","canary_version":"v2","share":"50%"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    start_plan(&s, &token, "demo-flags").await;
    let plan_started = Instant::now();
    seen.mark(&["--addr"]);

    // --site-root
    let (status, _, body) = get(&s, "/favicon.svg", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "<svg><!--flags-run--></svg>"),
        "--site-root"
    );
    seen.mark(&["--site-root"]);
    // --secure-cookies
    let olga = good(&k1, "olga@example.com");
    let cookie = signout_cookie(&s, (ASSERTION, &olga)).await;
    assert!(cookie.contains("; Secure"), "--secure-cookies: {cookie}");
    seen.mark(&["--secure-cookies"]);
    // APX_METRICS_TOKEN
    assert_eq!(get(&s, "/metrics", &[]).await.0, 401, "APX_METRICS_TOKEN");
    metrics(&s, "metrics-secret").await;
    seen.mark(&["APX_METRICS_TOKEN"]);
    // --demo
    let (status, _, body) = get(&s, "/demo/demo-flags", &[("x-tenant-id", "acme")]).await;
    assert_eq!(status, 200, "--demo: {body}");
    seen.mark(&["--demo"]);
    // --replica
    let h = healthz(&s).await;
    let replica = h["traffic"]["replica"].as_str().unwrap().to_string();
    assert!(replica.starts_with("replica-by-flag-"), "--replica: {h}");
    seen.mark(&["--replica"]);
    // --traffic-flush-secs 0.2: several flushes within 3 s (the default writes every 5 s).
    let n = flushes_within(&s, "metrics-secret", "demo-flags", Duration::from_secs(3)).await;
    assert!(n >= 3, "--traffic-flush-secs 0.2: {n} flushes in 3 s");
    let h = healthz(&s).await;
    assert!(h["traffic"]["last_flush_error"].is_null(), "{h}");
    seen.mark(&["--traffic-flush-secs"]);
    // --no-demo-traffic (with --no-demo there is nothing it could send to; see the env run).
    // IAP: the role comes from --iap-role; the keys are fetched every second.
    signs_in(
        &s,
        &good(&k1, "olga@example.com"),
        "olga@example.com",
        "admin",
    )
    .await;
    let n = keys.hits() + 2;
    keys.wait_hits(n, Duration::from_secs(20), "--iap-jwks-refresh-secs 1")
        .await;
    no_setup_link(&s);
    seen.mark(&[
        "--iap-audience",
        "--iap-jwks-url",
        "--iap-jwks-refresh-secs",
        "--iap-role",
    ]);
    // --allowed-host: the names given answer; another is refused.
    let other = client()
        .get(s.url("/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 421, "--allowed-host: another Host");
    let named = client()
        .get(s.url("/healthz"))
        .header("host", "canary.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 200, "--allowed-host canary.example.com");
    seen.mark(&["--allowed-host"]);
    // --trusted-proxy: X-Forwarded-For from it names the client (the defaults run ignores it).
    assert!(
        !other_forwarded_address_blocked(&s).await,
        "--trusted-proxy 127.0.0.1/32: X-Forwarded-For was not used"
    );
    seen.mark(&["--trusted-proxy"]);
    // RUST_LOG=debug
    assert!(s.log().contains("DEBUG"), "RUST_LOG=debug: {}", s.log());
    seen.mark(&["RUST_LOG"]);
    // --webhook and --plan-secs: the plan's promotion is announced after its 30 s hold.
    let at = hooks
        .wait("flag", "promoted", Duration::from_secs(120), "--webhook")
        .await;
    let after = at.duration_since(plan_started);
    assert!(
        after >= Duration::from_secs(29) && after < Duration::from_secs(60),
        "--plan-secs 0.5: promoted {after:?} after the start of a 30 s step"
    );
    seen.mark(&["--webhook", "--plan-secs"]);
}

/// Everything set by environment variables: keys in a file, demo policies seeded, demo
/// traffic off.
async fn env_run(seen: Seen) {
    let (data, site, keyfile) = (tempdir(), tempdir(), tempdir());
    std::fs::write(site.path().join("favicon.svg"), "<svg><!--env-run--></svg>").unwrap();
    let token = admin_token(data.path(), true).await;
    let (hooks, hook_base) = Hooks::start().await;
    let k1 = signer("k1");
    let path = keyfile.path().join("keys.json");
    write_atomic(&path, &jwks(&[&k1]));
    let port = free_port();
    let mut c = command();
    c.env("APX_ADDR", format!("127.0.0.1:{port}"))
        .env("APX_DATA_DIR", data.path())
        .env("APX_SITE_ROOT", site.path())
        .env("APX_SECURE_COOKIES", "yes")
        .env("APX_DEMO", "true")
        .env("APX_NO_DEMO_TRAFFIC", "1")
        .env("APX_REPLICA", "replica-by-env")
        .env("APX_TRAFFIC_FLUSH_SECS", "0.2")
        .env("APX_PLAN_SECS", "0.5")
        .env("APX_WEBHOOKS", format!("{hook_base}/one,{hook_base}/two"))
        .env("APX_IAP_AUDIENCE", AUDIENCE)
        .env("APX_IAP_JWKS", &path)
        .env("APX_IAP_JWKS_REFRESH_SECS", "1")
        .env(
            "APX_ALLOWED_HOSTS",
            format!("127.0.0.1:{port},canary.example.com"),
        )
        .env("APX_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.0/8")
        .env("APX_METRICS_TOKEN", "metrics-secret")
        .env("RUST_LOG", "warn")
        .args(["--iap-role", "viewer=@example.com"]);
    let s = start(c, port, "env run").await;
    seen.mark(&["APX_ADDR", "APX_DATA_DIR"]);
    let (status, _, body) = get(
        &s,
        "/api/v1/policies",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("demo-payment-api"),
        "demo policies are seeded without --no-demo: {body}"
    );
    start_plan(&s, &token, "demo-payment-api").await;

    let (status, _, body) = get(&s, "/favicon.svg", &[]).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "<svg><!--env-run--></svg>"),
        "APX_SITE_ROOT"
    );
    let vic = good(&k1, "vic@example.com");
    let cookie = signout_cookie(&s, (ASSERTION, &vic)).await;
    assert!(
        cookie.contains("; Secure"),
        "APX_SECURE_COOKIES=yes: {cookie}"
    );
    let (status, _, body) = get(&s, "/demo/demo-search-api", &[("x-tenant-id", "acme")]).await;
    assert_eq!(status, 200, "APX_DEMO=true: {body}");
    let h = healthz(&s).await;
    assert!(
        h["traffic"]["replica"]
            .as_str()
            .unwrap()
            .starts_with("replica-by-env-"),
        "APX_REPLICA: {h}"
    );
    let n = flushes_within(
        &s,
        "metrics-secret",
        "demo-search-api",
        Duration::from_secs(3),
    )
    .await;
    assert!(n >= 3, "APX_TRAFFIC_FLUSH_SECS=0.2: {n} flushes in 3 s");
    // APX_NO_DEMO_TRAFFIC: after those seconds, no request reached the policies we did not
    // call (the defaults run sees the built-in traffic on them within seconds).
    let m = metrics(&s, "metrics-secret").await;
    assert_eq!(
        metric(&m, "apx_canary_requests_total{policy=\"demo-checkout\""),
        0.0,
        "APX_NO_DEMO_TRAFFIC=1: {m}"
    );
    assert!(
        metric(&m, "apx_canary_requests_total{policy=\"demo-search-api\"") > 0.0,
        "{m}"
    );
    signs_in(
        &s,
        &good(&k1, "vic@example.com"),
        "vic@example.com",
        "viewer",
    )
    .await;
    let k2 = signer("k2");
    write_atomic(&path, &jwks(&[&k2]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while session(&s, &good(&k1, "vic@example.com")).await.0 != 401 {
        assert!(
            Instant::now() < deadline,
            "APX_IAP_JWKS_REFRESH_SECS=1: the file was not read again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!s.log().contains("/setup?token="), "{}", s.log());
    let other = client()
        .get(s.url("/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 421, "APX_ALLOWED_HOSTS: another Host");
    assert!(
        !other_forwarded_address_blocked(&s).await,
        "APX_TRUSTED_PROXIES: X-Forwarded-For was not used"
    );
    assert!(
        !s.log().contains("listening on") && !s.log().contains("INFO"),
        "RUST_LOG=warn: {}",
        s.log()
    );
    seen.mark(&[
        "APX_SITE_ROOT",
        "APX_SECURE_COOKIES",
        "APX_DEMO",
        "APX_REPLICA",
        "APX_TRAFFIC_FLUSH_SECS",
        "APX_NO_DEMO_TRAFFIC",
        "--no-demo-traffic",
        "APX_IAP_AUDIENCE",
        "APX_IAP_JWKS",
        "--iap-jwks",
        "APX_IAP_JWKS_REFRESH_SECS",
        "APX_ALLOWED_HOSTS",
        "APX_TRUSTED_PROXIES",
    ]);
    let t1 = hooks
        .wait(
            "one",
            "promoted",
            Duration::from_secs(120),
            "APX_WEBHOOKS (first)",
        )
        .await;
    hooks
        .wait(
            "two",
            "promoted",
            Duration::from_secs(30),
            "APX_WEBHOOKS (second)",
        )
        .await;
    let _ = t1;
    seen.mark(&["APX_WEBHOOKS", "APX_PLAN_SECS"]);
}

/// Nothing but where to listen and store: the defaults.
async fn defaults_run(seen: Seen) {
    let (data, site) = (tempdir(), tempdir());
    let port = free_port();
    let c = base_command(port, data.path(), site.path());
    let s = start(c, port, "defaults run").await;
    assert!(
        data.path().join("canary.redb").is_file(),
        "--data-dir: the store file"
    );
    assert!(
        s.log().contains("/setup?token="),
        "without IAP, a new store offers the setup link: {}",
        s.log()
    );
    assert!(
        s.log().contains("listening on") && s.log().contains("INFO"),
        "RUST_LOG unset: info: {}",
        s.log()
    );
    // Without --demo nothing serves /demo/…: the not-found fallback (404, or for an anonymous
    // caller the way to sign in).
    let (status, _, body) = get(&s, "/demo/demo-payment-api", &[("x-tenant-id", "acme")]).await;
    assert!(
        status == 404 || status == 303,
        "without --demo, /demo/demo-payment-api answered {status}: {body}"
    );
    let (status, _, m) = get(&s, "/metrics", &[]).await;
    assert_eq!(status, 200, "without APX_METRICS_TOKEN, /metrics is open");
    let session_cookie = setup_first_admin(&s).await;
    assert!(
        session_cookie.starts_with("apx_session=") && !session_cookie.contains("Secure"),
        "without --secure-cookies: {session_cookie}"
    );
    let id = session_cookie.split(';').next().unwrap().to_string();
    let cookie = signout_cookie(&s, ("cookie", &id)).await;
    assert!(
        !cookie.contains("Secure"),
        "without --secure-cookies: {cookie}"
    );
    let _ = m;
    // The built-in demo traffic reaches every demo policy.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = get(&s, "/metrics", &[]).await.2;
        if metric(&m, "apx_canary_requests_total{policy=\"demo-checkout\"") > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "demo traffic by default: {m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let h = healthz(&s).await;
    let replica = h["traffic"]["replica"].as_str().unwrap();
    assert!(
        replica.contains(&format!("-{}-", s.child.id())),
        "the default replica name has the pid: {h}"
    );
    let (status, _, _) = session(&s, "anything").await;
    assert_eq!(status, 401, "no IAP without --iap-audience");
    assert!(
        other_forwarded_address_blocked(&s).await,
        "without --trusted-proxy, X-Forwarded-For must not name the client"
    );
    seen.mark(&["--data-dir", "--addr", "--site-root"]);
}

/// `--firestore-project` (and `APX_FIRESTORE_PROJECT`) against the real emulator that
/// `./dev test` starts: a policy created through the server's API is in that Firestore project
/// (read back by another client), and no embedded store is opened.
async fn firestore_run(seen: Seen) {
    let emulator = std::env::var("FIRESTORE_EMULATOR_HOST").expect(
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with `./dev test`, which starts the emulator",
    );
    for env in [false, true] {
        let (data, site) = (tempdir(), tempdir());
        let project = format!("flags-{}-{}", std::process::id(), env as u8);
        let token = {
            let mut c = command();
            c.env("FIRESTORE_EMULATOR_HOST", &emulator)
                .args(["token", "add", "flags-admin", "--role", "admin"])
                .args(["--firestore-project", &project]);
            let out = c.output().expect("apx-canary token add runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let port = free_port();
        let mut c = base_command(port, data.path(), site.path());
        c.env("FIRESTORE_EMULATOR_HOST", &emulator);
        if env {
            c.env("APX_FIRESTORE_PROJECT", &project);
        } else {
            c.args(["--firestore-project", &project]);
        }
        let s = start(c, port, "--firestore-project").await;
        let created = client()
            .post(s.url("/api/v1/policies"))
            .bearer_auth(&token)
            .json(
                &serde_json::json!({"name": "flags-fs", "stable_version": "v1", "reason": "flags"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            created.status().as_u16(),
            201,
            "{}",
            created.text().await.unwrap()
        );
        let other = server::testing::firestore(&project).await;
        let name = splitter::PolicyName::new("flags-fs").unwrap();
        let stored = splitter::store::PolicyStore::get(&*other, &name)
            .await
            .unwrap();
        assert!(
            stored.is_some(),
            "the policy is in Firestore project {project}"
        );
        assert!(
            !data.path().join("canary.redb").exists(),
            "with --firestore-project the embedded store is not opened"
        );
    }
    seen.mark(&["--firestore-project", "APX_FIRESTORE_PROJECT"]);
}

/// Out-of-range and malformed values are refused at start, by name.
async fn refusals(seen: Seen) {
    let (data, site) = (tempdir(), tempdir());
    let closed = format!("http://127.0.0.1:{}/jwks", free_port());
    let closed_message = format!("cannot fetch {closed}");
    let with = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = base_command(free_port(), data.path(), site.path());
        c.args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let cases: Vec<(Command, &str, &str)> = vec![
        (
            with(&["--plan-secs", "0.1"], &[]),
            "--plan-secs 0.1",
            "--plan-secs: 0.1 is outside",
        ),
        (
            with(&[], &[("APX_PLAN_SECS", "301")]),
            "APX_PLAN_SECS=301",
            "--plan-secs: 301 is outside",
        ),
        (
            with(&["--traffic-flush-secs", "0.05"], &[]),
            "--traffic-flush-secs 0.05",
            "--traffic-flush-secs: 0.05 is outside",
        ),
        (
            with(&[], &[("APX_TRAFFIC_FLUSH_SECS", "1000")]),
            "APX_TRAFFIC_FLUSH_SECS=1000",
            "--traffic-flush-secs: 1000 is outside",
        ),
        (
            with(&["--webhook", "ftp://example.com/x"], &[]),
            "--webhook ftp",
            "--webhook: scheme 'ftp' is not http or https",
        ),
        (
            with(&[], &[("APX_WEBHOOKS", "http://ok.example/a,not a url")]),
            "APX_WEBHOOKS with a bad URL",
            "--webhook: not a URL",
        ),
        (
            with(&[], &[("APX_SECURE_COOKIES", "maybe")]),
            "APX_SECURE_COOKIES=maybe",
            "maybe",
        ),
        (
            with(&[], &[("APX_DEMO", "perhaps")]),
            "APX_DEMO=perhaps",
            "perhaps",
        ),
        (
            with(&[], &[("APX_NO_DEMO_TRAFFIC", "sometimes")]),
            "APX_NO_DEMO_TRAFFIC=sometimes",
            "sometimes",
        ),
        (
            with(&["--allowed-host", "bad host/"], &[]),
            "--allowed-host 'bad host/'",
            "--allowed-host",
        ),
        (
            with(&["--trusted-proxy", "10.0.0.0/99"], &[]),
            "--trusted-proxy 10.0.0.0/99",
            "--trusted-proxy",
        ),
        (
            with(&[], &[("APX_TRUSTED_PROXIES", "not-a-cidr")]),
            "APX_TRUSTED_PROXIES=not-a-cidr",
            "--trusted-proxy",
        ),
        (
            with(
                &["--iap-role", "viewer=@example.com"],
                &[
                    ("APX_IAP_AUDIENCE", AUDIENCE),
                    ("APX_IAP_JWKS_URL", &closed),
                ],
            ),
            "APX_IAP_JWKS_URL at a closed port",
            closed_message.as_str(),
        ),
    ];
    for (c, what, message) in cases {
        refuses(c, what, message).await;
    }
    // The addresses are taken as given: a bad one is refused by name.
    let mut c = command();
    c.args(["--addr", "not-an-address"]);
    refuses(c, "--addr not-an-address", "--addr").await;
    let mut c = command();
    c.env("APX_ADDR", "nowhere");
    refuses(c, "APX_ADDR=nowhere", "--addr").await;
    seen.mark(&["APX_PLAN_SECS", "APX_IAP_JWKS_URL"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_setting_in_the_readme_does_something() {
    let rows = readme_settings();
    let help = help_flags();
    let seen = Seen::default();
    tokio::join!(
        flags_run(seen.clone()),
        env_run(seen.clone()),
        defaults_run(seen.clone()),
        firestore_run(seen.clone()),
        refusals(seen.clone()),
    );

    let mut problems = Vec::new();
    let documented: BTreeSet<&str> = rows.iter().filter_map(|r| r.flag.as_deref()).collect();
    for (flag, env) in &help {
        if !documented.contains(flag.as_str()) {
            problems.push(format!(
                "`apx-canary --help` lists {flag} (env {env:?}), the README's settings table does not"
            ));
        }
        for name in [Some(flag), env.as_ref()].into_iter().flatten() {
            if !seen.has(name) {
                problems.push(format!(
                    "{name} ({flag} in --help) is not exercised by this test"
                ));
            }
        }
    }
    for row in &rows {
        if let Some(flag) = &row.flag {
            match help.get(flag) {
                None => problems.push(format!(
                    "README.md lists {flag}, which `apx-canary --help` does not know"
                )),
                Some(env) if env != &row.env => problems.push(format!(
                    "README.md: {flag}'s environment variable is {:?}, the binary's {env:?}",
                    row.env
                )),
                Some(_) => {}
            }
        }
        for name in [row.flag.as_deref(), row.env.as_deref()]
            .into_iter()
            .flatten()
        {
            if !seen.has(name) {
                problems.push(format!(
                    "{name} (README row {}) is not exercised by this test",
                    row.key()
                ));
            }
        }
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "the README's settings table, `--help` and this test disagree:\n  {}",
        problems.join("\n  ")
    );
}
