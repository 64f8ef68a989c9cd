//! Search through the real server: files become searchable by keywords and meaning, filters apply,
//! deletes leave no trace, and the indexes survive a crash.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{Server, assert_bad_request, fixture, json_of};

const ROCKETS: &str = "Rocket engines burn liquid hydrogen and liquid oxygen to produce thrust. \
    The combustion chamber must withstand extreme temperatures during launch.";
const BAKING: &str = "To bake sourdough bread, feed the starter the night before, mix flour, water and salt, \
    then let the dough rise slowly before shaping the loaf and baking it in a hot oven.";
const GARDEN: &str = "Tomatoes need full sun, regular watering and well-drained soil. \
    Prune the side shoots so the plant puts its energy into the fruit.";

async fn search(server: &Server, body: Value) -> (StatusCode, Value) {
    let resp = server
        .http
        .post(server.url("/api/v1/search"))
        .json(&body)
        .send()
        .await
        .expect("search");
    json_of(resp).await
}

async fn seeded() -> (Server, Vec<String>) {
    let server = Server::start().await;
    let mut ids = Vec::new();
    for (name, text) in [
        ("rockets.txt", ROCKETS),
        ("baking.md", BAKING),
        ("garden.txt", GARDEN),
    ] {
        let r = server.upload_and_wait(name, text.as_bytes().to_vec()).await;
        assert_eq!(r["status"], "ready", "{r}");
        ids.push(r["id"].as_str().expect("id").to_owned());
    }
    (server, ids)
}

