-- Chunks of an extraction result with their embeddings, shared (like the extraction) by every file with
-- the same content. Index entries are per file: chunk id = "<file id>#<ordinal>".
CREATE TABLE chunks (
    doc_key     TEXT NOT NULL REFERENCES extractions (doc_key) ON DELETE CASCADE,
    ordinal     INTEGER NOT NULL,
    text        TEXT NOT NULL,
    location    TEXT NOT NULL,
    token_count INTEGER NOT NULL,
    embedding   BLOB,
    PRIMARY KEY (doc_key, ordinal)
) WITHOUT ROWID;

-- Which embedding model produced the stored vectors of an extraction (NULL: not embedded).
ALTER TABLE extractions ADD COLUMN embed_model TEXT;
