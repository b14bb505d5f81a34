//! `splitter assign`, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

fn assign(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_splitter"))
        .arg("assign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI may refuse its arguments and exit before reading stdin: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn writes_csv_with_spec_buckets() {
    let (code, out, err) = assign(
        &["--policy", "payment-api", "--percent", "37.29"],
        b"tenant-123\ntenant-124\nacme-corp\n",
    );
    assert_eq!(code, 0, "{err}");
    // Buckets 3729, 1123, 7105 (the spec table); 37.29% = 3729bp: bucket 3729 is NOT < 3729.
    assert_eq!(out, "tenant,bucket,assignment\ntenant-123,3729,stable\ntenant-124,1123,canary\nacme-corp,7105,stable\n");
}

#[test]
fn salt_and_basis_points() {
    let (code, out, _) = assign(
        &[
            "--policy",
            "payment-api",
            "--salt",
            "payment-api:v2",
            "--percent",
            "6606bp",
        ],
        b"tenant-123\r\n",
    );
    assert_eq!(code, 0);
    assert_eq!(out, "tenant,bucket,assignment\ntenant-123,6605,canary\n");
}

#[test]
fn bad_lines_are_reported_and_good_ones_still_written() {
    let input = b"tenant-123\n\nbad\x01tenant\n\xff\xfe\ntenant-124\n";
    let (code, out, err) = assign(&["--policy", "payment-api", "--percent", "100"], input);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "tenant,bucket,assignment\ntenant-123,3729,canary\ntenant-124,1123,canary\n"
    );
    assert!(err.contains("line 2: tenant id: is empty"), "{err}");
    assert!(
        err.contains("line 3: tenant id:") && err.contains("control character"),
        "{err}"
    );
    assert!(
        err.contains("line 4: tenant id: is not valid UTF-8"),
        "{err}"
    );
    assert!(
        err.contains("3 bad line(s) skipped; 2 tenant(s) assigned"),
        "{err}"
    );
}

#[test]
fn csv_quotes_awkward_tenant_ids() {
    let (code, out, _) = assign(
        &["--policy", "p", "--percent", "0"],
        "a,b\nsay \"hi\"\n".as_bytes(),
    );
    assert_eq!(code, 0);
    let mut lines = out.lines().skip(1);
    assert!(lines.next().unwrap().starts_with("\"a,b\","));
    assert!(lines.next().unwrap().starts_with("\"say \"\"hi\"\"\","));
}

#[test]
fn overrides_file_pins_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pins.csv");
    std::fs::write(&file, "# pinned\ntenant-123,canary\nacme, inc.,stable\n\n").unwrap();
    let (code, out, err) = assign(
        &[
            "--policy",
            "payment-api",
            "--percent",
            "100",
            "--overrides",
            file.to_str().unwrap(),
        ],
        b"tenant-123\nacme, inc.\ntenant-124\n",
    );
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = out.lines().map(|l| l.rsplit(',').next().unwrap()).collect();
    assert_eq!(rows, ["assignment", "canary", "stable", "canary"]);

    std::fs::write(&file, "tenant-1,maybe\n").unwrap();
    let (code, out, err) = assign(
        &[
            "--policy",
            "p",
            "--percent",
            "1",
            "--overrides",
            file.to_str().unwrap(),
        ],
        b"t\n",
    );
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(
        err.contains("pins.csv:1: pin: 'maybe' is neither 'canary' nor 'stable'"),
        "{err}"
    );
}

#[test]
fn bad_arguments_are_refused_clearly() {
    for (args, why) in [
        (
            vec!["--policy", "p", "--percent", "150"],
            "share: '150' is more than 100%",
        ),
        (
            vec!["--policy", "p", "--percent", "-1"],
            "share: '-1' is negative",
        ),
        (
            vec!["--policy", "p", "--percent", "abc"],
            "share: 'abc' is not a number",
        ),
        (
            vec!["--policy", "Bad Name", "--percent", "1"],
            "policy name:",
        ),
    ] {
        let (code, out, err) = assign(&args, b"t\n");
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty());
        assert!(err.contains(why), "{args:?}: {err}");
    }
}
