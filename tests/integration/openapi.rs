//! The committed OpenAPI document is what the code generates, and the server serves it with Swagger UI.

use crate::common::{BIN, Server};

/// Operations in the API (method + path pairs); update when adding endpoints.
const OPERATIONS: usize = 46;

#[tokio::test]
async fn committed_openapi_matches_the_code() {
    // Built from the endpoints' types alone: no models, no data directory.
    let out = std::process::Command::new(&*BIN)
        .arg("openapi")
        .env("DOCPIPE_MODELS_DIR", "/nonexistent/models")
        .env("DOCPIPE_DATA_DIR", "/nonexistent/data")
        .output()
        .expect("run docpipe openapi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
            .unwrap_or_default();
    assert!(
        generated == committed,
        "openapi/openapi.json is stale: regenerate it with `make openapi`"
    );
    let ops: usize = generated["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, serde_json::Map::len))
        .sum();
    assert_eq!(ops, OPERATIONS);
    // Every operation documents its error statuses.
    for (path, item) in generated["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("ops") {
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no summary"
            );
            // Every operation but liveness takes a `Caller`, so it is authenticated and tenant-scoped; a
            // handler that forgot it would not be listed with the security schemes.
            if path != "/health" {
                let security = op["security"].to_string();
                assert!(
                    security.contains("ApiKey") && security.contains("Bearer"),
                    "{method} {path} does not take a Caller (no security): {security}"
                );
            }
            // Liveness and the model list cannot fail.
            if path == "/health" || (path == "/v1/models" && method == "get") {
                continue;
            }
            let responses = op["responses"].as_object().expect("responses");
            for status in ["400", "401", "403", "404", "413", "429", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn swagger_ui_redoc_and_spec_are_served() {
    let server = Server::start().await;
    for (path, needle) in [
        ("/docs/", "swagger"),
        ("/redoc/", "redoc"),
        ("/openapi.json", "\"openapi\""),
    ] {
        let resp = server.http.get(server.url(path)).send().await.expect("get");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let body = resp.text().await.expect("body").to_lowercase();
        assert!(body.contains(needle), "{path} should mention {needle}");
    }
    // The served document is the one `docpipe openapi` writes without a running app.
    let served: serde_json::Value = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    assert!(
        served == committed,
        "the served spec differs from openapi/openapi.json"
    );
}

/// GETs `path` with `Accept-Encoding: accept`; returns the `Content-Encoding` (empty when none), the
/// `Content-Type` and the raw bytes.
async fn get_encoded(server: &Server, path: &str, accept: &str) -> (String, String, Vec<u8>) {
    let resp = server
        .http
        .get(server.url(path))
        .header("accept-encoding", accept)
        .send()
        .await
        .expect("get");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (encoding, content_type) = (header("content-encoding"), header("content-type"));
    let bytes = resp.bytes().await.expect("body").to_vec();
    (encoding, content_type, bytes)
}

#[tokio::test]
async fn responses_are_compressed_when_accepted_except_events_and_small_ones() {
    use std::io::Read as _;
    let server = Server::start().await;
    let (encoding, _, plain) = get_encoded(&server, "/openapi.json", "identity").await;
    assert_eq!(encoding, "", "not compressed unless asked");
    let (encoding, content_type, gzipped) = get_encoded(&server, "/openapi.json", "gzip").await;
    assert_eq!(encoding, "gzip");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(
        gzipped.len() * 5 < plain.len(),
        "{} bytes gzipped of {}",
        gzipped.len(),
        plain.len()
    );
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .read_to_end(&mut decoded)
        .expect("valid gzip");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&decoded).expect("json"),
        serde_json::from_slice::<serde_json::Value>(&plain).expect("json")
    );
    for (accept, want) in [
        ("gzip, deflate, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
    ] {
        let (encoding, _, body) = get_encoded(&server, "/openapi.json", accept).await;
        assert_eq!(encoding, want, "{accept}");
        assert!(
            body.len() * 5 < plain.len(),
            "{accept}: {} bytes",
            body.len()
        );
    }
    let (encoding, _, docs) = get_encoded(&server, "/docs/", "gzip").await;
    assert_eq!(encoding, "gzip", "Swagger UI");
    assert!(!docs.is_empty());
    // Small answers are sent as they are.
    let (encoding, _, _) = get_encoded(&server, "/health", "gzip").await;
    assert_eq!(encoding, "", "/health is smaller than 1 KiB");

    // Server-sent events never are (a compressor would hold events back), nor stored images.
    let png = crate::common::fixture("image/text.png");
    let file = server.upload_and_wait("text.png", png.clone()).await;
    let id = file["id"].as_str().expect("id");
    let (encoding, content_type, events) = get_encoded(
        &server,
        &format!("/api/v1/files/{id}/events"),
        "gzip, br, zstd",
    )
    .await;
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert_eq!(encoding, "", "events are not compressed");
    assert!(String::from_utf8_lossy(&events).contains("data: "));
    let (encoding, content_type, bytes) =
        get_encoded(&server, &format!("/api/v1/files/{id}/content"), "gzip").await;
    assert_eq!(content_type, "image/png");
    assert_eq!(encoding, "", "a PNG is sent as stored");
    assert_eq!(bytes, png);
}
