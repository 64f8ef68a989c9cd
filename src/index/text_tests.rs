use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::types::Category;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0)
        .single()
        .expect("valid timestamp")
}

fn chunk(
    tenant: &str,
    file: &str,
    n: u32,
    category: Category,
    created: i64,
    text: &str,
) -> IndexedChunk {
    IndexedChunk {
        chunk_id: format!("{file}#{n}"),
        file_id: file.to_owned(),
        tenant: tenant.to_owned(),
        category,
        created_at: at(created),
        text: text.to_owned(),
    }
}

/// A small corpus over two tenants, three files, two categories, three dates.
fn corpus() -> TextIndex {
    let index = TextIndex::in_ram().expect("in-ram index");
    index
        .add(&[
            chunk(
                "t1",
                "f1",
                0,
                Category::Pdf,
                100,
                "The runner runs every morning along the river.",
            ),
            chunk(
                "t1",
                "f1",
                1,
                Category::Pdf,
                100,
                "Quarterly revenue grew by ten percent.",
            ),
            chunk(
                "t1",
                "f2",
                0,
                Category::Text,
                200,
                "Отчёт о выручке за квартал: выручка выросла.",
            ),
            chunk(
                "t1",
                "f2",
                1,
                Category::Text,
                200,
                "我们在北京大学学习机器学习和自然语言处理。",
            ),
            chunk(
                "t1",
                "f3",
                0,
                Category::Office,
                300,
                "Revenue forecast for the next quarter.",
            ),
            chunk(
                "t2",
                "g1",
                0,
                Category::Pdf,
                100,
                "Secret revenue numbers of tenant two; the runner runs.",
            ),
        ])
        .expect("add");
    index.commit().expect("commit");
    index
}

fn ids(hits: &[TextHit]) -> Vec<&str> {
    hits.iter().map(|h| h.chunk_id.as_str()).collect()
}

#[test]
fn finds_and_ranks_with_highlighted_snippet() {
    let index = corpus();
    let hits = index
        .search("revenue", &SearchFilter::tenant("t1"), 10)
        .expect("search");
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.score > 0.0));
    assert!(hits[0].score >= hits[1].score);
    let snippet = &hits
        .iter()
        .find(|h| h.chunk_id == "f1#1")
        .expect("f1#1 found")
        .snippet;
    assert!(snippet.contains("<b>revenue</b>"), "{snippet}");
    assert_eq!(index.len(), 6);
}

#[test]
fn stemming_matches_other_forms() {
    let index = corpus();
    let hits = index
        .search("running", &SearchFilter::tenant("t1"), 10)
        .expect("search");
    assert_eq!(ids(&hits), ["f1#0"]);
    assert!(hits[0].snippet.contains("<b>"), "{}", hits[0].snippet);
}

#[test]
fn cyrillic_and_chinese_are_searchable() {
    let index = corpus();
    let t1 = SearchFilter::tenant("t1");
    let hits = index.search("Выручка", &t1, 10).expect("cyrillic search");
    assert_eq!(ids(&hits), ["f2#0"]);
    assert!(hits[0].snippet.contains("<b>"), "{}", hits[0].snippet);

    let hits = index.search("北京大学", &t1, 10).expect("chinese search");
    assert_eq!(ids(&hits), ["f2#1"]);
    assert!(hits[0].snippet.contains("<b>北京"), "{}", hits[0].snippet);

    let hits = index
        .search("机器学习", &t1, 10)
        .expect("chinese word search");
    assert_eq!(ids(&hits), ["f2#1"]);
}

#[test]
fn special_characters_never_fail() {
    let index = corpus();
    let t1 = SearchFilter::tenant("t1");
    for q in [
        "\"revenue",
        "revenue:",
        "text:revenue",
        "(revenue AND",
        "revenue OR",
        "-revenue",
        "+revenue^2",
        "[1 TO 2}",
        "rev* ~2 \\ / ! {}",
        "AND OR NOT",
        "",
        "   ",
        "::(())\"\"",
    ] {
        let hits = index
            .search(q, &t1, 10)
            .unwrap_or_else(|e| panic!("{q:?} failed: {e}"));
        if q.contains("revenue") {
            assert!(!hits.is_empty(), "{q:?} should find revenue");
        }
    }
}

#[test]
fn tenants_are_isolated() {
    let index = corpus();
    let hits = index
        .search("secret runner", &SearchFilter::tenant("t1"), 10)
        .expect("search");
    assert!(
        hits.iter().all(|h| !h.chunk_id.starts_with('g')),
        "{hits:?}"
    );
    let hits = index
        .search("revenue", &SearchFilter::tenant("t2"), 10)
        .expect("search");
    assert_eq!(ids(&hits), ["g1#0"]);
    assert!(
        index
            .search("revenue", &SearchFilter::tenant("nobody"), 10)
            .expect("search")
            .is_empty()
    );
    assert!(matches!(
        index.search("revenue", &SearchFilter::tenant(""), 10),
        Err(TextError::MissingTenant)
    ));
}

#[test]
fn file_category_and_date_filters() {
    let index = corpus();
    let t1 = || SearchFilter::tenant("t1");
    let hits = index
        .search("revenue", &t1().with_file_ids(["f3"]), 10)
        .expect("search");
    assert_eq!(ids(&hits), ["f3#0"]);
    let hits = index
        .search("revenue", &t1().with_categories([Category::Pdf]), 10)
        .expect("search");
    assert_eq!(ids(&hits), ["f1#1"]);
    let hits = index
        .search("revenue", &t1().with_created(Some(at(150)), None), 10)
        .expect("search");
    assert_eq!(ids(&hits), ["f3#0"]);
    let hits = index
        .search("revenue", &t1().with_created(None, Some(at(300))), 10)
        .expect("search");
    assert_eq!(ids(&hits), ["f1#1"]);
    let hits = index
        .search("revenue", &t1().with_file_ids(Vec::<String>::new()), 10)
        .expect("search");
    assert!(hits.is_empty());
}

#[test]
fn delete_file_and_upsert() {
    let index = corpus();
    index.delete_file("t1", "f1");
    // Same file id under another tenant must survive.
    index.delete_file("t2", "f3");
    index.commit().expect("commit");
    let t1 = SearchFilter::tenant("t1");
    assert_eq!(
        ids(&index.search("revenue", &t1, 10).expect("search")),
        ["f3#0"]
    );
    assert_eq!(index.len(), 4);

    index
        .add(&[chunk(
            "t1",
            "f3",
            0,
            Category::Office,
            300,
            "Replaced text about budgets.",
        )])
        .expect("add");
    index.commit().expect("commit");
    assert!(
        index
            .search("forecast", &t1, 10)
            .expect("search")
            .is_empty()
    );
    assert_eq!(
        ids(&index.search("budgets", &t1, 10).expect("search")),
        ["f3#0"]
    );
    let expected: HashSet<String> = ["f2#0", "f2#1", "f3#0", "g1#0"].map(String::from).into();
    assert_eq!(index.chunk_ids().expect("ids"), expected);
}

#[test]
fn on_disk_index_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let index = TextIndex::open(dir.path()).expect("open");
        index
            .add(&[chunk(
                "t1",
                "f1",
                0,
                Category::Text,
                100,
                "Persistent searchable words.",
            )])
            .expect("add");
        index.commit().expect("commit");
    }
    let index = TextIndex::open(dir.path()).expect("reopen");
    assert_eq!(index.len(), 1);
    let hits = index
        .search("searchable", &SearchFilter::tenant("t1"), 5)
        .expect("search");
    assert_eq!(ids(&hits), ["f1#0"]);
}
