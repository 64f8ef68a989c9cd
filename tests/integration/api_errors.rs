//! Bad input gets a clear 4xx in the one error shape, and the server stays healthy.

use reqwest::StatusCode;

use crate::common::{Server, assert_error, json_of};

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
    // Chunked (no Content-Length) bodies are cut off while streaming.
    let stream =
        futures::stream::iter((0..40).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 10_000])));
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
    assert_error(
        status,
        &body,
        400,
        "invalid_request",
        "invalid_request_error",
        None,
        "`file` is required",
    );

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
    assert_error(
        status,
        &body,
        400,
        "invalid_request",
        "invalid_request_error",
        Some("limit"),
        "between 1 and 500",
    );
    let (status, body) = server.get("/api/v1/files?status=sleeping").await;
    assert_error(
        status,
        &body,
        400,
        "invalid_request",
        "invalid_request_error",
        None,
        "status",
    );

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
async fn large_json_bodies_are_refused() {
    let server = Server::start().await;
    let resp = server
        .http
        .post(server.url("/v1/files"))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    // /v1/files is an upload route, so the file limit applies; a 2 MiB non-multipart body is a bad request.
    assert_eq!(status.as_u16(), 400, "{body}");
    let resp = server
        .http
        .delete(server.url("/api/v1/files/x"))
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_error(
        status,
        &body,
        413,
        "body_too_large",
        "invalid_request_error",
        None,
        "1048576 bytes",
    );
}
