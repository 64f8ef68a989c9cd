//! Webhooks against the real server: a loopback receiver verifies every delivery with the `standardwebhooks`
//! Python package, sees `file.ready` for each upload (also those that became ready while it was down: the
//! retries), `file.deleted`, both signatures during a secret rotation; unsafe URLs are refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::Server;

/// The receiver process (killed on drop).
struct Receiver {
    child: std::process::Child,
    out: PathBuf,
}

impl Receiver {
    fn start(port: u16, secret: &str, out: &Path) -> Receiver {
        Receiver::start_tls(port, secret, out, None)
    }

    /// With `tls` (certificate and key PEM files) it serves https.
    fn start_tls(port: u16, secret: &str, out: &Path, tls: Option<(&Path, &Path)>) -> Receiver {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/webhook_receiver.py");
        let mut cmd = std::process::Command::new(python);
        cmd.arg(script).arg(port.to_string()).arg(secret).arg(out);
        if let Some((cert, key)) = tls {
            cmd.arg(cert).arg(key);
        }
        let child = cmd
            .spawn()
            .expect("start the receiver (run `make test-deps`)");
        // Wait until it listens.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver {
            child,
            out: out.to_owned(),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// Waits until a verified event of `kind` about `id` arrived; returns it.
    async fn wait_for(&self, kind: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = self
                .records()
                .into_iter()
                .find(|r| r["type"] == kind && r["data"]["id"] == id)
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no {kind} for {id}: {:?}",
                self.records()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A self-signed certificate for 127.0.0.1 made with the `openssl` command: (certificate, key).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "openssl req failed (make test-deps installs openssl)");
    (cert, key)
}

/// An https endpoint gets verified deliveries when its CA is trusted (`DOCPIPE_WEBHOOK_CA_FILE`), and none
/// when it is not: the certificate is checked, never skipped.
#[tokio::test]
async fn https_endpoints_are_delivered_to_over_verified_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let cert_path = cert.to_string_lossy().into_owned();
    for trusted in [true, false] {
        let mut env = vec![
            ("DOCPIPE_WEBHOOK_ALLOW_PRIVATE", "127.0.0.0/8"),
            ("DOCPIPE_WEBHOOK_RETRY_SCHEDULE", "1h"),
        ];
        if trusted {
            env.push(("DOCPIPE_WEBHOOK_CA_FILE", &cert_path));
        }
        let server = Server::start_with(&env).await;
        let port = free_port();
        let (status, hook) = server
            .post_json(
                "/api/v1/webhooks",
                &json!({"url": format!("https://127.0.0.1:{port}/hook"), "events": ["file.ready"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        let secret = hook["secret"].as_str().expect("secret").to_owned();
        let hook_id = hook["id"].as_str().expect("id").to_owned();
        let out = server.data_dir.with_extension("tls-webhooks.jsonl");
        let receiver = Receiver::start_tls(port, &secret, &out, Some((&cert, &key)));
        let f = server
            .upload_and_wait("tls.txt", b"over tls".to_vec())
            .await;
        let file_id = f["id"].as_str().expect("id").to_owned();
        if trusted {
            let got = receiver.wait_for("file.ready", &file_id).await;
            assert_eq!(got["verified"], true, "{got}");
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let error = loop {
            let (_, ds) = server
                .get(&format!("/api/v1/webhooks/{hook_id}/deliveries"))
                .await;
            if let Some(e) = ds["data"][0]["last_error"].as_str() {
                break e.to_owned();
            }
            assert!(Instant::now() < deadline, "no attempt: {ds}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            receiver.records().is_empty(),
            "an untrusted certificate must not be accepted"
        );
        assert!(error.contains("certificate"), "{error}");
    }
}

/// `document_batch.completed` arrives once per batch: for a batch whose last file finished after the batch was
/// stored, and for one whose files were all done (deduplicated or refused) when it was stored.
#[tokio::test]
async fn a_document_batch_completing_is_an_event() {
    let server = Server::start_with(&[("DOCPIPE_WEBHOOK_ALLOW_PRIVATE", "127.0.0.0/8")]).await;
    let port = free_port();
    let (status, hook) = server
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["document_batch.completed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().expect("secret").to_owned();
    let out = server.data_dir.with_extension("batch-webhooks.jsonl");
    let receiver = Receiver::start(port, &secret, &out);
    let post = |files: Vec<(&'static str, Vec<u8>)>, metadata: &'static str| {
        let mut form = reqwest::multipart::Form::new().text("metadata", metadata);
        for (name, bytes) in files {
            form = form.part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name),
            );
        }
        server
            .http
            .post(server.url("/api/v1/batches"))
            .multipart(form)
            .send()
    };
    let pdf =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/qa/docs/pdf/parskip.pdf"))
            .expect("pdf");
    let first = crate::common::json_of(
        post(
            vec![("parskip.pdf", pdf.clone()), ("empty.txt", Vec::new())],
            r#"{"run": "one"}"#,
        )
        .await
        .expect("batch"),
    )
    .await
    .1;
    let first_id = first["id"].as_str().expect("id").to_owned();
    let got = receiver
        .wait_for("document_batch.completed", &first_id)
        .await;
    assert_eq!(got["verified"], true, "{got}");
    assert_eq!(
        (
            &got["data"]["total"],
            &got["data"]["ready"],
            &got["data"]["rejected"]
        ),
        (&json!(2), &json!(1), &json!(1)),
        "{got}"
    );
    assert_eq!(got["data"]["metadata"]["run"], "one", "{got}");
    // Every file done at once (a refused file only): the event comes from storing the batch.
    let second = crate::common::json_of(
        post(vec![("empty.txt", Vec::new())], r#"{"run": "two"}"#)
            .await
            .expect("batch"),
    )
    .await
    .1;
    let second_id = second["id"].as_str().expect("id").to_owned();
    let got = receiver
        .wait_for("document_batch.completed", &second_id)
        .await;
    assert_eq!(got["data"]["rejected"], 1, "{got}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let completions = receiver
        .records()
        .iter()
        .filter(|r| r["type"] == "document_batch.completed")
        .count();
    assert_eq!(
        completions,
        2,
        "one event per batch: {:?}",
        receiver.records()
    );
}

#[tokio::test]
async fn signed_events_reach_the_receiver_also_after_it_was_down() {
    let server = Server::start_with(&[
        ("DOCPIPE_WEBHOOK_ALLOW_PRIVATE", "127.0.0.0/8"),
        ("DOCPIPE_WEBHOOK_RETRY_SCHEDULE", "500ms,1s,1s,2s,2s,3s,5s"),
    ])
    .await;
    let port = free_port();
    let (status, hook) = server
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": format!("http://127.0.0.1:{port}/hook"),
                    "events": ["file.ready", "file.failed", "file.deleted"], "description": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = hook["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{hook}");
    let id = hook["id"].as_str().expect("id").to_owned();
    // The secret is shown once: never in reads.
    let (_, listed) = server.get("/api/v1/webhooks").await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(listed["data"][0].get("secret").is_none(), "{listed}");

    let out = server.data_dir.with_extension("webhooks.jsonl");
    let mut receiver = Receiver::start(port, &secret, &out);
    let mut files = Vec::new();
    for i in 0..2 {
        let f = server
            .upload_and_wait(&format!("n{i}.txt"), format!("note {i}").into_bytes())
            .await;
        files.push(f["id"].as_str().expect("id").to_owned());
    }
    for f in &files {
        let got = receiver.wait_for("file.ready", f).await;
        assert_eq!(got["verified"], true, "{got}");
        assert_eq!(got["data"]["status"], "ready", "{got}");
    }

    // Down: the event waits in the outbox and is retried until the receiver is back.
    receiver.stop();
    let late = server
        .upload_and_wait("late.txt", b"late note".to_vec())
        .await;
    let late = late["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed_once = loop {
        let (_, ds) = server
            .get(&format!("/api/v1/webhooks/{id}/deliveries"))
            .await;
        let d = ds["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|d| {
                d["payload"]["data"]["id"] == late.as_str() && d["attempts"].as_u64() >= Some(1)
            })
            .cloned();
        if let Some(d) = d {
            break d;
        }
        assert!(Instant::now() < deadline, "no failed attempt: {ds}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed_once["status"], "pending", "{failed_once}");
    assert!(
        failed_once["last_error"].as_str().is_some(),
        "{failed_once}"
    );
    assert!(failed_once["next_attempt_at"].is_string(), "{failed_once}");
    let receiver = Receiver::start(port, &secret, &out);
    let got = receiver.wait_for("file.ready", &late).await;
    assert_eq!(got["verified"], true, "{got}");

    // Deleting a file is an event too.
    let (status, _) = server.delete(&format!("/api/v1/files/{}", files[0])).await;
    assert_eq!(status, StatusCode::OK);
    receiver.wait_for("file.deleted", &files[0]).await;

    // Rotation: the old secret keeps verifying during the grace period (two signatures are sent).
    let (status, rotated) = server
        .post_json(
            &format!("/api/v1/webhooks/{id}/rotate-secret"),
            &json!({"grace_seconds": 3600}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["secret"], secret.as_str());
    let f = server
        .upload_and_wait("rotated.txt", b"after rotation".to_vec())
        .await;
    let got = receiver
        .wait_for("file.ready", f["id"].as_str().expect("id"))
        .await;
    assert_eq!(
        (got["verified"].clone(), got["signatures"].clone()),
        (json!(true), json!(2)),
        "{got}"
    );
    // Every delivery the receiver saw verified, and the deliveries list says how each went.
    assert!(receiver.records().iter().all(|r| r["verified"] == true));
    // The receiver records a delivery before it answers; the server marks it delivered once it has the answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    let ds = loop {
        let (_, ds) = server
            .get(&format!("/api/v1/webhooks/{id}/deliveries"))
            .await;
        let n = ds["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|d| d["status"] == "delivered")
            .count();
        if n >= 5 || Instant::now() > deadline {
            break ds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delivered: Vec<&Value> = ds["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|d| d["status"] == "delivered")
        .collect();
    assert!(delivered.len() >= 5, "{ds}");
    assert!(
        delivered.iter().all(|d| d["last_status_code"] == 204),
        "{ds}"
    );
    // Figures for the README: delivery latency of events delivered at their first attempt.
    let mut latencies: Vec<i64> = delivered
        .iter()
        .filter(|d| d["attempts"] == 1)
        .map(|d| {
            let at = |k: &str| {
                chrono::DateTime::parse_from_rfc3339(d[k].as_str().expect("time"))
                    .expect("rfc3339")
                    .timestamp_millis()
            };
            at("delivered_at") - at("created_at")
        })
        .collect();
    latencies.sort_unstable();
    eprintln!("webhook delivery latency (first attempts, ms): {latencies:?}");
}

#[tokio::test]
async fn a_pending_delivery_survives_kill_9() {
    let mut server = Server::start_with(&[
        ("DOCPIPE_WEBHOOK_ALLOW_PRIVATE", "1"),
        ("DOCPIPE_WEBHOOK_RETRY_SCHEDULE", "500ms,1s,1s,2s,2s,3s,5s"),
    ])
    .await;
    let port = free_port();
    let (status, hook) = server
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["file.ready", "batch.completed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    // The receiver is down while the file becomes ready, and the server dies before it is back.
    let f = server.upload_and_wait("a.txt", b"a note".to_vec()).await;
    let id = f["id"].as_str().expect("id").to_owned();
    server.crash_and_restart().await;
    let out = server.data_dir.with_extension("webhooks.jsonl");
    let receiver = Receiver::start(port, hook["secret"].as_str().expect("secret"), &out);
    let got = receiver.wait_for("file.ready", &id).await;
    assert_eq!(got["verified"], true, "{got}");
}

#[tokio::test]
async fn unsafe_webhook_urls_are_refused() {
    let server = Server::start().await;
    for url in [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x",
        "http://[::1]/x",
        "http://user:pw@example.com/x",
        "ftp://example.com/x",
        "not a url",
    ] {
        let (status, body) = server
            .post_json(
                "/api/v1/webhooks",
                &json!({"url": url, "events": ["file.ready"]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["error"]["param"], "url", "{url}: {body}");
    }
    let (status, body) = server
        .post_json(
            "/api/v1/webhooks",
            &json!({"url": "https://example.com/x", "events": ["file.exploded"]}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["param"]),
        (StatusCode::BAD_REQUEST, &json!("events")),
        "{body}"
    );
    let (status, body) = server.get("/api/v1/webhooks/wh_nope/deliveries").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("webhook_not_found")),
        "{body}"
    );
}
