-- Webhooks (Standard Webhooks): endpoints per tenant, and a durable outbox of deliveries. The outbox is
-- written by triggers, so every event is stored in the same transaction as the state change that causes it:
-- a file becoming ready or failed, a file deleted, a batch reaching its end. A delivery stays `pending` until
-- an attempt succeeds or its retries run out; one in flight when the process died is simply due again.
CREATE TABLE webhooks (
    id                    TEXT PRIMARY KEY,
    tenant                TEXT NOT NULL,
    url                   TEXT NOT NULL,
    -- Comma-separated event types.
    events                TEXT NOT NULL,
    description           TEXT,
    secret                TEXT NOT NULL,
    -- The previous secret, still signing (beside the new one) until old_secret_until.
    old_secret            TEXT,
    old_secret_until      INTEGER,
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant, created_at);

CREATE TABLE webhook_deliveries (
    -- The message id (`webhook-id`): the same on every attempt, so receivers can drop duplicates.
    id              TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- `attempts` when the retry schedule last (re)started: a redelivery on request starts it afresh.
    schedule_start  INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    delivered_at    INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    latency_ms  INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

-- One delivery per enabled endpoint of the tenant subscribed to the event.
CREATE TRIGGER webhook_file_finished AFTER UPDATE OF status ON files
WHEN NEW.status IN ('ready', 'failed') AND OLD.status != NEW.status
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, status, next_attempt_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), w.id, 'file.' || NEW.status,
        json_object('type', 'file.' || NEW.status, 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            'data', json_object('id', NEW.id, 'object', 'file', 'filename', NEW.filename, 'status', NEW.status,
                'category', NEW.category, 'size', NEW.size, 'purpose', NEW.purpose,
                'deduplicated', json(CASE NEW.deduplicated WHEN 0 THEN 'false' ELSE 'true' END),
                'error', CASE WHEN NEW.error_code IS NULL THEN NULL
                    ELSE json_object('code', NEW.error_code, 'message', NEW.error_message) END)),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhooks w
    WHERE w.tenant = NEW.tenant AND w.enabled = 1
      AND instr(',' || w.events || ',', ',file.' || NEW.status || ',') > 0;
END;

-- Data files (batch input and output) are inserted ready.
CREATE TRIGGER webhook_file_inserted_ready AFTER INSERT ON files
WHEN NEW.status = 'ready'
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, status, next_attempt_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), w.id, 'file.ready',
        json_object('type', 'file.ready', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            'data', json_object('id', NEW.id, 'object', 'file', 'filename', NEW.filename, 'status', NEW.status,
                'category', NEW.category, 'size', NEW.size, 'purpose', NEW.purpose,
                'deduplicated', json('false'), 'error', NULL)),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhooks w
    WHERE w.tenant = NEW.tenant AND w.enabled = 1 AND instr(',' || w.events || ',', ',file.ready,') > 0;
END;

CREATE TRIGGER webhook_file_deleted AFTER DELETE ON files
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, status, next_attempt_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), w.id, 'file.deleted',
        json_object('type', 'file.deleted', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            'data', json_object('id', OLD.id, 'object', 'file', 'filename', OLD.filename, 'deleted', json('true'))),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhooks w
    WHERE w.tenant = OLD.tenant AND w.enabled = 1 AND instr(',' || w.events || ',', ',file.deleted,') > 0;
END;

CREATE TRIGGER webhook_batch_finished AFTER UPDATE OF status ON batches
WHEN NEW.status IN ('completed', 'failed', 'cancelled', 'expired') AND OLD.status != NEW.status
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, status, next_attempt_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), w.id, 'batch.' || NEW.status,
        json_object('type', 'batch.' || NEW.status, 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
            'data', json_object('id', NEW.id, 'object', 'batch', 'status', NEW.status, 'endpoint', NEW.endpoint,
                'input_file_id', NEW.input_file_id, 'output_file_id', NEW.output_file_id,
                'error_file_id', NEW.error_file_id)),
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM webhooks w
    WHERE w.tenant = NEW.tenant AND w.enabled = 1
      AND instr(',' || w.events || ',', ',batch.' || NEW.status || ',') > 0;
END;
