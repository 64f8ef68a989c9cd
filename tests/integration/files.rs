//! The file lifecycle through the API: upload, status, list, text, content, events, dedupe, delete,
//! and the OpenAI Files API over the same store.

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Server, assert_bad_request, assert_error, fixture, json_of};

#[tokio::test]
async fn upload_answers_at_once_then_processes_in_the_background() {
    let server = Server::start().await;
    let bytes = b"# Title\n\nFirst paragraph.\n\n## Part\n\nSecond paragraph.\n".to_vec();
    let (status, body) = server.upload("notes.md", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["filename"], "notes.md");
    assert_eq!(body["content_type"], "text/markdown");
    assert_eq!(body["format"], "markdown");
    assert_eq!(body["category"], "text");
    assert_eq!(body["size"], bytes.len());
    assert_eq!(body["sha256"].as_str().map(str::len), Some(64));
    assert!(
        body["status"] == "queued" || body["status"] == "processing" || body["status"] == "ready",
        "{body}"
    );
    let id = body["id"].as_str().expect("id").to_owned();

    let done = server.wait_done(&id).await;
    assert_eq!(done["status"], "ready", "{done}");

    let (status, text) = server.get(&format!("/api/v1/files/{id}/text")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text["text"]
            .as_str()
            .is_some_and(|t| t.contains("Second paragraph.")),
        "{text}"
    );
    let segs = text["segments"].as_array().expect("segments");
    let second = segs
        .iter()
        .find(|s| s["text"] == "Second paragraph.")
        .expect("segment");
    assert_eq!(second["location"]["type"], "section", "{second}");
    assert_eq!(
        second["location"]["heading_path"],
        serde_json::json!(["Title", "Part"]),
        "{second}"
    );

    let resp = server
        .http
        .get(server.url(&format!("/api/v1/files/{id}/content")))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/markdown");
    assert_eq!(resp.bytes().await.expect("bytes").to_vec(), bytes);
}

