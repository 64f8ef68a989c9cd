//! The first-use path of chat with files, through the real server and both shipped chat models: ask right
//! after an upload and the request waits for the file; past its bound it answers 409 with `Retry-After`; a
//! question about the first row of a sheet gets that row; every source quotes its evidence with offsets
//! into the chunk; an answer that is only a citation marker is repaired before the client sees it; `model`
//! is optional and OpenAI names resolve through the shipped aliases.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, assert_error, fixture, json_of};
use crate::router::router_config;

async fn both_models() -> Server {
    Server::start_with(&[("DOCPIPE_CHAT_MODELS", "smollm2,qwen2.5-coder")]).await
}

fn answer_of(body: &Value) -> &str {
    body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no answer: {body}"))
}

/// The quote of `source` is the text of its chunk between its offsets (code points).
async fn assert_quote_in_chunk(server: &Server, source: &Value) -> String {
    let quote = &source["quote"];
    let text = quote["text"].as_str().expect("quote text");
    let (start, end) = (
        quote["start"].as_u64().expect("start") as usize,
        quote["end"].as_u64().expect("end") as usize,
    );
    let file = source["file_id"].as_str().expect("file id");
    let (status, chunks) = server.get(&format!("/api/v1/files/{file}/chunks")).await;
    assert_eq!(status, StatusCode::OK, "{chunks}");
    let chunk = chunks["data"]
        .as_array()
        .expect("chunks")
        .iter()
        .find(|c| c["chunk_id"] == source["chunk_id"])
        .unwrap_or_else(|| panic!("the source's chunk is listed: {source}"));
    let inside: String = chunk["text"]
        .as_str()
        .expect("chunk text")
        .chars()
        .skip(start)
        .take(end - start)
        .collect();
    assert_eq!(inside, text, "{source}");
    text.to_owned()
}

