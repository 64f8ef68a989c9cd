//! Metrics, readiness, performance figures and graceful shutdown through the real server.

use std::time::Duration;

use reqwest::StatusCode;

use crate::common::{Server, fixture};

#[tokio::test]
async fn metrics_pass_promtool_and_count_the_work() {
    let server = Server::start().await;
    let file = server
        .upload_and_wait("guide.md", fixture("text/guide.md"))
        .await;
    assert_eq!(file["status"], "ready", "{file}");
    let (s, _) = server.get("/api/v1/files/file-unknown").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let resp = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = resp.text().await.expect("text");
    for needle in [
        "docpipe_http_requests_total{method=\"POST\",route=\"/api/v1/upload\",status=\"201\"} 1",
        "docpipe_http_requests_total{method=\"GET\",route=\"/api/v1/files/{file_id}\",status=\"404\"} 1",
        "docpipe_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/upload\"",
        "docpipe_files{status=\"ready\"} 1",
        "docpipe_ingest_queue_depth 0",
        "docpipe_extraction_seconds_count{format=\"markdown\"} 1",
        "docpipe_files_processed_total{outcome=\"ready\"} 1",
        "docpipe_chunks_indexed_total",
        "docpipe_embeddings_computed_total",
        "docpipe_rate_limited_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    let mut check = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; `make test-deps` installs it)");
    {
        use std::io::Write as _;
        check
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let server = Server::start().await;
    for (i, path) in ["/health", "/api/v1/files", "/nowhere"].iter().enumerate() {
        let method = reqwest::Method::from_bytes(format!("XMETHOD{i}").as_bytes()).expect("method");
        let resp = server
            .http
            .request(method, server.url(path))
            .send()
            .await
            .expect("send");
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
    }
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !text.contains("XMETHOD"),
        "a client's method became a label:\n{text}"
    );
    assert!(text.contains("method=\"other\""), "{text}");
    let (_, perf) = server.get("/api/v1/performance/metrics").await;
    assert!(!perf.to_string().contains("XMETHOD"), "{perf}");
    assert!(
        perf["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .any(|r| r["route"].as_str().is_some_and(|r| r.starts_with("other "))),
        "{perf}"
    );
}

#[tokio::test]
async fn readiness_and_performance_report_the_service() {
    let server = Server::start().await;
    let (s, health) = server.get("/api/v1/monitoring/health").await;
    assert_eq!(s, StatusCode::OK, "{health}");
    assert_eq!(health["status"], "ready", "{health}");
    assert_eq!(health["database"], "ok");
    assert!(
        health["models_loaded"]
            .to_string()
            .contains("all-MiniLM-L6-v2"),
        "{health}"
    );
    assert!(
        health["host"]["disk_free_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{health}"
    );
    assert!(
        health["host"]["process_rss_bytes"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{health}"
    );
    let cpu = health["host"]["cpu_percent"].as_f64().expect("cpu");
    assert!((0.0..=100.0).contains(&cpu), "{health}");
    assert_eq!(health["queue"]["queued"], 0);
    for _ in 0..5 {
        server.get("/api/v1/files").await;
    }
    let (s, perf) = server.get("/api/v1/performance/metrics").await;
    assert_eq!(s, StatusCode::OK, "{perf}");
    let files = perf["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["route"] == "GET /api/v1/files")
        .unwrap_or_else(|| panic!("{perf}"));
    assert_eq!(files["count"], 5, "{perf}");
    assert!(
        files["p99_ms"].as_f64() >= files["p50_ms"].as_f64(),
        "{perf}"
    );
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let mut server = Server::start().await;
    // An upload whose body arrives slowly: SIGTERM comes while it is in flight.
    let boundary = "docpipe-test-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"late.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nThe first half of the text, "
    );
    let tail = format!("and the second half that arrives after SIGTERM.\r\n--{boundary}--\r\n");
    let chunks = futures::stream::unfold(0, move |i| {
        let (head, tail) = (head.clone(), tail.clone());
        async move {
            match i {
                0 => Some((Ok::<_, std::io::Error>(head.into_bytes()), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Some((Ok(tail.into_bytes()), 2))
                }
                _ => None,
            }
        }
    });
    let request = server
        .http
        .post(server.url("/api/v1/upload"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(chunks))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal_term();
    let resp = in_flight
        .await
        .expect("join")
        .expect("the in-flight request gets its answer");
    assert_eq!(resp.status(), StatusCode::CREATED);
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(30));
        (
            status,
            std::fs::read_to_string(server.log()).unwrap_or_default(),
        )
    })
    .await
    .expect("join");
    let (status, log) = status;
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit after SIGTERM: {status:?}\n{log}"
    );
    assert!(log.contains("shutdown requested"), "{log}");
}