#[tokio::test]
async fn listing_paginates_and_filters() {
    let server = Server::start().await;
    for i in 0..5 {
        server
            .upload_and_wait(
                &format!("n{i}.txt"),
                format!("note number {i}").into_bytes(),
            )
            .await;
    }
    server
        .upload_and_wait("t.csv", b"a,b\n1,2\n".to_vec())
        .await;
    server
        .upload_and_wait("broken.xlsx", b"PK\x03\x04 not really a workbook".to_vec())
        .await;

    let (_, page) = server.get("/api/v1/files?limit=2").await;
    assert_eq!(page["total"], 7);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["has_more"], true);
    let (_, last) = server.get("/api/v1/files?limit=5&offset=5").await;
    assert_eq!(last["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(last["has_more"], false);
    let (_, texts) = server.get("/api/v1/files?category=text").await;
    assert_eq!(texts["total"], 5);
    let (_, sheets) = server
        .get("/api/v1/files?category=sheet&status=ready")
        .await;
    assert_eq!(sheets["total"], 1, "{sheets}");
    let (_, failed) = server.get("/api/v1/files?status=failed").await;
    assert_eq!(failed["total"], 1, "{failed}");
    let f = &failed["data"][0];
    assert_eq!(f["filename"], "broken.xlsx");
    assert_eq!(f["error"]["code"], "corrupt_file", "{f}");

    // A failed file has no text: 409 with the reason.
    let (status, body) = server
        .get(&format!(
            "/api/v1/files/{}/text",
            f["id"].as_str().expect("id")
        ))
        .await;
    assert_error(
        status,
        &body,
        409,
        "file_not_ready",
        "invalid_request_error",
        Some("file_id"),
        "failed",
    );
}

#[tokio::test]
async fn identical_content_is_stored_and_extracted_once() {
    let server = Server::start().await;
    let bytes = fixture("image/text.png");
    let first = server.upload_and_wait("a.png", bytes.clone()).await;
    assert_eq!(first["status"], "ready", "{first}");
    assert_eq!(first["deduplicated"], false);
    let second = server.upload_and_wait("copy.png", bytes.clone()).await;
    assert_eq!(second["status"], "ready", "{second}");
    assert_eq!(second["deduplicated"], true);
    assert_eq!(second["sha256"], first["sha256"]);
    assert_ne!(second["id"], first["id"]);
    let id1 = first["id"].as_str().expect("id");
    let id2 = second["id"].as_str().expect("id");
    let (_, t1) = server.get(&format!("/api/v1/files/{id1}/text")).await;
    let (_, t2) = server.get(&format!("/api/v1/files/{id2}/text")).await;
    assert_eq!(t1["segments"], t2["segments"]);
    let blobs = || walk_files(&server.data_dir.join("blobs"));
    assert_eq!(blobs(), 1, "one stored copy");

    // Deleting one keeps the shared blob for the other; deleting both removes it.
    let (status, del) = server.delete(&format!("/api/v1/files/{id1}")).await;
    assert_eq!(status, StatusCode::OK, "{del}");
    assert_eq!(
        del,
        serde_json::json!({"id": id1, "object": "file", "deleted": true})
    );
    let resp = server
        .http
        .get(server.url(&format!("/api/v1/files/{id2}/content")))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.bytes().await.expect("bytes").to_vec(), bytes);
    let (status, _) = server.get(&format!("/api/v1/files/{id2}/text")).await;
    assert_eq!(status, StatusCode::OK);
    server.delete(&format!("/api/v1/files/{id2}")).await;
    assert_eq!(blobs(), 0, "the last delete removes the blob");
    let (status, _) = server.get(&format!("/api/v1/files/{id2}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn walk_files(dir: &std::path::Path) -> usize {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count()
}

#[tokio::test]
async fn events_stream_progress_until_done() {
    let server = Server::start().await;
    let (_, body) = server.upload("scan.pdf", fixture("pdf/scanned.pdf")).await;
    let id = body["id"].as_str().expect("id").to_owned();
    let resp = server
        .http
        .get(server.url(&format!("/api/v1/files/{id}/events")))
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/event-stream"))
    );
    let mut stream = resp.bytes_stream();
    let mut raw = String::new();
    while let Some(chunk) = stream.next().await {
        raw.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
    }
    let events: Vec<Value> = raw
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect();
    assert!(!events.is_empty(), "{raw}");
    assert!(events.iter().all(|e| e["file_id"] == id.as_str()));
    let last = events.last().expect("last");
    assert_eq!(
        last["status"], "ready",
        "the stream ends with the terminal state: {raw}"
    );
    assert!(
        events.iter().any(|e| e["progress"]["unit"] == "pages" && e["progress"]["total"].as_u64() >= Some(1)),
        "progress in pages is reported: {raw}"
    );
}

#[tokio::test]
async fn openai_files_api_shares_the_store() {
    let server = Server::start().await;
    let part = reqwest::multipart::Part::bytes(b"openai file body".to_vec()).file_name("data.txt");
    let form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("purpose", "assistants");
    let resp = server
        .http
        .post(server.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    let (status, created) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["object"], "file");
    assert_eq!(created["bytes"], 16);
    assert_eq!(created["filename"], "data.txt");
    assert_eq!(created["purpose"], "assistants");
    assert!(
        created["created_at"]
            .as_i64()
            .is_some_and(|t| t > 1_700_000_000)
    );
    let id = created["id"].as_str().expect("id").to_owned();
    server.wait_done(&id).await;
    let (_, got) = server.get(&format!("/v1/files/{id}")).await;
    assert_eq!(got["status"], "processed", "{got}");
    let (_, list) = server.get("/v1/files?purpose=assistants").await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    // The pipeline API sees the same file, with its purpose.
    let (_, record) = server.get(&format!("/api/v1/files/{id}")).await;
    assert_eq!(record["purpose"], "assistants");
    let resp = server
        .http
        .get(server.url(&format!("/v1/files/{id}/content")))
        .send()
        .await
        .expect("get");
    assert_eq!(
        resp.bytes().await.expect("bytes").as_ref(),
        b"openai file body"
    );
    let (status, del) = server.delete(&format!("/v1/files/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(del["deleted"], true);
    // A missing purpose is a 400 naming the field.
    let part = reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt");
    let resp = server
        .http
        .post(server.url("/v1/files"))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_bad_request(status, &body, Some("purpose"), "purpose");
}

/// Uploads through the OpenAI Files API with a purpose; returns the id.
async fn openai_upload(server: &Server, name: &str, purpose: &str) -> String {
    let part = reqwest::multipart::Part::bytes(format!("{name} body").into_bytes())
        .file_name(name.to_owned());
    let form = reqwest::multipart::Form::new()
        .part("file", part)
        .text("purpose", purpose.to_owned());
    let resp = server
        .http
        .post(server.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .expect("send");
    let (status, body) = json_of(resp).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_str().expect("id").to_owned()
}

/// Follows `after` from the first page of `query` to the last; returns the ids in order and the pages.
async fn follow_pages(server: &Server, query: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages) = (Vec::new(), 0);
    let mut path = format!("/v1/files?{query}");
    loop {
        let (status, page) = server.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        assert!(pages <= 20, "pagination does not end: {page}");
        let data = page["data"].as_array().expect("data");
        ids.extend(
            data.iter()
                .map(|f| f["id"].as_str().expect("id").to_owned()),
        );
        if page["has_more"] != true {
            return (ids, pages);
        }
        let last = ids.last().expect("a page with has_more has files");
        path = format!("/v1/files?{query}&after={last}");
    }
}

#[tokio::test]
async fn openai_file_list_pages_with_after_and_filters_before_the_limit() {
    let server = Server::start().await;
    let mut assistants = Vec::new();
    for i in 0..3 {
        assistants.push(openai_upload(&server, &format!("a{i}.txt"), "assistants").await);
        server
            .upload(&format!("u{i}.txt"), format!("user file {i}").into_bytes())
            .await;
    }
    server.upload("u3.txt", b"user file 3".to_vec()).await;
    let (_, all) = server.get("/v1/files").await;
    let all_ids: Vec<String> = all["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|f| f["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(all_ids.len(), 7, "{all}");
    assert_eq!(all["has_more"], false);

    // `after` continues in the listing's order: every file once, newest first, and an end.
    let (paged, pages) = follow_pages(&server, "limit=2").await;
    assert_eq!(paged, all_ids);
    assert_eq!(pages, 4);

    // `purpose` filters before `limit`: the first page is full and says more follow.
    let (_, first) = server.get("/v1/files?purpose=assistants&limit=2").await;
    assert_eq!(first["data"].as_array().map(Vec::len), Some(2), "{first}");
    assert_eq!(first["has_more"], true, "{first}");
    let (paged, pages) = follow_pages(&server, "purpose=assistants&limit=2").await;
    assistants.reverse();
    assert_eq!(paged, assistants, "newest first");
    assert_eq!(pages, 2);
    // Files uploaded through the pipeline API have the purpose `user_data`.
    let (users, _) = follow_pages(&server, "purpose=user_data&limit=3").await;
    assert_eq!(users.len(), 4);
    let (_, none) = server.get("/v1/files?purpose=batch").await;
    assert_eq!(none["data"], serde_json::json!([]), "{none}");
    assert_eq!(none["has_more"], false);

    // The last file as cursor: an empty last page.
    let (_, end) = server.get(&format!("/v1/files?after={}", all_ids[6])).await;
    assert_eq!(end["data"], serde_json::json!([]), "{end}");
    assert_eq!(end["has_more"], false);
    // A cursor that names no file is refused, naming the parameter.
    let (status, body) = server.get("/v1/files?after=file-unknown").await;
    assert_bad_request(status, &body, Some("after"), "no file with id file-unknown");
}

#[tokio::test]
async fn ingest_cli_uploads_folders_and_reports_failures() {
    let server = Server::start().await;
    let dir = server.data_dir.with_extension("input");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("a.txt"), "alpha").expect("write");
    std::fs::write(dir.join("sub/b.md"), "# beta").expect("write");
    std::fs::write(dir.join("sub/bad.xlsx"), "PK\x03\x04 nope").expect("write");
    std::fs::write(dir.join("empty.txt"), "").expect("write");
    let out = tokio::process::Command::new(&*crate::common::BIN)
        .args(["ingest", "--server", &server.base])
        .arg(&dir)
        .output()
        .await
        .expect("run ingest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !out.status.success(),
        "failures give a non-zero exit: {stdout}"
    );
    assert!(stdout.contains("4 files: 2 ready, 2 failed"), "{stdout}");
    assert!(stdout.contains("empty.txt: empty_file"), "{stdout}");
    assert!(stdout.contains("bad.xlsx: corrupt_file"), "{stdout}");
    let (_, list) = server.get("/api/v1/files?status=ready").await;
    assert_eq!(list["total"], 2);
}

/// A page photographed or scanned sideways is read upright (Tesseract's orientation detection).
#[tokio::test]
async fn a_sideways_scan_is_read_upright() {
    let page = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("bench/qa/docs/image/everyshi-page1.png"),
    )
    .expect("the page");
    let mut sideways = std::io::Cursor::new(Vec::new());
    image::load_from_memory(&page)
        .expect("png")
        .rotate90()
        .write_to(&mut sideways, image::ImageFormat::Png)
        .expect("encode");
    let server = Server::start().await;
    let record = server
        .upload_and_wait("sideways.png", sideways.into_inner())
        .await;
    assert_eq!(record["status"], "ready", "{record}");
    let id = record["id"].as_str().expect("id");
    let (_, chunks) = server.get(&format!("/api/v1/files/{id}/chunks")).await;
    let text: String = chunks["data"]
        .as_array()
        .expect("chunks")
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect();
    for phrase in ["obsolete everyshi package", "backwards compatibility"] {
        assert!(text.contains(phrase), "{phrase:?} not in {text}");
    }
}

/// Concurrent uploads of one content: one is processed, the others wait for it and share its work, and all
/// end in the same state.
#[tokio::test]
async fn concurrent_uploads_of_one_file_are_processed_once() {
    let server = Server::start().await;
    let text = fixture("text/guide.md").repeat(40);
    let names: Vec<String> = (0..10).map(|i| format!("copy-{i}.md")).collect();
    let uploads =
        futures::future::join_all(names.iter().map(|n| server.upload(n, text.clone()))).await;
    let ids: Vec<String> = uploads
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["id"].as_str().expect("id").to_owned()
        })
        .collect();
    let fresh = uploads
        .iter()
        .filter(|(_, b)| b["deduplicated"] == false)
        .count();
    assert_eq!(fresh, 1, "exactly one upload does the work: {uploads:?}");
    let mut chunk_texts = Vec::new();
    for id in &ids {
        let record = server.wait_done(id).await;
        assert_eq!(record["status"], "ready", "{record}");
        let (_, chunks) = server.get(&format!("/api/v1/files/{id}/chunks")).await;
        let texts: Vec<String> = chunks["data"]
            .as_array()
            .expect("chunks")
            .iter()
            .filter_map(|c| c["text"].as_str().map(str::to_owned))
            .collect();
        assert!(!texts.is_empty(), "{id} has no chunks");
        chunk_texts.push(texts);
    }
    assert!(chunk_texts.windows(2).all(|w| w[0] == w[1]));
}
