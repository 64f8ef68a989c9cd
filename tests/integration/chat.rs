//! Chat and completions through the real server with the real models (SmolLM2 unless a test loads Qwen).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, assert_error, json_of};

const SMOL: &str = "smollm2-135m-instruct";

fn chat_body(question: &str, max_tokens: u32) -> Value {
    json!({
        "model": SMOL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question}
        ],
        "temperature": 0,
        "max_tokens": max_tokens
    })
}

/// The `data:` payloads of a server-sent event stream, in order.
async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.expect("sse body");
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_owned())
        .collect()
}

fn content(body: &Value) -> String {
    body["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned()
}

#[tokio::test]
async fn chat_answers_in_openai_shape_deterministically_at_temperature_zero() {
    let server = Server::start().await;
    let body = chat_body("What is the capital of France?", 24);
    let (status, first) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["object"], "chat.completion");
    assert!(
        first["id"]
            .as_str()
            .is_some_and(|i| i.starts_with("chatcmpl-"))
    );
    assert_eq!(first["model"], SMOL);
    let choice = &first["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(!content(&first).trim().is_empty(), "{first}");
    assert!(
        choice["finish_reason"] == "stop" || choice["finish_reason"] == "length",
        "{first}"
    );
    let usage = &first["usage"];
    let prompt = usage["prompt_tokens"].as_u64().expect("prompt_tokens");
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert!(
        prompt > 15,
        "the rendered template has more tokens: {usage}"
    );
    assert!((1..=24).contains(&completion), "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));
    if choice["finish_reason"] == "length" {
        assert_eq!(completion, 24);
    }

    // Greedy decoding is deterministic, on either path.
    let (_, again) = server.post_json("/api/v1/chat/completions", &body).await;
    assert_eq!(content(&again), content(&first));
    // A seed makes sampling reproducible too.
    let mut seeded = body.clone();
    seeded["temperature"] = json!(0.9);
    seeded["seed"] = json!(42);
    let (_, a) = server.post_json("/v1/chat/completions", &seeded).await;
    let (_, b) = server.post_json("/v1/chat/completions", &seeded).await;
    assert_eq!(content(&a), content(&b));

    // The legacy completions endpoint continues raw text.
    let (status, c) = server.post_json("/v1/completions",
        &json!({"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 5, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["object"], "text_completion");
    assert!(
        c["choices"][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{c}"
    );
    assert_eq!(c["usage"]["completion_tokens"], 5, "{c}");
    assert_eq!(c["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn streaming_sends_chunks_then_usage_then_done() {
    let server = Server::start().await;
    let mut body = chat_body("Name three colours.", 20);
    let (_, whole) = server.post_json("/v1/chat/completions", &body).await;
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let resp = server
        .http
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/event-stream"))
    );
    let data = sse_data(resp).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    assert!(chunks.len() >= 4, "{chunks:?}");
    let id = &chunks[0]["id"];
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && &c["id"] == id)
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        content(&whole),
        "streamed text equals the whole answer"
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(
        finish["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );
    let usage_chunk = &chunks[chunks.len() - 1];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], whole["usage"]);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );
}

#[tokio::test]
async fn stop_sequences_cut_the_answer_before_them() {
    let server = Server::start().await;
    let body = chat_body("List the days of the week, one per line.", 40);
    let (_, whole) = server.post_json("/v1/chat/completions", &body).await;
    let text = content(&whole);
    // A stop string taken from the middle of the greedy answer: the stopped answer is everything before its
    // first occurrence.
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 12, "{text:?}");
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let expected = &text[..text.find(&stop).expect("stop occurs")];
    let mut stopped = body.clone();
    stopped["stop"] = json!(["@@never@@", stop]);
    let (status, cut) = server.post_json("/v1/chat/completions", &stopped).await;
    assert_eq!(status, 200, "{cut}");
    assert_eq!(content(&cut), expected, "stop {stop:?} in {text:?}");
    assert_eq!(cut["choices"][0]["finish_reason"], "stop");

    // The same in a stream: the stop string never reaches the client.
    stopped["stream"] = json!(true);
    let resp = server
        .http
        .post(server.url("/v1/chat/completions"))
        .json(&stopped)
        .send()
        .await
        .expect("stream");
    let data = sse_data(resp).await;
    let streamed: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(streamed, expected);
}

#[tokio::test]
async fn bad_requests_get_openai_errors_naming_the_parameter() {
    let server = Server::start().await;
    let (s, b) = server
        .post_json("/v1/chat/completions", &chat_body("hi", 9000))
        .await;
    assert_error(
        s,
        &b,
        400,
        "context_length_exceeded",
        "invalid_request_error",
        Some("messages"),
        "maximum context length is 8192 tokens",
    );
    let long = "lorem ipsum dolor ".repeat(4000);
    let (s, b) = server
        .post_json("/v1/chat/completions", &chat_body(&long, 16))
        .await;
    assert_error(
        s,
        &b,
        400,
        "context_length_exceeded",
        "invalid_request_error",
        Some("messages"),
        "8192",
    );
    let mut unknown = chat_body("hi", 4);
    unknown["model"] = json!("gpt-5");
    let (s, b) = server.post_json("/v1/chat/completions", &unknown).await;
    assert_error(
        s,
        &b,
        404,
        "model_not_found",
        "invalid_request_error",
        Some("model"),
        "gpt-5",
    );
    for (field, value, param) in [
        ("temperature", json!(3), "temperature"),
        ("top_p", json!(0), "top_p"),
        ("n", json!(2), "n"),
        ("presence_penalty", json!(-3), "presence_penalty"),
        ("stop", json!(["a", "b", "c", "d", "e"]), "stop"),
        ("max_tokens", json!(0), "max_tokens"),
    ] {
        let mut body = chat_body("hi", 4);
        body[field] = value;
        let (s, b) = server.post_json("/v1/chat/completions", &body).await;
        assert_bad_request(s, &b, Some(param), "");
    }
    let mut body = chat_body("hi", 4);
    body["messages"] = json!([{"role": "tool", "content": "x"}]);
    let (s, b) = server.post_json("/v1/chat/completions", &body).await;
    assert_bad_request(s, &b, Some("messages[0].role"), "tool");
    // Content parts are typed: an unknown part type, a text part without text, an image in plain chat.
    for (content, needle) in [
        (json!([{"type": "video", "url": "x"}]), ""),
        (json!([{"type": "text"}]), ""),
        (
            json!([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]),
            "/api/v1/chat/multimodal",
        ),
    ] {
        let mut body = chat_body("hi", 4);
        body["messages"] = json!([{"role": "user", "content": content}]);
        let (s, b) = server.post_json("/v1/chat/completions", &body).await;
        assert_bad_request(s, &b, Some("messages[0].content"), needle);
    }
    let mut body = chat_body("hi", 4);
    body["response_format"] = json!({"type": "yaml"});
    let (s, b) = server.post_json("/v1/chat/completions", &body).await;
    assert_bad_request(s, &b, Some("response_format.type"), "json_object");
    // Text parts are joined; a JSON format is accepted.
    let mut body = chat_body("hi", 2);
    body["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "Say hi."}]}]);
    body["response_format"] = json!({"type": "json_object"});
    let (s, b) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{b}");
    // The service is still healthy and answers.
    let (s, _) = server
        .post_json("/v1/chat/completions", &chat_body("hi", 2))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn concurrent_clients_are_all_served() {
    let server = Server::start().await;
    let questions = [
        "What is 1+1?",
        "Name a fruit.",
        "Say hello.",
        "What colour is the sky?",
    ];
    let answers = futures::future::join_all(questions.iter().map(|q| {
        let body = chat_body(q, 8);
        let server = &server;
        async move { server.post_json("/v1/chat/completions", &body).await }
    }))
    .await;
    for (s, b) in &answers {
        assert_eq!(*s, 200, "{b}");
        assert!(
            b["usage"]["completion_tokens"]
                .as_u64()
                .is_some_and(|n| n >= 1)
        );
    }
    // Each answer is the one its question gets alone (no cross-talk between requests).
    let (_, alone) = server
        .post_json("/v1/chat/completions", &chat_body(questions[2], 8))
        .await;
    assert_eq!(content(&answers[2].1), content(&alone));
}

/// A generation that runs for a long time: greedy counting goes on and on.
async fn start_long_stream(server: &Server, max_tokens: usize) -> reqwest::Response {
    let body = json!({
        "model": SMOL,
        "prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true
    });
    let mut resp = server
        .http
        .post(server.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.status(), 200);
    // Once a chunk has arrived the generation is running.
    resp.chunk().await.expect("chunk").expect("a first chunk");
    resp
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    // One generation at a time, one waiting: the rest of a burst is refused.
    let server =
        Server::start_with(&[("DOCPIPE_CHAT_QUEUE", "1"), ("DOCPIPE_CHAT_ACTIVE", "1")]).await;
    let running = start_long_stream(&server, 3000).await;
    // One more fits the queue; the others are refused at once.
    let (http, url) = (server.http.clone(), server.url("/v1/chat/completions"));
    let burst = tokio::spawn(futures::future::join_all((0..4).map(move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(url)
                .json(&chat_body("hi", 2))
                .send()
                .await
                .expect("post")
        }
    })));
    // The refusals come back at once; the queued request runs once the long generation is cancelled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(running);
    let burst = burst.await.expect("burst");
    let mut refused = 0;
    for resp in burst {
        if resp.status() == 503 {
            refused += 1;
            assert!(resp.headers().contains_key("retry-after"));
            let (s, b) = json_of(resp).await;
            assert_error(s, &b, 503, "overloaded", "server_error", None, "busy");
        } else {
            assert_eq!(resp.status(), 200);
        }
    }
    assert!(
        refused >= 3,
        "a queue of 1 holds one request: {refused} refused"
    );
    // The service recovers.
    let (s, _) = server
        .post_json("/v1/chat/completions", &chat_body("hi", 2))
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn a_short_request_is_answered_while_a_long_generation_runs() {
    let server = Server::start().await;
    let mut long = start_long_stream(&server, 3000).await;
    // The engine interleaves the two: the short answer does not wait for 3,000 tokens of counting.
    let started = Instant::now();
    let (s, b) = server
        .post_json("/v1/chat/completions", &chat_body("hi", 4))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["usage"]["completion_tokens"], 4, "{b}");
    let short_took = started.elapsed();
    // The long generation is still streaming afterwards.
    let chunk = long
        .chunk()
        .await
        .expect("chunk")
        .expect("the long stream goes on");
    let text = String::from_utf8_lossy(&chunk);
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(
        short_took < Duration::from_secs(30),
        "the short request waited {short_took:?}"
    );
}

#[tokio::test]
async fn a_request_beyond_the_kv_budget_waits_for_the_running_one() {
    // 1 MiB of KV cache per model: the long generation (prompt plus 400 tokens at 23 KB each) runs alone since
    // nothing else runs, and the short request, which would not fit beside it, waits until it is over.
    let server = Server::start_with(&[("DOCPIPE_CHAT_KV_MB", "1")]).await;
    let mut long = start_long_stream(&server, 400).await;
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        while let Some(chunk) = long.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        (Instant::now(), text)
    });
    let (s, b) = server
        .post_json("/v1/chat/completions", &chat_body("hi", 4))
        .await;
    let short_done = Instant::now();
    assert_eq!(s, 200, "{b}");
    let (long_done, text) = reader.await.expect("reader");
    assert!(text.contains("[DONE]"), "{text}");
    assert!(
        long_done <= short_done,
        "the short request was answered {:?} before the long generation ended",
        long_done - short_done
    );
    let log = std::fs::read_to_string(server.log()).unwrap_or_default();
    assert!(log.contains("KV budget full"), "{log}");
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_its_generation() {
    let server = Server::start().await;
    // Hang up after the first chunk of a long generation.
    drop(start_long_stream(&server, 3000).await);
    // The engine notices and is free again at once: a short request is answered quickly.
    let started = Instant::now();
    let (s, b) = server
        .post_json("/v1/chat/completions", &chat_body("hi", 4))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let log = std::fs::read_to_string(server.log()).unwrap_or_default();
    assert!(log.contains("generation cancelled"), "{log}");
}

#[tokio::test]
async fn models_list_chat_and_embedding_models_with_their_windows() {
    let server = Server::start().await;
    let (s, list) = server.get("/v1/models").await;
    assert_eq!(s, 200);
    let data = list["data"].as_array().expect("data");
    let smol = data
        .iter()
        .find(|m| m["id"] == SMOL)
        .expect("smollm2 listed");
    assert_eq!(smol["kind"], "chat");
    assert_eq!(smol["context_window"], 8192);
    assert_eq!(smol["owned_by"], "docpipe");
    assert!(data.iter().any(|m| m["kind"] == "embedding"));
    let (s, one) = server.get("/v1/models/smollm2").await;
    assert_eq!(s, 200);
    assert_eq!(one["id"], SMOL);
}

#[tokio::test]
async fn qwen_answers_from_the_given_text() {
    let server = Server::start_with(&[("DOCPIPE_CHAT_MODELS", "qwen2.5-coder")]).await;
    let (s, one) = server.get("/v1/models/qwen2.5-coder-0.5b-instruct").await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["context_window"], 32768);
    let body = json!({
        "model": "qwen2.5-coder-0.5b-instruct",
        "messages": [
            {"role": "system", "content": "Answer using only the given text."},
            {"role": "user", "content": "Text: The invoice number is 83172 and it is due in March.\n\nQuestion: What is the invoice number?"}
        ],
        "temperature": 0,
        "max_tokens": 24
    });
    let (s, b) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(s, 200, "{b}");
    assert!(content(&b).contains("83172"), "{b}");
}

#[tokio::test]
async fn the_official_openai_client_chats_streams_lists_models_and_embeds() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/openai_chat.py");
    let server = Server::start().await;
    crate::common::run_openai_python(&server, &[script.as_os_str()], &[]).await;
}
