//! Chat with files through the real server and the real chat models: upload, ask, get an answer with
//! numbered sources that point at the chunk holding the fact; the router picks different tiers for
//! trivial and complex requests; a remote tier that is down falls back to a second docpipe server.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, fixture};
use crate::router::router_config;

/// The shipped tiers with these `[grounding]` settings.
fn with_grounding(settings: &str) -> String {
    let shipped = include_str!("../../pipelines/router.toml");
    let tiers = shipped.split("[grounding]").next().expect("tiers");
    format!("{tiers}[grounding]\n{settings}")
}

/// The shipped tiers with a small grounding budget, so retrieval (not whole files) picks the sources.
fn small_budget_config() -> String {
    with_grounding(
        "min_context_tokens = 200\nmax_context_tokens = 200\nmax_sources = 3\nwhole_file_tokens = 0\n",
    )
}

/// Uploads the three fixtures; only the PDF knows how many pears there are.
async fn upload_fixtures(server: &Server) -> Vec<String> {
    let mut ids = Vec::new();
    for (name, path) in [
        ("report.pdf", "pdf/text-3page.pdf"),
        ("report.docx", "office/report.docx"),
        ("people.csv", "sheet/comma.csv"),
    ] {
        let f = server.upload_and_wait(name, fixture(path)).await;
        assert_eq!(f["status"], "ready", "{f}");
        ids.push(f["id"].as_str().expect("id").to_owned());
    }
    ids
}

/// Every `[n]` in the answer is a source number, and sources are numbered 1..=len.
fn assert_numbering(answer: &str, sources: &[Value]) {
    let numbers: Vec<u64> = sources
        .iter()
        .map(|s| s["number"].as_u64().expect("number"))
        .collect();
    assert_eq!(numbers, (1..=sources.len() as u64).collect::<Vec<_>>());
    let mut cited = BTreeSet::new();
    let mut rest = answer;
    while let Some(i) = rest.find('[') {
        rest = &rest[i + 1..];
        if let Some(j) = rest.find(']')
            && let Ok(n) = rest[..j].trim().parse::<u64>()
        {
            cited.insert(n);
        }
    }
    for n in &cited {
        assert!(
            numbers.contains(n),
            "answer cites [{n}] but sources are {numbers:?}: {answer}"
        );
    }
    for s in sources {
        let n = s["number"].as_u64().expect("number");
        assert_eq!(s["cited"], json!(cited.contains(&n)), "{s} in {answer}");
    }
}

fn assert_pear_source(sources: &[Value], pdf: &str) {
    let hit = sources.iter().find(|s| {
        s["file_id"] == pdf && s["snippet"].as_str().is_some_and(|t| t.contains("Pears"))
    });
    let hit = hit.unwrap_or_else(|| panic!("no source holds the pears row: {sources:?}"));
    assert_eq!(hit["filename"], "report.pdf");
    assert_eq!(hit["location"]["type"], "pages", "{hit}");
    assert!(hit["chunk_id"].as_str().is_some_and(|c| c.starts_with(pdf)));
    assert!(
        hit["location_label"]
            .as_str()
            .is_some_and(|l| l.starts_with("page"))
    );
}