fn top_file(body: &Value) -> &str {
    body["results"][0]["file_id"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn files_are_found_by_keywords_meaning_and_both() {
    let (server, ids) = seeded().await;
    let (status, bm25) = search(
        &server,
        json!({"query": "sourdough starter", "mode": "bm25"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{bm25}");
    assert_eq!(top_file(&bm25), ids[1], "{bm25}");
    let hit = &bm25["results"][0];
    assert!(
        hit["snippet"].as_str().is_some_and(|s| s.contains("<b>")),
        "{hit}"
    );
    assert!(
        hit["scores"]["bm25"].as_f64().is_some_and(|s| s > 0.0),
        "{hit}"
    );
    assert_eq!(hit["filename"], "baking.md");
    assert_eq!(hit["location"]["type"], "section", "{hit}");
    assert!(
        hit["text"]
            .as_str()
            .is_some_and(|t| t.contains("sourdough"))
    );

    // No shared keyword: only meaning can find it.
    let (_, vector) = search(
        &server,
        json!({"query": "spacecraft propulsion fuel", "mode": "vector", "top_k": 1}),
    )
    .await;
    assert_eq!(top_file(&vector), ids[0], "{vector}");
    assert_eq!(vector["count"], 1);
    assert!(
        vector["results"][0]["scores"]["vector"]
            .as_f64()
            .is_some_and(|s| s > 0.2),
        "{vector}"
    );

    let (_, hybrid) = search(&server, json!({"query": "how do I grow tomato plants"})).await;
    assert_eq!(hybrid["mode"], "hybrid");
    assert_eq!(top_file(&hybrid), ids[2], "{hybrid}");

    // A raw query vector works too: the embedding of the rockets text finds itself.
    let resp = server
        .http
        .post(server.url("/v1/embeddings"))
        .json(&json!({"input": ROCKETS, "model": "all-MiniLM-L6-v2"}))
        .send()
        .await
        .expect("embed");
    let (_, emb) = json_of(resp).await;
    let (_, by_vec) = search(
        &server,
        json!({"query_vector": emb["data"][0]["embedding"], "mode": "vector"}),
    )
    .await;
    assert_eq!(top_file(&by_vec), ids[0], "{by_vec}");
    assert!(
        by_vec["results"][0]["scores"]["vector"]
            .as_f64()
            .is_some_and(|s| s > 0.99),
        "{by_vec}"
    );

    // A threshold above every similarity returns nothing.
    let (_, none) = search(
        &server,
        json!({"query": "rocket", "similarity_threshold": 0.99}),
    )
    .await;
    assert_eq!(none["count"], 0, "{none}");
}

#[tokio::test]
async fn filters_restrict_results() {
    let (server, ids) = seeded().await;
    let (_, only) = search(
        &server,
        json!({"query": "liquid water soil oven", "filters": {"file_ids": [ids[2]]}}),
    )
    .await;
    let files: Vec<&str> = only["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["file_id"].as_str())
        .collect();
    assert!(
        !files.is_empty() && files.iter().all(|f| *f == ids[2]),
        "{only}"
    );
    let (_, md) = search(
        &server,
        json!({"query": "bread", "filters": {"categories": ["sheet"]}}),
    )
    .await;
    assert_eq!(md["count"], 0, "{md}");
    let (_, future) = search(
        &server,
        json!({"query": "bread", "filters": {"created_after": "2999-01-01T00:00:00Z"}}),
    )
    .await;
    assert_eq!(future["count"], 0, "{future}");
    let (_, past) = search(
        &server,
        json!({"query": "bread", "filters": {"created_after": "2000-01-01T00:00:00Z"}}),
    )
    .await;
    assert!(past["count"].as_u64() >= Some(1), "{past}");
}

#[tokio::test]
async fn bad_search_requests_name_the_field() {
    let server = Server::start().await;
    let (s, b) = search(&server, json!({"query_vector": [0.1, 0.2]})).await;
    assert_bad_request(s, &b, Some("query_vector"), "384");
    let (s, b) = search(&server, json!({"query": "x", "top_k": 0})).await;
    assert_bad_request(s, &b, Some("top_k"), "at least 1");
    let (s, b) = search(&server, json!({"query": "x", "top_k": 101})).await;
    assert_bad_request(s, &b, Some("top_k"), "at most 100");
    let (s, b) = search(&server, json!({"query": "x", "mode": "telepathy"})).await;
    assert_bad_request(s, &b, Some("mode"), "telepathy");
    let (s, b) = search(&server, json!({"mode": "bm25"})).await;
    assert_bad_request(s, &b, Some("query"), "query");
    let (s, b) = search(&server, json!({"query": "x", "fusion": {"alpha": 2}})).await;
    assert_bad_request(s, &b, Some("fusion.alpha"), "at most 1");
}

#[tokio::test]
async fn unknown_filter_keys_are_refused_not_ignored() {
    let server = Server::start().await;
    // A mistyped filter (`file_id` for `file_ids`) would otherwise return unfiltered results.
    let (s, b) = search(
        &server,
        json!({"query": "bread", "filters": {"file_id": ["file-1"]}}),
    )
    .await;
    assert_bad_request(s, &b, Some("filters.file_id"), "file_id");
    let (s, b) = search(
        &server,
        json!({"query": "bread", "filters": {"file_ids": ["file-1"], "category": ["pdf"]}}),
    )
    .await;
    assert_bad_request(s, &b, Some("filters.category"), "not a known field");
    // The known keys still work.
    let (s, b) = search(
        &server,
        json!({"query": "bread", "filters": {"file_ids": ["file-1"], "categories": ["pdf"]}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["count"], 0, "{b}");
}

#[tokio::test]
async fn chunks_are_listed_with_locations_and_deletes_leave_no_trace() {
    let (server, ids) = seeded().await;
    let pdf = server
        .upload_and_wait("report.pdf", fixture("pdf/text-3page.pdf"))
        .await;
    let pdf_id = pdf["id"].as_str().expect("id").to_owned();
    let (status, chunks) = server.get(&format!("/api/v1/files/{pdf_id}/chunks")).await;
    assert_eq!(status, StatusCode::OK, "{chunks}");
    let data = chunks["data"].as_array().expect("data");
    assert!(!data.is_empty());
    assert_eq!(chunks["total"].as_u64(), Some(data.len() as u64));
    for c in data {
        assert_eq!(c["location"]["type"], "pages", "{c}");
        assert!(
            c["token_count"].as_u64().is_some_and(|n| n > 0 && n <= 256),
            "{c}"
        );
        assert!(
            c["chunk_id"]
                .as_str()
                .is_some_and(|id| id.starts_with(&pdf_id))
        );
    }
    // Delete: gone from both indexes and the chunk listing.
    server.delete(&format!("/api/v1/files/{}", ids[1])).await;
    for mode in ["bm25", "vector", "hybrid"] {
        let (_, r) = search(
            &server,
            json!({"query": "sourdough bread starter", "mode": mode, "top_k": 100}),
        )
        .await;
        assert!(
            r["results"]
                .as_array()
                .expect("results")
                .iter()
                .all(|h| h["file_id"] != ids[1].as_str()),
            "{mode}: {r}"
        );
    }
    let (status, _) = server
        .get(&format!("/api/v1/files/{}/chunks", ids[1]))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn indexes_survive_a_crash_and_are_repaired_from_the_database() {
    let (mut server, ids) = seeded().await;
    server.crash_and_restart().await;
    let (_, r) = search(&server, json!({"query": "sourdough", "mode": "bm25"})).await;
    assert_eq!(top_file(&r), ids[1], "{r}");
    // Lose the vector index entirely while the server is down: start-up rebuilds it from SQLite.
    server.stop();
    let _ = std::fs::remove_file(server.data_dir.join("index/vectors.usearch"));
    server.start_again().await;
    let (_, v) = search(
        &server,
        json!({"query": "spacecraft propulsion fuel", "mode": "vector", "top_k": 1}),
    )
    .await;
    assert_eq!(top_file(&v), ids[0], "{v}");
}

#[tokio::test]
async fn duplicate_uploads_are_indexed_under_each_file() {
    let server = Server::start().await;
    let a = server
        .upload_and_wait("a.txt", ROCKETS.as_bytes().to_vec())
        .await;
    let b = server
        .upload_and_wait("b.txt", ROCKETS.as_bytes().to_vec())
        .await;
    assert_eq!(b["deduplicated"], true, "{b}");
    assert_eq!(b["status"], "ready", "{b}");
    let (_, r) = search(&server, json!({"query": "hydrogen", "mode": "bm25"})).await;
    let files: Vec<&str> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|h| h["file_id"].as_str())
        .collect();
    assert!(
        files.contains(&a["id"].as_str().expect("id"))
            && files.contains(&b["id"].as_str().expect("id")),
        "{r}"
    );
}

/// About 200 chunks of text (several seconds of embedding), each with the word `quetzalcoatlus`.
fn long_text() -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "river", "mountain", "lantern", "copper", "harvest", "signal", "meadow", "engine",
        "violet", "archive", "thunder", "pebble", "orchard", "compass", "glacier", "window",
    ];
    let mut seed: u64 = 7;
    let mut text = String::new();
    for p in 0..200 {
        text.push_str(&format!("Paragraph {p} about quetzalcoatlus:"));
        for _ in 0..120 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            text.push(' ');
            text.push_str(WORDS[(seed >> 60) as usize]);
        }
        text.push_str(".\n\n");
    }
    text.into_bytes()
}

async fn index_sizes(server: &Server) -> (u64, u64) {
    let (_, h) = server.get("/api/v1/monitoring/health").await;
    (
        h["index_chunks"].as_u64().expect("index_chunks"),
        h["index_vectors"].as_u64().expect("index_vectors"),
    )
}

/// Waits until a file is being processed, then deletes it.
async fn delete_while_processing(server: &Server, id: &str) {
    let started = std::time::Instant::now();
    loop {
        let (_, f) = server.get(&format!("/api/v1/files/{id}")).await;
        if f["status"] == "processing" {
            break;
        }
        assert_eq!(
            f["status"], "queued",
            "the file must be deleted while it is processed: {f}"
        );
        assert!(started.elapsed().as_secs() < 120, "{f}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, deleted) = server.delete(&format!("/api/v1/files/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["deleted"], true, "{deleted}");
}

#[tokio::test]
async fn a_file_deleted_while_processing_leaves_nothing_in_the_indexes() {
    // One worker, so the files are processed one after the other in upload order.
    let server = Server::start_with(&[("DOCPIPE_INGEST_WORKERS", "1")]).await;
    // Deleted while it is extracted (OCR of the scanned page takes seconds).
    let (_, scan) = server.upload("scan.pdf", fixture("pdf/scanned.pdf")).await;
    // Deleted while its chunks are embedded, with a twin (same content) waiting for that extraction, so
    // the extraction and chunks stay in the store.
    let (_, first) = server.upload("long.txt", long_text()).await;
    let (_, twin) = server.upload("twin.txt", long_text()).await;
    let id = |f: &Value| f["id"].as_str().expect("id").to_owned();
    let (scan, first, twin) = (id(&scan), id(&first), id(&twin));
    delete_while_processing(&server, &scan).await;
    delete_while_processing(&server, &first).await;

    // The twin is processed once the worker is done with the deleted file.
    let done = server.wait_done(&twin).await;
    assert_eq!(done["status"], "ready", "{done}");
    let (_, chunks) = server
        .get(&format!("/api/v1/files/{twin}/chunks?limit=1"))
        .await;
    let n = chunks["total"].as_u64().expect("total");
    assert!(n > 100, "{chunks}");
    // Only the twin's chunks are indexed (the text index's reader may lag its commit a moment).
    let started = std::time::Instant::now();
    while index_sizes(&server).await != (n, n) && started.elapsed().as_secs() < 10 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        index_sizes(&server).await,
        (n, n),
        "the deleted files left index entries"
    );
    for (query, mode) in [
        ("invoice number", "bm25"),
        ("quetzalcoatlus", "bm25"),
        ("scanned invoice", "vector"),
    ] {
        let (_, r) = search(&server, json!({"query": query, "mode": mode, "top_k": 100})).await;
        let hits = r["results"].as_array().expect("results");
        assert!(
            hits.iter().all(|h| h["file_id"] == twin.as_str()),
            "{query}: {r}"
        );
    }
}
