-- OpenAI Batch API: a batch and each of its requests. The requests are copied from the input file at
-- validation, so the batch runs (and resumes after a restart) from the database alone; a request's result
-- line is stored when it finishes, so a resumed batch never repeats a finished request.
CREATE TABLE batches (
    id                TEXT PRIMARY KEY,
    tenant            TEXT NOT NULL,
    key_id            TEXT,
    endpoint          TEXT NOT NULL,
    input_file_id     TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('validating', 'failed', 'in_progress', 'finalizing',
                                                      'completed', 'expired', 'cancelling', 'cancelled')),
    metadata          TEXT,
    errors            TEXT,
    output_file_id    TEXT,
    error_file_id     TEXT,
    created_at        INTEGER NOT NULL,
    in_progress_at    INTEGER,
    expires_at        INTEGER NOT NULL,
    finalizing_at     INTEGER,
    completed_at      INTEGER,
    failed_at         INTEGER,
    expired_at        INTEGER,
    cancelling_at     INTEGER,
    cancelled_at      INTEGER
);
CREATE INDEX batches_by_tenant ON batches (tenant, created_at);
CREATE INDEX batches_by_status ON batches (status, created_at);

CREATE TABLE batch_requests (
    batch_id  TEXT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    line      INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    url       TEXT NOT NULL,
    body      TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    result    TEXT,
    PRIMARY KEY (batch_id, line),
    UNIQUE (batch_id, custom_id)
) WITHOUT ROWID;
