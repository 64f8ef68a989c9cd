//! `/v1/embeddings` and `/v1/models` through the real server with the real model.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, assert_error, json_of};

async fn embed(server: &Server, body: Value) -> (reqwest::StatusCode, Value, Option<String>) {
    let resp = server
        .http
        .post(server.url("/v1/embeddings"))
        .json(&body)
        .send()
        .await
        .expect("embed");
    let truncated = resp
        .headers()
        .get("x-truncated-inputs")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (s, b) = json_of(resp).await;
    (s, b, truncated)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(Value::as_f64)
        .collect()
}

#[tokio::test]
async fn embeddings_match_sentence_transformers_in_openai_shape() {
    let server = Server::start().await;
    let (status, body, truncated) = embed(
        &server,
        json!({"input": ["A man is eating food.", "A man is eating a piece of bread.", "A plane is taking off."], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(truncated, None);
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 3);
    assert_eq!(data[2]["index"], 2);
    assert_eq!(data[0]["object"], "embedding");
    let v: Vec<Vec<f64>> = data.iter().map(|d| floats(&d["embedding"])).collect();
    assert_eq!(v[0].len(), 384);
    // The figures sentence-transformers gives for these pairs.
    assert!((cosine(&v[0], &v[1]) - 0.7553).abs() < 0.001);
    assert!((cosine(&v[0], &v[2]) - 0.0383).abs() < 0.001);
    assert!(
        body["usage"]["prompt_tokens"]
            .as_u64()
            .is_some_and(|n| n >= 20)
    );
    assert_eq!(
        body["usage"]["prompt_tokens"],
        body["usage"]["total_tokens"]
    );

    // base64 is the same vector as little-endian f32.
    let (_, b64, _) = embed(&server, json!({"input": "A man is eating food.", "model": "all-MiniLM-L6-v2", "encoding_format": "base64", "dimensions": 384})).await;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().expect("base64 string"))
        .expect("valid base64");
    let decoded: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert!(cosine(&decoded, &v[0]) > 0.99999);

    // Longer than the window: truncated and reported.
    let long = "word ".repeat(400);
    let (status, body, truncated) = embed(
        &server,
        json!({"input": ["short", long], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    assert_eq!(truncated.as_deref(), Some("1"));
}

#[tokio::test]
async fn bad_embedding_requests() {
    let server = Server::start_with(&[
        ("DOCPIPE_EMBED_MAX_INPUTS", "3"),
        ("DOCPIPE_EMBED_MAX_TOTAL_TOKENS", "500"),
    ])
    .await;
    let (s, b, _) = embed(
        &server,
        json!({"input": "x", "model": "text-embedding-3-large"}),
    )
    .await;
    assert_error(
        s,
        &b,
        404,
        "model_not_found",
        "invalid_request_error",
        Some("model"),
        "text-embedding-3-large",
    );
    let (s, b, _) = embed(
        &server,
        json!({"input": "x", "model": "all-MiniLM-L6-v2", "dimensions": 512}),
    )
    .await;
    assert_bad_request(s, &b, Some("dimensions"), "384");
    let (s, b, _) = embed(&server, json!({"input": [], "model": "all-MiniLM-L6-v2"})).await;
    assert_bad_request(s, &b, Some("input"), "empty");
    let (s, b, _) = embed(
        &server,
        json!({"input": [[1, 2, 3]], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_bad_request(s, &b, Some("input"), "token arrays");
    let (s, b, _) = embed(
        &server,
        json!({"input": "x", "model": "all-MiniLM-L6-v2", "encoding_format": "hex"}),
    )
    .await;
    assert_bad_request(s, &b, Some("encoding_format"), "hex");
    let (s, b, _) = embed(
        &server,
        json!({"input": ["a", "b", "c", "d"], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_bad_request(s, &b, Some("input"), "at most 3 inputs");
    let (s, b, _) = embed(
        &server,
        json!({"input": ["word ".repeat(300), "word ".repeat(300)], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_error(
        s,
        &b,
        413,
        "too_many_tokens",
        "invalid_request_error",
        Some("input"),
        "at most 500",
    );

    let reject = Server::start_with(&[("DOCPIPE_EMBED_OVERFLOW", "reject")]).await;
    let (s, b, _) = embed(
        &reject,
        json!({"input": ["ok", "word ".repeat(400)], "model": "all-MiniLM-L6-v2"}),
    )
    .await;
    assert_bad_request(s, &b, Some("input"), "input 1 has");
}

#[tokio::test]
async fn models_are_listed() {
    let server = Server::start().await;
    let (_, list) = server.get("/v1/models").await;
    assert_eq!(list["object"], "list");
    let m = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|m| m["id"] == "all-MiniLM-L6-v2")
        .cloned()
        .expect("embedding model");
    assert_eq!(m["dimensions"], 384);
    assert_eq!(m["kind"], "embedding");
    assert_eq!(m["context_window"], 256);
    let (status, one) = server.get("/v1/models/all-MiniLM-L6-v2").await;
    assert_eq!(status.as_u16(), 200);
    assert_eq!(one["id"], "all-MiniLM-L6-v2");
    let (s, b) = server.get("/v1/models/gpt-5").await;
    assert_error(
        s,
        &b,
        404,
        "model_not_found",
        "invalid_request_error",
        Some("model"),
        "gpt-5",
    );
}

#[tokio::test]
async fn the_official_openai_python_client_works_unchanged() {
    let server = Server::start().await;
    let script = r#"
import base64, os, struct, sys
from openai import OpenAI
c = OpenAI(base_url=os.environ["BASE"] + "/v1", api_key="unused")
r = c.embeddings.create(model="all-MiniLM-L6-v2", input=["hello world", "goodbye"])
assert len(r.data) == 2 and len(r.data[0].embedding) == 384, r
assert r.usage.prompt_tokens > 0
# The SDK asks for base64 by default when numpy is present and decodes it; ask explicitly too.
r2 = c.embeddings.create(model="all-MiniLM-L6-v2", input="hello world", encoding_format="float")
assert abs(sum(a * b for a, b in zip(r.data[0].embedding, r2.data[0].embedding)) - 1.0) < 1e-4
models = [m.id for m in c.models.list()]
assert "all-MiniLM-L6-v2" in models, models
f = c.files.create(file=("note.txt", b"openai client upload"), purpose="assistants")
assert f.filename == "note.txt" and f.bytes == 20, f
assert c.files.retrieve(f.id).id == f.id
assert c.files.content(f.id).read() == b"openai client upload"
assert c.files.delete(f.id).deleted
print("ok")
"#;
    crate::common::run_openai_python(&server, &["-c".as_ref(), script.as_ref()], &[]).await;
}

/// A large `/v1/embeddings` request does not hold the embedder: it is answered in slices taken in turn
/// with other requests, so a search sent while it runs (whose query needs the embedder too) is answered
/// before it, and the large request's vectors are the same as when it runs alone.
#[tokio::test]
async fn a_large_embeddings_request_does_not_hold_up_a_search() {
    let server = Server::start().await;
    let file = server
        .upload_and_wait(
            "pears.txt",
            b"The inventory holds seven pears and two apples.".to_vec(),
        )
        .await;
    assert_eq!(file["status"], "ready", "{file}");
    let sentence = "The quick brown fox jumps over the lazy dog near the river bank at dawn. ";
    let inputs: Vec<String> = (0..240)
        .map(|i| format!("{i} {}", sentence.repeat(12)))
        .collect();
    let big = json!({"model": "all-MiniLM-L6-v2", "input": inputs});
    let started = std::time::Instant::now();
    let big_request = {
        let server = &server;
        let big = big.clone();
        async move {
            let (status, body, _) = embed(server, big).await;
            (status, body, started.elapsed())
        }
    };
    let search = async {
        // Sent once the large request is being embedded.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let (status, body) = server
            .post_json(
                "/api/v1/search",
                &json!({"query": "how many pears", "top_k": 1}),
            )
            .await;
        (status, body, started.elapsed())
    };
    let ((big_status, big_body, big_done), (search_status, search_body, search_done)) =
        tokio::join!(big_request, search);
    assert_eq!(big_status, 200, "{big_body}");
    assert_eq!(search_status, 200, "{search_body}");
    assert_eq!(big_body["data"].as_array().map(Vec::len), Some(240));
    assert!(
        search_done < big_done,
        "the search ({search_done:?}) waited for the whole large request ({big_done:?})"
    );
    eprintln!(
        "embedding fairness: search answered at {search_done:?}, large request at {big_done:?}"
    );
    // Slicing changes nothing in the result: the last input alone gives the same vector.
    let (status, alone, _) = embed(
        &server,
        json!({"model": "all-MiniLM-L6-v2", "input": big["input"][239]}),
    )
    .await;
    assert_eq!(status, 200, "{alone}");
    let a = floats(&alone["data"][0]["embedding"]);
    let b = floats(&big_body["data"][239]["embedding"]);
    assert!(cosine(&a, &b) > 0.9999, "{}", cosine(&a, &b));
}
