//! Rate limits and CORS through the real server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Server, assert_error, json_of};

const ADMIN: &str = "admin-key-for-limit-tests-0123";

fn header(resp: &reqwest::Response, name: &str) -> u64 {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "header {name} missing or not a number: {:?}",
                resp.headers()
            )
        })
}

async fn new_key(server: &Server, tenant: &str) -> String {
    let resp = server
        .http
        .post(server.url("/api/v1/keys"))
        .header("x-api-key", ADMIN)
        .json(&json!({"name": tenant, "scopes": ["read"], "tenant": tenant}))
        .send()
        .await
        .expect("create key");
    let (s, b) = json_of(resp).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    b["key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn the_101st_request_in_the_window_is_refused_per_key() {
    // A long window so that no quota comes back while the test runs (one request's worth per 36 s).
    let server = Server::start_with(&[
        ("DOCPIPE_ADMIN_KEY", ADMIN),
        ("RATE_LIMIT_REQUESTS", "100"),
        ("RATE_LIMIT_WINDOW", "3600"),
    ])
    .await;
    let (a, b) = (
        new_key(&server, "alpha").await,
        new_key(&server, "beta").await,
    );
    for i in 0..100u64 {
        let resp = server
            .http
            .get(server.url("/v1/models"))
            .header("x-api-key", &a)
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), StatusCode::OK, "request {}", i + 1);
        assert_eq!(header(&resp, "x-ratelimit-limit"), 100);
        assert_eq!(header(&resp, "x-ratelimit-remaining"), 99 - i);
        let reset = header(&resp, "x-ratelimit-reset");
        assert!(
            (36 * (i + 1)..=36 * (i + 1) + 1).contains(&reset),
            "reset {reset} after {} requests",
            i + 1
        );
    }
    let resp = server
        .http
        .get(server.url("/v1/models"))
        .header("x-api-key", &a)
        .send()
        .await
        .expect("get");
    assert_eq!(header(&resp, "x-ratelimit-remaining"), 0);
    let retry_after = header(&resp, "retry-after");
    assert!(
        (35..=36).contains(&retry_after),
        "one request's worth comes back in 36 s: {retry_after}"
    );
    let (s, body) = json_of(resp).await;
    assert_error(
        s,
        &body,
        429,
        "rate_limit_exceeded",
        "rate_limit_error",
        None,
        "rate limit exceeded",
    );

    // Another key has its own quota; liveness is never limited.
    let resp = server
        .http
        .get(server.url("/v1/models"))
        .header("x-api-key", &b)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "x-ratelimit-remaining"), 99);
    for _ in 0..150 {
        let resp = server
            .http
            .get(server.url("/health"))
            .send()
            .await
            .expect("health");
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // Refusals are counted.
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .header("x-api-key", ADMIN)
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("docpipe_rate_limited_total 1"), "{text}");
}

#[tokio::test]
async fn retry_after_is_when_a_retry_succeeds() {
    // Anonymous callers are limited by IP: 2 requests per 2 s, one coming back each second.
    let server =
        Server::start_with(&[("RATE_LIMIT_REQUESTS", "2"), ("RATE_LIMIT_WINDOW", "2")]).await;
    let get = || server.http.get(server.url("/api/v1/files")).send();
    assert_eq!(get().await.expect("1").status(), StatusCode::OK);
    assert_eq!(get().await.expect("2").status(), StatusCode::OK);
    let refused = get().await.expect("3");
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = header(&refused, "retry-after");
    assert_eq!(wait, 1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let resp = get().await.expect("4");
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "a retry after Retry-After seconds succeeds"
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let server = Server::start_with(&[("DOCPIPE_CORS_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/search"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
    };
    let ok = preflight("https://app.example.com")
        .await
        .expect("preflight");
    assert!(ok.status().is_success(), "{}", ok.status());
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert!(
        ok.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let other = preflight("https://evil.example.net")
        .await
        .expect("preflight");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        other.headers()
    );

    // Without configured origins no CORS headers are sent at all.
    let plain = Server::start().await;
    let resp = plain
        .http
        .get(plain.url("/api/v1/files"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("get");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

/// A client trickling its request headers a byte at a time is cut off at the header deadline, while
/// other clients are served; on a kept-alive connection, the second request's headers too.
#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let server = Server::start_with(&[("DOCPIPE_HEADER_TIMEOUT_SECS", "2")]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let slow = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    trickle_until_closed(&server, slow).await;

    // A first request answered at once, then a second one trickled on the same connection.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut kept = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Quiet for longer than the deadline: an idle kept-alive connection is the idle timeout's business.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    trickle_until_closed(&server, kept).await;
}

/// Sends a request's headers a byte every 300 ms and asserts that the server closes the connection
/// between 2 and 6 s after the first byte (the test server's deadline is 2 s).
async fn trickle_until_closed(server: &Server, mut slow: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = std::time::Instant::now();
    let request =
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in request {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(_)) => panic!("answered a request whose headers never ended"),
            Err(_) => {}
        }
        // Meanwhile a normal client is served.
        let (status, _) = server.get("/health").await;
        assert_eq!(status, StatusCode::OK);
    }
    let took = started.elapsed();
    assert!(closed, "the connection was never closed");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "closed after {took:?}"
    );
}
