-- Document batches: many files (or the members of ZIP archives) uploaded in one request. Each stored file is
-- an ordinary file record (queued, extracted, deduplicated as single uploads are); an item refused at upload
-- (too large, unsupported, a nested archive, ...) keeps its reason instead of a file. A file's status is read
-- from `files`, so the batch never holds a second copy of it.
ALTER TABLE files ADD COLUMN metadata TEXT;

CREATE TABLE document_batches (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    -- The client's metadata (a JSON object of strings), also set on every file of the batch.
    metadata   TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX document_batches_by_tenant ON document_batches (tenant, created_at);

CREATE TABLE document_batch_items (
    batch_id      TEXT NOT NULL REFERENCES document_batches (id) ON DELETE CASCADE,
    ordinal       INTEGER NOT NULL,
    filename      TEXT NOT NULL,
    -- The member's sanitised path inside its archive, and the archive's name (NULL for a plain part).
    path          TEXT,
    archive       TEXT,
    file_id       TEXT,
    error_code    TEXT,
    error_message TEXT,
    PRIMARY KEY (batch_id, ordinal)
) WITHOUT ROWID;
CREATE INDEX document_batch_items_by_file ON document_batch_items (file_id);
