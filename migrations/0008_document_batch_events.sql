-- `document_batch.completed` webhook events: once every file of a document batch is ready, failed, refused or
-- deleted. A batch is sealed when its items are all stored (in the transaction that stores them), so the event
-- fires exactly once: from the seal when its files were all done by then, else from the last file to finish.
ALTER TABLE document_batches ADD COLUMN sealed INTEGER NOT NULL DEFAULT 1;

-- Each batch's tenant, whether it is sealed, its files still pending, and the event body of its completion
-- (the one definition both triggers below deliver).
CREATE VIEW document_batch_progress AS
SELECT b.id, b.tenant, b.sealed,
    SUM(CASE WHEN f.status IN ('queued', 'processing') THEN 1 ELSE 0 END) AS pending,
    json_object('type', 'document_batch.completed', 'timestamp', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'data', json_object('id', b.id, 'object', 'document_batch', 'status', 'completed',
            'total', COUNT(i.ordinal),
            'ready', SUM(CASE WHEN f.status = 'ready' THEN 1 ELSE 0 END),
            'failed', SUM(CASE WHEN f.status = 'failed' THEN 1 ELSE 0 END),
            'rejected', SUM(CASE WHEN i.file_id IS NULL THEN 1 ELSE 0 END),
            'deleted', SUM(CASE WHEN i.file_id IS NOT NULL AND f.id IS NULL THEN 1 ELSE 0 END),
            'metadata', json(b.metadata))) AS event
FROM document_batches b
JOIN document_batch_items i ON i.batch_id = b.id
LEFT JOIN files f ON f.id = i.file_id
GROUP BY b.id;

CREATE TRIGGER webhook_document_batch_file_finished AFTER UPDATE OF status ON files
WHEN NEW.status IN ('ready', 'failed') AND OLD.status != NEW.status
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, status, next_attempt_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), w.id, 'document_batch.completed', p.event,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM document_batch_progress p
    JOIN webhooks w ON w.tenant = p.tenant AND w.enabled = 1
        AND instr(',' || w.events || ',', ',document_batch.completed,') > 0
    WHERE p.id IN (SELECT batch_id FROM document_batch_items WHERE file_id = NEW.id)
      AND p.sealed = 1 AND p.pending = 0;
END;

CREATE TRIGGER webhook_document_batch_sealed AFTER UPDATE OF sealed ON document_batches
WHEN NEW.sealed = 1 AND OLD.sealed = 0
BEGIN
    INSERT INTO webhook_deliveries (id, webhook_id, event_type, payload, created_at, status, next_attempt_at)
    SELECT 'msg_' || lower(hex(randomblob(16))), w.id, 'document_batch.completed', p.event,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'pending',
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
    FROM document_batch_progress p
    JOIN webhooks w ON w.tenant = p.tenant AND w.enabled = 1
        AND instr(',' || w.events || ',', ',document_batch.completed,') > 0
    WHERE p.id = NEW.id AND p.pending = 0;
END;
