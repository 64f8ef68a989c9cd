//! The committed OpenAPI document is what the code generates, and the server serves it with Swagger UI.

use crate::common::{BIN, Server};

/// Operations in the API (method + path pairs); update when adding endpoints.
const OPERATIONS: usize = 31;

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
