//! Bad input gets a clear 4xx in the one error shape, and the server stays healthy.

use futures::StreamExt;
use reqwest::StatusCode;

use crate::common::{Server, assert_bad_request, assert_error, json_of};

#[tokio::test]
async fn oversized_upload_is_refused_with_413_before_it_is_read() {
    let server = Server::start_with(&[("MAX_FILE_SIZE", "100000")]).await;
    let (status, body) = server.upload("big.txt", vec![b'a'; 300_000]).await;
    assert_error(
        status,
        &body,
        413,
        "file_too_large",
        "invalid_request_error",
        None,
        "100000 bytes",
    );
    // Just over the limit but within multipart framing slack: refused by the upload itself.
    let (status, body) = server.upload("big.txt", vec![b'a'; 100_001]).await;
    assert_error(
        status,
        &body,
        413,
        "file_too_large",
        "invalid_request_error",
        Some("file"),
        "100000 bytes",
    );
    // Chunked (no Content-Length) bodies are cut off while streaming. The client sends at a pace, as a
    // real upload does: a client that writes everything at once races the server's close, and may get a
    // broken pipe on its next write instead of reading the 413 that was sent.
    let stream = futures::stream::iter(0..40).then(|_| async {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        Ok::<_, std::io::Error>(vec![b'b'; 10_000])
    });
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream))
        .file_name("chunked.txt");
    let resp = server
        .http
        .post(server.url("/api/v1/upload"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_error(
        status,
        &body,
        413,
        "file_too_large",
        "invalid_request_error",
        None,
        "MAX_FILE_SIZE",
    );
    let (status, list) = server.get("/api/v1/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "nothing refused is stored: {list}");
}

#[tokio::test]
async fn empty_unknown_and_mismatched_files_are_refused() {
    let server = Server::start().await;
    let (status, body) = server.upload("empty.txt", Vec::new()).await;
    assert_error(
        status,
        &body,
        422,
        "empty_file",
        "invalid_request_error",
        Some("file"),
        "the file is empty",
    );

    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".repeat(8);
    let (status, body) = server.upload("tool.exe", exe).await;
    assert_error(
        status,
        &body,
        415,
        "unsupported_file_type",
        "invalid_request_error",
        Some("file"),
        "unsupported file type",
    );

    let (status, body) = server
        .upload("noise.bin", vec![0, 1, 2, 3, 0, 0, 7, 9, 0, 200])
        .await;
    assert_error(
        status,
        &body,
        415,
        "unsupported_file_type",
        "invalid_request_error",
        Some("file"),
        "binary data",
    );

    let png = crate::common::fixture("image/text.png");
    let (status, body) = server.upload("report.pdf", png).await;
    assert_error(
        status,
        &body,
        415,
        "content_type_mismatch",
        "invalid_request_error",
        Some("file"),
        "image/png",
    );

    let (status, body) = server
        .upload("notes.docx", b"just some words".to_vec())
        .await;
    assert_error(
        status,
        &body,
        415,
        "content_type_mismatch",
        "invalid_request_error",
        Some("file"),
        ".docx",
    );

    let (status, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn malformed_requests_and_unknown_ids_use_the_error_shape() {
    let server = Server::start().await;
    let form = reqwest::multipart::Form::new().text("other", "x");
    let resp = server
        .http
        .post(server.url("/api/v1/upload"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_bad_request(status, &body, Some("file"), "`file` is required");

    for path in [
        "/api/v1/files/file-nope",
        "/api/v1/files/file-nope/text",
        "/api/v1/files/file-nope/content",
        "/v1/files/file-nope",
    ] {
        let (status, body) = server.get(path).await;
        assert_error(
            status,
            &body,
            404,
            "file_not_found",
            "not_found_error",
            Some("file_id"),
            "file-nope",
        );
    }
    let (status, body) = server.delete("/api/v1/files/file-nope").await;
    assert_error(
        status,
        &body,
        404,
        "file_not_found",
        "not_found_error",
        Some("file_id"),
        "file-nope",
    );

    let (status, body) = server.get("/api/v1/no-such-route").await;
    assert_error(
        status,
        &body,
        404,
        "not_found",
        "not_found_error",
        None,
        "no such route",
    );
    let resp = server
        .http
        .put(server.url("/health"))
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_error(
        status,
        &body,
        405,
        "method_not_allowed",
        "invalid_request_error",
        None,
        "not allowed",
    );

    let (status, body) = server.get("/api/v1/files?limit=0").await;
    assert_bad_request(status, &body, Some("limit"), "minimum(1");
    let (status, body) = server.get("/api/v1/files?limit=501").await;
    assert_bad_request(status, &body, Some("limit"), "maximum(500");
    let (status, body) = server.get("/api/v1/files?status=sleeping").await;
    assert_bad_request(status, &body, Some("status"), "status");

    // A missing or mistyped JSON field is named in `param`, in words (no framework type names).
    let hi = serde_json::json!([{"role": "user", "content": "Hi"}]);
    for (path, body, param, message) in [
        (
            "/v1/chat/completions",
            serde_json::json!({"model": "auto"}),
            Some("messages"),
            "`messages` is required",
        ),
        (
            "/v1/chat/completions",
            serde_json::json!({"messages": hi, "max_tokens": "ten"}),
            Some("max_tokens"),
            "must be a whole number",
        ),
        (
            "/api/v1/chat/multimodal",
            serde_json::json!({"messages": [{"content": "Hi"}], "file_ids": ["file-x"]}),
            Some("messages[0].role"),
            "`messages[0].role` is required",
        ),
        (
            "/v1/embeddings",
            serde_json::json!({"inputs": "typo"}),
            Some("input"),
            "`input` is required",
        ),
        (
            "/api/v1/search",
            serde_json::json!({"query": "pears", "top_k": "many"}),
            Some("top_k"),
            "whole number",
        ),
    ] {
        let (status, got) = server.post_json(path, &body).await;
        assert_bad_request(status, &got, param, message);
        let text = got["error"]["message"].as_str().unwrap_or_default();
        assert!(!text.contains("Expected input type"), "{path}: {got}");
    }
    let resp = server
        .http
        .post(server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    let (status, got) = json_of(resp).await;
    assert_bad_request(status, &got, None, "not valid JSON");

    // A client's request id is echoed in the header and the error body.
    let resp = server
        .http
        .get(server.url("/api/v1/files/file-x"))
        .header("X-Request-Id", "trace-me-42")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    let (_, body) = json_of(resp).await;
    assert_eq!(body["error"]["request_id"], "trace-me-42");
}

#[tokio::test]
async fn large_bodies_are_refused_before_they_are_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start().await;
    // Only the headers are sent: the 413 must come from the declared length alone.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "DELETE /api/v1/files/x HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut raw),
    )
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body.trim()).expect("json body");
    assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &json,
        413,
        "body_too_large",
        "invalid_request_error",
        None,
        "1048576 bytes",
    );
    let (status, _) = server.get("/health").await;
    assert_eq!(status, StatusCode::OK);
}

/// Sends `head` and then all of `body` before reading anything, as Python's urllib does, and returns the
/// status line and JSON body of the answer.
async fn send_all_then_read(addr: &str, head: &str, body: &[u8]) -> (String, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write head");
    if let Err(e) = tcp.write_all(body).await {
        panic!(
            "the server closed before the body was sent ({e}): the client never sees its answer"
        );
    }
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tcp.read_to_end(&mut raw),
    )
    .await
    .expect("the server closes the connection")
    .expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.lines().next().unwrap_or_default().to_owned();
    let json = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b.trim()).ok())
        .unwrap_or_else(|| panic!("no JSON body in {text}"));
    (status, json)
}

