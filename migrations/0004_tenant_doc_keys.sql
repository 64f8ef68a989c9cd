-- Extraction results become per tenant: doc_key = "<tenant>/<sha256>:<format>", so deduplication never
-- tells one tenant that another uploaded the same content. Until now every file belonged to tenant
-- "default", so existing keys move under it. Foreign keys are checked at commit, after all four updates.
PRAGMA defer_foreign_keys = ON;
UPDATE extractions SET doc_key = 'default/' || doc_key WHERE instr(doc_key, '/') = 0;
UPDATE segments SET doc_key = 'default/' || doc_key WHERE instr(doc_key, '/') = 0;
UPDATE chunks SET doc_key = 'default/' || doc_key WHERE instr(doc_key, '/') = 0;
UPDATE files SET doc_key = tenant || '/' || doc_key WHERE instr(doc_key, '/') = 0;
