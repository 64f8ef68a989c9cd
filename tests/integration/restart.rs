//! Crash safety: after `kill -9`, every acknowledged upload is still there, files that were mid-processing
//! are processed again, and nothing is half-written.

use crate::common::{Server, fixture};

#[tokio::test]
async fn acknowledged_uploads_survive_kill_9_and_interrupted_files_finish() {
    let mut server = Server::start_with(&[("DOCPIPE_INGEST_WORKERS", "1")]).await;
    let mut ids = Vec::new();
    // A slow file (OCR) first so the later ones are still queued or processing when the process dies.
    let (_, scan) = server.upload("scan.pdf", fixture("pdf/scanned.pdf")).await;
    ids.push(scan["id"].as_str().expect("id").to_owned());
    for i in 0..5 {
        let (_, body) = server
            .upload(
                &format!("f{i}.txt"),
                format!("file number {i}").into_bytes(),
            )
            .await;
        ids.push(body["id"].as_str().expect("id").to_owned());
    }
    // Wait until the scan is being processed, then crash.
    for _ in 0..200 {
        let (_, f) = server.get(&format!("/api/v1/files/{}", ids[0])).await;
        if f["status"] == "processing" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.crash_and_restart().await;
    for id in &ids {
        let done = server.wait_done(id).await;
        assert_eq!(done["status"], "ready", "{done}");
    }
    let (_, text) = server.get(&format!("/api/v1/files/{}/text", ids[3])).await;
    assert_eq!(text["text"], "file number 2");
    let (_, list) = server.get("/api/v1/files").await;
    assert_eq!(list["total"], 6);
    // No temp files are left behind.
    let tmp = std::fs::read_dir(server.data_dir.join("tmp"))
        .expect("tmp dir")
        .count();
    assert_eq!(tmp, 0);
}