#[tokio::test]
async fn a_client_that_sends_the_whole_oversized_body_first_reads_the_413() {
    let server = Server::start_with(&[("MAX_FILE_SIZE", "1000000")]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let file = vec![b'a'; 6_000_000];
    let boundary = "docpipe-test-boundary";
    let mut multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    multipart.extend_from_slice(&file);
    multipart.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

    // Refused by its declared length, before the handler runs.
    let head = format!(
        "POST /api/v1/upload HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n",
        multipart.len()
    );
    let (status, body) = send_all_then_read(&addr, &head, &multipart).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &body,
        413,
        "file_too_large",
        "invalid_request_error",
        None,
        "1000000 bytes",
    );

    // Chunked: refused while the handler reads it.
    let mut chunked = Vec::new();
    for piece in multipart.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/files HTTP/1.1\r\nHost: {addr}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let (status, body) = send_all_then_read(&addr, &head, &chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &body,
        413,
        "file_too_large",
        "invalid_request_error",
        None,
        "MAX_FILE_SIZE",
    );

    // Python's urllib, the client of the report.
    let script = r#"
import json, os, sys, urllib.error, urllib.request
data = b"a" * 6_000_000
req = urllib.request.Request(os.environ["BASE"] + "/api/v1/upload", data=data,
                             headers={"Content-Type": "text/plain"})
try:
    urllib.request.urlopen(req)
    sys.exit("no error")
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["error"]["code"])
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script])
        .env("BASE", &server.base)
        .output()
        .await
        .expect("python3");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "413 file_too_large",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, list) = server.get("/api/v1/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 0, "nothing refused is stored: {list}");
}
