//! OpenAI batches against the real server and models: the official client end to end, a batch that
//! survives `kill -9` with every request answered exactly once, cancel, and the refusals.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::Server;

const CHAT: &str = "/v1/chat/completions";

/// Asserts an error answer's status and code, and that it has the one error shape.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(
        (status, &body["error"]["code"]),
        (want, &json!(code)),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// Uploads JSONL lines through `/v1/files` with `purpose=batch`; returns the file id.
async fn upload_batch_file(server: &Server, lines: &[Value]) -> String {
    let data: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(data.into_bytes()).file_name("requests.jsonl"),
        );
    let resp = reqwest::Client::new()
        .post(server.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let (status, body) = crate::common::json_of(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "processed", "{body}");
    body["id"].as_str().expect("id").to_owned()
}

fn chat_lines(n: usize, max_tokens: u32) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "method": "POST", "url": CHAT, "body": {
                "model": "smollm2-135m-instruct", "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": format!("Write a long story about the number {i}.")}]}})
        })
        .collect()
}

async fn create(server: &Server, file_id: &str, endpoint: &str) -> Value {
    let (status, batch) = server
        .post_json(
            "/v1/batches",
            &json!({"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    batch
}

/// Polls the batch until `done` holds for it (or fails after `timeout`).
async fn wait_for(
    server: &Server,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, batch) = server.get(&format!("/v1/batches/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{batch}");
        if done(&batch) {
            return batch;
        }
        assert!(
            Instant::now() < deadline,
            "batch did not get there in time: {batch}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn output_lines(server: &Server, file_id: &str) -> Vec<Value> {
    let resp = reqwest::get(server.url(&format!("/v1/files/{file_id}/content")))
        .await
        .expect("content");
    assert_eq!(resp.status(), StatusCode::OK);
    resp.text()
        .await
        .expect("text")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn the_official_client_runs_chat_and_embeddings_batches() {
    let server = Server::start().await;
    let mut docs = Vec::new();
    for (name, text) in [
        (
            "north.txt",
            "The north warehouse stores 7 pears and 12 apples.",
        ),
        (
            "south.txt",
            "The south warehouse stores 40 pears and no apples.",
        ),
    ] {
        let f = server.upload_and_wait(name, text.as_bytes().to_vec()).await;
        docs.push(f["id"].as_str().expect("id").to_owned());
    }
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_batch.py");
    let ids = docs.join(",");
    crate::common::run_openai_python(
        &server,
        &[script.as_os_str()],
        &[("DOC_IDS", std::ffi::OsStr::new(&ids))],
    )
    .await;
    // Batch files are data, not documents: never extracted, so chat over all files never cites them.
    let (_, listed) = server.get("/api/v1/files?limit=100").await;
    let batch_files: Vec<&Value> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|f| f["id"] != docs[0] && f["id"] != docs[1])
        .collect();
    assert!(!batch_files.is_empty(), "{listed}");
    for f in batch_files {
        assert_eq!(f["status"], "ready", "{f}");
        let (_, chunks) = server
            .get(&format!(
                "/api/v1/files/{}/chunks",
                f["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(chunks["total"].as_u64().unwrap_or(0), 0, "{chunks}");
    }
}

#[tokio::test]
async fn a_batch_survives_kill_9_and_answers_every_request_exactly_once() {
    let mut server = Server::start().await;
    let n = 10;
    let file = upload_batch_file(&server, &chat_lines(n, 48)).await;
    let batch = create(&server, &file, CHAT).await;
    let id = batch["id"].as_str().expect("id").to_owned();
    let before = wait_for(&server, &id, Duration::from_secs(300), |b| {
        b["request_counts"]["completed"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    let finished_before = before["request_counts"]["completed"].as_u64().unwrap();
    assert!(
        finished_before < n as u64,
        "the batch finished before the crash: {before}"
    );
    let crashed_at = chrono::Utc::now().timestamp();
    server.crash_and_restart().await;
    let done = wait_for(&server, &id, Duration::from_secs(600), |b| {
        b["status"] == "completed"
    })
    .await;
    assert_eq!(done["request_counts"]["total"], n, "{done}");
    assert_eq!(done["request_counts"]["completed"], n, "{done}");
    let lines = output_lines(&server, done["output_file_id"].as_str().expect("output")).await;
    let ids: HashSet<&str> = lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (lines.len(), ids.len()),
        (n, n),
        "every request once: {lines:?}"
    );
    // The requests answered before the crash kept their answers: they were not run again.
    let kept = lines
        .iter()
        .filter(|l| l["response"]["body"]["created"].as_i64().unwrap() <= crashed_at)
        .count();
    assert!(
        kept as u64 >= finished_before,
        "{kept} answers from before the crash, {finished_before} finished"
    );
}

#[tokio::test]
async fn a_cancelled_batch_stops_within_seconds_and_keeps_what_finished() {
    let server = Server::start().await;
    let file = upload_batch_file(&server, &chat_lines(30, 200)).await;
    let batch = create(&server, &file, CHAT).await;
    let id = batch["id"].as_str().expect("id").to_owned();
    wait_for(&server, &id, Duration::from_secs(300), |b| {
        b["request_counts"]["completed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let asked = Instant::now();
    let (status, cancelling) = server
        .post_json(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelling}");
    assert!(
        cancelling["status"] == "cancelling" || cancelling["status"] == "cancelled",
        "{cancelling}"
    );
    let done = wait_for(&server, &id, Duration::from_secs(30), |b| {
        b["status"] == "cancelled"
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        asked.elapsed()
    );
    let completed = done["request_counts"]["completed"].as_u64().unwrap();
    assert!((1..30).contains(&completed), "{done}");
    assert!(done["cancelled_at"].as_i64().is_some(), "{done}");
    let lines = output_lines(&server, done["output_file_id"].as_str().expect("output")).await;
    assert_eq!(lines.len() as u64, completed);
    // A cancelled batch cannot be cancelled into anything else; a finished one is a 409.
    let (status, again) = server
        .post_json(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, &again["status"]),
        (StatusCode::OK, &json!("cancelled"))
    );
    let small = upload_batch_file(&server, &chat_lines(1, 2)).await;
    let small = create(&server, &small, CHAT).await;
    let sid = small["id"].as_str().unwrap();
    wait_for(&server, sid, Duration::from_secs(120), |b| {
        b["status"] == "completed"
    })
    .await;
    let (status, body) = server
        .post_json(&format!("/v1/batches/{sid}/cancel"), &json!({}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "batch_not_cancellable");
}

#[tokio::test]
async fn bad_batch_requests_get_clear_errors() {
    let server = Server::start().await;
    let doc = server
        .upload_and_wait("doc.txt", b"a document".to_vec())
        .await;
    let good = upload_batch_file(&server, &chat_lines(1, 2)).await;
    let cases = [
        (
            json!({"input_file_id": good, "endpoint": "/v1/images", "completion_window": "24h"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "endpoint",
        ),
        (
            json!({"input_file_id": good, "endpoint": CHAT, "completion_window": "1h"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "completion_window",
        ),
        (
            json!({"input_file_id": "file-nope", "endpoint": CHAT, "completion_window": "24h"}),
            StatusCode::NOT_FOUND,
            "file_not_found",
            "input_file_id",
        ),
        (
            json!({"input_file_id": doc["id"], "endpoint": CHAT, "completion_window": "24h"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "input_file_id",
        ),
        (
            json!({"input_file_id": good, "endpoint": CHAT, "completion_window": "24h",
            "metadata": (0..17).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "metadata",
        ),
        (
            json!({"endpoint": CHAT, "completion_window": "24h"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "input_file_id",
        ),
    ];
    for (body, want, code, param) in cases {
        let (status, got) = server.post_json("/v1/batches", &body).await;
        assert_error(status, &got, want, code);
        assert_eq!(got["error"]["param"], param, "{body} -> {got}");
    }
    let (status, body) = server.get("/v1/batches/batch_nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "batch_not_found");
    let (status, body) = server.get("/v1/batches?after=batch_nope").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(body["error"]["param"], "after");
    // The service is healthy afterwards.
    let (status, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
}