#[tokio::test]
async fn upload_then_chat_cites_the_chunk_with_the_fact() {
    let config = router_config(&small_budget_config());
    let server =
        Server::start_with(&[("DOCPIPE_ROUTER_CONFIG", config.to_str().expect("utf-8"))]).await;
    // Without `file_ids` the question goes over all the caller's files: none yet is a 400 naming the field.
    let everything = json!({
        "messages": [{"role": "user", "content": "How many pears are in the inventory table?"}],
        "max_tokens": 40
    });
    let (status, body) = server
        .post_json("/api/v1/chat/multimodal", &everything)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "file_ids", "{body}");
    let ids = upload_fixtures(&server).await;
    // ... and once files are ready, the sources come from the one that holds the fact.
    let (status, body) = server
        .post_json("/api/v1/chat/multimodal", &everything)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_pear_source(body["sources"].as_array().expect("sources"), &ids[0]);
    let question = json!({
        "messages": [{"role": "user", "content": "How many pears are in the inventory table?"}],
        "file_ids": ids,
        "max_tokens": 40
    });
    let (status, body) = server.post_json("/api/v1/chat/multimodal", &question).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["object"], "chat.completion");
    let answer = body["choices"][0]["message"]["content"]
        .as_str()
        .expect("answer");
    assert!(!answer.trim().is_empty(), "{body}");
    let sources = body["sources"].as_array().expect("sources");
    assert!(!sources.is_empty() && sources.len() <= 3, "{body}");
    assert_pear_source(sources, &ids[0]);
    assert_numbering(answer, sources);
    assert_ne!(body["model"], "auto");
    assert!(body["routing"]["tier"].as_str().is_some(), "{body}");
    assert!(
        body["usage"]["prompt_tokens"]
            .as_u64()
            .is_some_and(|t| t > 50),
        "{body}"
    );

    // Streamed: chunks, then the last one carries the sources, then [DONE].
    let mut streamed = question.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let (chunks, done) = server
        .post_sse("/api/v1/chat/multimodal-audio", &streamed)
        .await;
    assert!(done, "{chunks:?}");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    let last = chunks
        .iter()
        .find(|c| c["sources"].is_array())
        .expect("a chunk with sources");
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
    assert!(chunks.iter().all(|c| c["model"] != "auto"), "{chunks:?}");
    let usage = chunks.last().expect("usage chunk");
    assert!(
        usage["usage"]["completion_tokens"].as_u64().is_some(),
        "{usage}"
    );
    let sources = last["sources"].as_array().expect("sources");
    assert_pear_source(sources, &ids[0]);
    assert_numbering(&content, sources);
    let _ = std::fs::remove_file(config);
}