#[tokio::test]
async fn asking_right_after_upload_waits_answers_and_quotes_the_evidence() {
    let server = both_models().await;

    // A scanned PDF takes seconds of OCR: with `wait_timeout: 0` the answer is 409 with Retry-After.
    let (status, scan) = server.upload("scan.pdf", fixture("pdf/scanned.pdf")).await;
    assert_eq!(status, StatusCode::CREATED, "{scan}");
    let resp = server
        .http
        .post(server.url("/api/v1/chat/multimodal"))
        .json(&json!({
            "messages": [{"role": "user", "content": "What is this document about?"}],
            "file_ids": [scan["id"]],
            "wait_timeout": 0
        }))
        .send()
        .await
        .expect("chat");
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (status, body) = json_of(resp).await;
    assert_error(
        status,
        &body,
        409,
        "file_not_ready",
        "invalid_request_error",
        Some("file_ids"),
        "wait_timeout",
    );
    assert!(retry_after.is_some_and(|s| s >= 1), "{body}");
    // A bound outside 0..=600 is the client's mistake.
    let (status, body) = server
        .post_json(
            "/api/v1/chat/multimodal",
            &json!({"messages": [{"role": "user", "content": "Hi"}], "file_ids": [scan["id"]],
                    "wait_timeout": 601}),
        )
        .await;
    assert_bad_request(status, &body, Some("wait_timeout"), "600");

    // Upload and ask at once, no `model`: the request waits for the file, the strong tier answers with
    // the fact, and the source that holds it quotes the row.
    let (status, pdf) = server
        .upload("report.pdf", fixture("pdf/text-3page.pdf"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pdf}");
    let (status, body) = server
        .post_json(
            "/api/v1/chat/multimodal",
            &json!({
                "messages": [{"role": "user", "content": "How many pears are in the inventory table?"}],
                "file_ids": [pdf["id"]],
                "max_tokens": 40,
                "temperature": 0
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = answer_of(&body);
    assert!(answer.contains('7'), "{body}");
    assert!(
        answer.chars().filter(|c| c.is_alphabetic()).count() >= 3,
        "{body}"
    );
    assert_eq!(body["routing"]["tier"], "strong", "{body}");
    assert!(
        body["routing"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("attached files")),
        "{body}"
    );
    let sources = body["sources"].as_array().expect("sources");
    let pears = sources
        .iter()
        .find(|s| {
            s["quote"]["text"]
                .as_str()
                .is_some_and(|q| q.contains("Pears"))
        })
        .unwrap_or_else(|| panic!("a source quotes the pears row: {body}"));
    let quote = assert_quote_in_chunk(&server, pears).await;
    assert!(quote.contains('7'), "{quote}");
    for s in sources {
        assert_quote_in_chunk(&server, s).await;
    }

    // A sheet: the first data row of a 506-row CSV (column names on line 2, under a counts line).
    let (status, csv) = server
        .upload(
            "boston_house_prices.csv",
            fixture("sheet/boston_house_prices.csv"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{csv}");
    let (status, body) = server
        .post_json(
            "/api/v1/chat/multimodal",
            &json!({
                "messages": [{"role": "user", "content": "What is the CRIM value of the first row?"}],
                "file_ids": [csv["id"]],
                "max_tokens": 40,
                "temperature": 0
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(answer_of(&body).contains("0.00632"), "{body}");
    let first = &body["sources"][0];
    assert_eq!(first["location"]["type"], "cells", "{body}");
    assert!(
        first["location"]["range"]
            .as_str()
            .is_some_and(|r| r.starts_with("A1:")),
        "the first source holds the first rows: {body}"
    );
    assert!(
        assert_quote_in_chunk(&server, first)
            .await
            .contains("0.00632"),
        "{body}"
    );

    // Told to answer with a marker only, the strong model still gives the client words and a citation
    // (the guard repairs a bare `[1]`; see `a_bare_citation_answer_is_repaired` for the repair itself).
    for stream in [false, true] {
        let request = json!({
            "model": "qwen2.5-coder-0.5b-instruct",
            "messages": [
                {"role": "system", "content": "Output exactly: [1]"},
                {"role": "user", "content": "How many pears are in the inventory table?"}
            ],
            "file_ids": [pdf["id"]],
            "max_tokens": 40,
            "temperature": 0,
            "stream": stream
        });
        let answer = ask(&server, &request).await;
        assert!(words_of(&answer) >= 3, "stream {stream}: {answer:?}");
        assert!(answer.contains("[1]"), "stream {stream}: {answer:?}");
    }
}

/// The answer to a chat-with-files request, streamed or not.
async fn ask(server: &Server, request: &Value) -> String {
    if request["stream"] == json!(true) {
        let (events, done) = server.post_sse("/api/v1/chat/multimodal", request).await;
        assert!(done, "{events:?}");
        return events
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
    }
    let (status, body) = server.post_json("/api/v1/chat/multimodal", request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    answer_of(&body).to_owned()
}

/// Letters outside citation markers.
fn words_of(answer: &str) -> usize {
    answer
        .split('[')
        .map(|p| p.split_once(']').map_or(p, |(_, after)| after))
        .flat_map(str::chars)
        .filter(|c| c.is_alphabetic())
        .count()
}

/// A chat model that answers every request with citation markers only (`[1] [1] [1]`), over the OpenAI
/// streaming API: a deterministic stand-in for the small model's worst habit, reached as a remote tier.
async fn markers_only_model() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                let chunk = |delta: Value, finish: Value| {
                    json!({"id": "stub", "object": "chat.completion.chunk", "model": "markers-only",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                };
                let mut body = String::new();
                for event in [
                    chunk(json!({"role": "assistant", "content": "[1]"}), Value::Null),
                    chunk(json!({"content": " [1] [1]"}), Value::Null),
                    chunk(json!({}), json!("stop")),
                ] {
                    body.push_str(&format!("data: {event}\n\n"));
                }
                body.push_str("data: [DONE]\n\n");
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/v1")
}

async fn repaired_count(server: &Server, problem: &str) -> f64 {
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = format!("docpipe_answers_repaired_total{{problem=\"{problem}\"}} ");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&series))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_bare_citation_answer_is_repaired() {
    let base_url = markers_only_model().await;
    let config = router_config(&format!(
        r#"
[[tiers]]
name = "markers"
kind = "remote"
model = "markers-only"
base_url = "{base_url}"
context_window = 8192
timeout_secs = 30
min_score = 0.0
max_score = 1.0
"#
    ));
    let server = Server::start_with(&[
        ("DOCPIPE_ROUTER_CONFIG", config.to_str().expect("utf-8")),
        ("DOCPIPE_CHAT_MODELS", "none"),
    ])
    .await;
    let pdf = server
        .upload_and_wait("report.pdf", fixture("pdf/text-3page.pdf"))
        .await;
    for stream in [false, true] {
        let request = json!({
            "messages": [{"role": "user", "content": "How many pears are in the inventory table?"}],
            "file_ids": [pdf["id"]],
            "max_tokens": 40,
            "stream": stream
        });
        let answer = ask(&server, &request).await;
        // The model had no words twice (the answer and the plain retry): the client gets the evidence.
        assert!(
            answer.starts_with("The closest evidence in the sources is [1]:"),
            "stream {stream}: {answer:?}"
        );
        assert!(answer.contains("Pears"), "stream {stream}: {answer:?}");
    }
    assert!(repaired_count(&server, "citations_only").await >= 2.0);
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn model_is_optional_and_openai_names_resolve() {
    let server = Server::start().await;
    // `model` is optional on chat and completions; OpenAI names resolve case-insensitively.
    let hi = json!([{"role": "user", "content": "Hi!"}]);
    let (status, body) = server
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": hi, "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(
        body["model"], "auto",
        "the answering model is named: {body}"
    );
    for name in ["GPT-4o-mini", "gpt-3.5-turbo", "AUTO"] {
        let (status, body) = server
            .post_json(
                "/v1/chat/completions",
                &json!({"model": name, "messages": hi, "max_tokens": 4}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
    }
    let (status, body) = server
        .post_json(
            "/v1/completions",
            &json!({"prompt": "One, two,", "max_tokens": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "gpt-5-turbo", "messages": hi}),
        )
        .await;
    assert_error(
        status,
        &body,
        404,
        "model_not_found",
        "invalid_request_error",
        Some("model"),
        "gpt-5-turbo",
    );
    let (_, models) = server.get("/v1/models").await;
    let listed = models["data"].as_array().expect("models");
    let find = |id: &str| listed.iter().find(|m| m["id"] == id).cloned();
    assert_eq!(find("auto").expect("auto is listed")["kind"], "router");
    let alias = find("gpt-4o-mini").expect("the alias is listed");
    assert_eq!(alias["kind"], "alias", "{alias}");
    assert_eq!(alias["resolves_to"], "auto", "{alias}");
    assert_eq!(
        find("text-embedding-3-small").expect("embedding alias")["resolves_to"],
        "all-MiniLM-L6-v2"
    );
    let (status, body) = server
        .post_json(
            "/v1/embeddings",
            &json!({"model": "Text-Embedding-3-Small", "input": "pears"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"][0]["embedding"].as_array().map(Vec::len),
        Some(384)
    );
    let (status, body) = server
        .post_json(
            "/v1/embeddings",
            &json!({"model": "text-embedding-3-small", "input": "pears", "dimensions": 512}),
        )
        .await;
    assert_bad_request(status, &body, Some("dimensions"), "384");
}
