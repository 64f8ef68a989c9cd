-- Files, their shared extraction results and the segments of those results.
-- An extraction belongs to content (sha256 + detected format), not to a file record, so identical uploads
-- share it; it is deleted with the last file that uses it.
CREATE TABLE files (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    filename       TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    format         TEXT NOT NULL,
    category       TEXT NOT NULL,
    size           INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    doc_key        TEXT NOT NULL,
    purpose        TEXT,
    status         TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'ready', 'failed')),
    progress_done  INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    progress_unit  TEXT NOT NULL DEFAULT '',
    error_code     TEXT,
    error_message  TEXT,
    deduplicated   INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX files_by_status ON files (status, created_at);
CREATE INDEX files_by_tenant ON files (tenant, created_at);
CREATE INDEX files_by_doc ON files (doc_key);
CREATE INDEX files_by_sha ON files (sha256);

CREATE TABLE extractions (
    doc_key    TEXT PRIMARY KEY,
    metadata   TEXT NOT NULL,
    segments   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE segments (
    doc_key  TEXT NOT NULL REFERENCES extractions (doc_key) ON DELETE CASCADE,
    ordinal  INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    text     TEXT NOT NULL,
    location TEXT NOT NULL,
    PRIMARY KEY (doc_key, ordinal)
) WITHOUT ROWID;