#[tokio::test]
async fn trivial_and_complex_requests_are_answered_by_different_tiers() {
    // Both shipped tiers' models (the harness loads only SmolLM2 by default).
    let server = Server::start_with(&[("DOCPIPE_CHAT_MODELS", "smollm2,qwen2.5-coder")]).await;
    let f = server
        .upload_and_wait(
            "notes.txt",
            b"The build uses cargo. Tests run with --release.".to_vec(),
        )
        .await;
    let id = f["id"].as_str().expect("id");
    let ask = |text: &str| json!({"messages": [{"role": "user", "content": text}], "file_ids": [id], "max_tokens": 8});
    let (status, easy) = server
        .post_json("/api/v1/chat/multimodal", &ask("Hi!"))
        .await;
    assert_eq!(status, StatusCode::OK, "{easy}");
    let (status, hard) = server.post_json("/api/v1/chat/multimodal",
        &ask("Compare the build and test steps, analyse the trade-offs and write a shell script for them."),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{hard}");
    assert_eq!(easy["routing"]["tier"], "fast", "{easy}");
    assert_eq!(hard["routing"]["tier"], "strong", "{hard}");
    assert_ne!(easy["model"], hard["model"]);
    assert!(
        hard["routing"]["complexity_score"].as_f64() > easy["routing"]["complexity_score"].as_f64()
    );
    assert!(
        hard["routing"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("strong"))
    );

    // `auto` on the OpenAI endpoint, streamed: every chunk names the model that answers, never `auto`.
    let text = server
        .http
        .post(server.url("/v1/chat/completions"))
        .json(
            &json!({"model": "auto", "messages": [{"role": "user", "content": "Hi!"}],
                      "max_tokens": 4, "stream": true}),
        )
        .send()
        .await
        .expect("stream")
        .text()
        .await
        .expect("body");
    let models: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| c["model"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        [easy["model"].as_str().expect("model").to_owned()],
        "{text}"
    );
    let (status, whole) = server.post_json("/v1/chat/completions",
        &json!({"model": "auto", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 4}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["model"], easy["model"]);
}

#[tokio::test]
async fn a_remote_tier_that_is_down_falls_back_to_the_next() {
    // The peer: another docpipe server, reached over its OpenAI-compatible API.
    let peer = Server::start().await;
    let (_, models) = peer.get("/v1/models").await;
    let fast_model = models["data"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .find(|id| id.to_lowercase().contains("smollm"))
        .expect("the fast model is listed")
        .to_owned();
    // Nothing listens on a port we just freed.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = router_config(&format!(
        r#"
[[tiers]]
name = "down"
kind = "remote"
model = "any"
base_url = "http://127.0.0.1:{down}/v1"
context_window = 8192
timeout_secs = 5
min_score = 0.0
max_score = 1.0

[[tiers]]
name = "peer"
kind = "remote"
model = "{fast_model}"
base_url = "{}/v1"
api_key_env = "DOCPIPE_TEST_PEER_KEY"
context_window = 2048
timeout_secs = 120
min_score = 0.0
max_score = 1.0
"#,
        peer.base
    ));
    let server = Server::start_with(&[
        ("DOCPIPE_ROUTER_CONFIG", config.to_str().expect("utf-8")),
        ("DOCPIPE_TEST_PEER_KEY", "test-key"),
        // Only the remote tiers answer here.
        ("DOCPIPE_CHAT_MODELS", "none"),
    ])
    .await;
    let f = server
        .upload_and_wait(
            "pets.txt",
            b"Our cat is called Miso and she is nine years old.".to_vec(),
        )
        .await;
    let body = json!({
        "messages": [{"role": "user", "content": "What is the cat called?"}],
        "file_ids": [f["id"]],
        "max_tokens": 16
    });
    let (status, resp) = server.post_json("/api/v1/chat/multimodal", &body).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["routing"]["tier"], "peer", "{resp}");
    assert_eq!(resp["routing"]["fallbacks"][0]["tier"], "down", "{resp}");
    assert_eq!(
        resp["model"].as_str(),
        Some(fast_model.as_str()),
        "the peer's model answered: {resp}"
    );
    assert!(
        resp["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(resp["sources"][0]["filename"], "pets.txt");

    // Streaming through the remote tier works too.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = server
        .http
        .post(server.url("/api/v1/chat/multimodal"))
        .json(&streamed)
        .send()
        .await
        .expect("stream")
        .text()
        .await
        .expect("body");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(text.contains("\"sources\""), "{text}");
    let _ = std::fs::remove_file(config);
}

/// A manual of three chunks that do not fit a 512-token budget whole: the fact is in the one search ranks
/// last, and it still reaches the sources, as an excerpt beside the best hit given whole.
#[tokio::test]
async fn a_fact_in_a_lower_ranked_chunk_reaches_the_sources_as_an_excerpt() {
    let config = router_config(&with_grounding(
        "min_context_tokens = 512\nmax_context_tokens = 512\nwhole_file_tokens = 0\n",
    ));
    let server =
        Server::start_with(&[("DOCPIPE_ROUTER_CONFIG", config.to_str().expect("utf-8"))]).await;
    // The anysize package's manual (CTAN, from Debian's texlive-latex-extra; bench/qa/PROVENANCE.md).
    let manual = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/qa/docs/pdf/anysize.pdf"),
    )
    .expect("anysize.pdf");
    let f = server.upload_and_wait("anysize.pdf", manual).await;
    assert_eq!(f["status"], "ready", "{f}");
    let id = f["id"].as_str().expect("id");
    let (_, chunks) = server
        .get(&format!("/api/v1/files/{id}/chunks?limit=100"))
        .await;
    let chunks = chunks["data"].as_array().expect("chunks");
    assert!(chunks.len() >= 3, "{chunks:?}");
    let holder = chunks
        .iter()
        .find(|c| {
            c["text"]
                .as_str()
                .is_some_and(|t| t.contains("left 3,0 cm"))
        })
        .expect("a chunk holds the default margins");
    let question = json!({
        "messages": [{"role": "user", "content": "What is the default left margin with anysize?"}],
        "file_ids": [id],
        "max_tokens": 40
    });
    let (status, body) = server.post_json("/api/v1/chat/multimodal", &question).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sources = body["sources"].as_array().expect("sources");
    assert!(
        sources.iter().any(|s| s["chunk_id"] == holder["chunk_id"]),
        "the chunk with the margins is not a source: {sources:?}"
    );
    assert!(
        body["usage"]["prompt_tokens"]
            .as_u64()
            .is_some_and(|t| t <= 512 + 300),
        "the budget held: {body}"
    );
}
