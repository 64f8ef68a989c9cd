//! The complexity analysis over HTTP: explainable factors, tiers chosen by score and by window, and the
//! file checks shared with chat with files. The tiers here are remote ones that are never called (the
//! analysis does not generate), so no chat model is needed.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, assert_error, fixture, json_of};

/// Two remote tiers: a small window for easy requests, a big one for the rest. Port 9 is discard: never
/// contacted by an analysis.
const TWO_TIERS: &str = r#"
[[tiers]]
name = "small"
kind = "remote"
model = "small-model"
base_url = "http://127.0.0.1:9/v1"
context_window = 1024
min_score = 0.0
max_score = 0.3

[[tiers]]
name = "big"
kind = "remote"
model = "big-model"
base_url = "http://127.0.0.1:9/v1"
context_window = 32768
min_score = 0.3
max_score = 1.0
cost_per_1k_tokens = 0.5
"#;

/// The analysis needs no local chat model: start faster without them.
const NO_CHAT_MODELS: (&str, &str) = ("DOCPIPE_CHAT_MODELS", "none");

/// Writes a router configuration next to the test's temp files and returns its path.
pub fn router_config(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "docpipe-router-{}.toml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, text).expect("write router config");
    path
}

async fn analyze(server: &Server, body: Value) -> (StatusCode, Value) {
    let resp = server
        .http
        .post(server.url("/api/v1/analyze-complexity"))
        .json(&body)
        .send()
        .await
        .expect("analyze");
    json_of(resp).await
}

fn user(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn analysis_explains_score_tier_and_windows() {
    let config = router_config(TWO_TIERS);
    let server = Server::start_with(&[
        ("DOCPIPE_ROUTER_CONFIG", config.to_str().expect("utf-8")),
        NO_CHAT_MODELS,
    ])
    .await;

    let (status, body) = analyze(&server, user("Hi!")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = &body["complexity_analysis"];
    assert_eq!(a["selected_tier"], "small", "{a}");
    assert_eq!(a["selected_model"], "small-model");
    assert_eq!(a["level"], "low");
    assert_eq!(a["task"], "chat");
    let names: Vec<&str> = a["factors"]
        .as_array()
        .expect("factors")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        ["prompt_tokens", "context_tokens", "files", "task", "output"]
    );
    let sum: f64 = a["factors"]
        .as_array()
        .expect("factors")
        .iter()
        .map(|f| f["contribution"].as_f64().unwrap_or_default())
        .sum();
    let score = a["complexity_score"].as_f64().expect("score");
    assert!(
        (0.0..=1.0).contains(&score) && (sum - score).abs() < 0.01,
        "{a}"
    );
    assert!(a["estimated_prompt_tokens"].as_u64().is_some_and(|t| t > 0));
    assert!(
        a["reason"].as_str().is_some_and(|r| r.contains("small")),
        "{a}"
    );
    assert_eq!(a["fallback_order"], json!(["small", "big"]));

    let complex = json!({
        "messages": [{"role": "user", "content":
            "Compare the two designs in detail, analyse their trade-offs and write Python code for the better one."}],
        "max_tokens": 1200,
        "response_format": {"type": "json_object"}
    });
    let (status, body) = analyze(&server, complex).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let c = &body["complexity_analysis"];
    assert_eq!(c["selected_tier"], "big", "{c}");
    assert_eq!(c["task"], "code");
    assert!(c["complexity_score"].as_f64() > a["complexity_score"].as_f64());
    assert_ne!(c["level"], "low");

    // An easy request too long for the small window goes to the big tier, never to the small one.
    let long = "Tell me a story about this. ".repeat(200);
    let (status, body) = analyze(&server, user(&long)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let l = &body["complexity_analysis"];
    assert_eq!(l["selected_tier"], "big", "{l}");
    assert_eq!(l["fallback_order"], json!(["big"]));
    assert_eq!(l["skipped_tiers"][0]["tier"], "small");
    assert!(
        l["skipped_tiers"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("1024-token window")),
        "{l}"
    );
    assert!(
        l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("would take that score")),
        "{l}"
    );

    // Nothing holds it: 400 context_length_exceeded.
    let huge = "word ".repeat(40_000);
    let (status, body) = analyze(&server, user(&huge)).await;
    assert_error(
        status,
        &body,
        400,
        "context_length_exceeded",
        "invalid_request_error",
        Some("messages"),
        "no model can take this request",
    );
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn analysis_counts_files_and_checks_them() {
    let config = router_config(TWO_TIERS);
    let server = Server::start_with(&[
        ("DOCPIPE_ROUTER_CONFIG", config.to_str().expect("utf-8")),
        ("DOCPIPE_INGEST_WORKERS", "1"),
        NO_CHAT_MODELS,
    ])
    .await;
    let text = "The lighthouse keeper logs the weather every morning at six. ".repeat(20);
    let file = server.upload_and_wait("log.txt", text.into_bytes()).await;
    let id = file["id"].as_str().expect("id");
    let mut body = user("What time are the logs written?");
    body["file_ids"] = json!([id]);
    let (status, resp) = analyze(&server, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let a = &resp["complexity_analysis"];
    assert!(
        a["file_context_tokens"].as_u64().is_some_and(|t| t > 100),
        "{a}"
    );
    let files = a["factors"]
        .as_array()
        .expect("factors")
        .iter()
        .find(|f| f["name"] == "files")
        .expect("files factor");
    assert!(
        files["detail"]
            .as_str()
            .is_some_and(|d| d.contains("1 file(s): text")),
        "{files}"
    );
    assert_eq!(a["task"], "question");

    body["file_ids"] = json!(["no-such-file"]);
    let (status, resp) = analyze(&server, body.clone()).await;
    assert_error(
        status,
        &resp,
        404,
        "file_not_found",
        "not_found_error",
        Some("file_ids"),
        "no-such-file",
    );
    let (status, resp) = analyze(
        &server,
        json!({"messages": [{"role": "tool", "content": "x"}]}),
    )
    .await;
    assert_bad_request(status, &resp, Some("messages[0].role"), "must be one of");
    let (status, resp) = analyze(&server, json!({"messages": []})).await;
    assert_bad_request(status, &resp, Some("messages"), "at least 1");
    // With one worker busy on OCR, a file uploaded next is still queued: 409 with its status.
    let (status, _) = server.upload("scan.pdf", fixture("pdf/scanned.pdf")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, queued) = server
        .upload("later.txt", b"Queued behind the scan.".to_vec())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    body["file_ids"] = json!([id, queued["id"]]);
    let (status, resp) = analyze(&server, body).await;
    assert_error(
        status,
        &resp,
        409,
        "file_not_ready",
        "invalid_request_error",
        Some("file_ids"),
        "not ready",
    );
    let message = resp["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("queued") || message.contains("processing"),
        "{message}"
    );
    let (status, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn a_bad_router_config_stops_start_up_with_its_name() {
    let config =
        router_config("[[tiers]]\nname = \"x\"\nmodel = \"m\"\nmin_score = 0.0\nmax_score = 0.5\n");
    let out = std::process::Command::new(&*crate::common::BIN)
        .arg("serve")
        .env("DOCPIPE_ROUTER_CONFIG", &config)
        .env("DOCPIPE_PORT", "0")
        .env(
            "DOCPIPE_DATA_DIR",
            std::env::temp_dir().join(format!(
                "docpipe-badrouter-{}",
                uuid::Uuid::new_v4().simple()
            )),
        )
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("router configuration") && err.contains("above 0.5"),
        "{err}"
    );
    let _ = std::fs::remove_file(config);
}
