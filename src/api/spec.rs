//! The last touches to the generated OpenAPI document, for what poem-openapi's derives cannot say, and the
//! methods of each documented path (for the `Allow` header of a 405). Everything else in the document comes
//! from the types and their `#[oai(...)]` attributes, which are also what validates requests.

use serde_json::{Value, json};

/// Objects that refuse unknown keys (`#[oai(deny_unknown_fields)]`): their schema says
/// `additionalProperties: false`, which the derive does not write.
const CLOSED_OBJECTS: [&str; 1] = ["SearchFilters"];

/// The closing event of the chat and completion streams, which is not JSON.
const STREAM_DONE: &str = "[DONE]";

/// The document as served and committed: `raw` (poem-openapi's) with the fix-ups applied.
pub fn finish(raw: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(raw) else {
        return raw.to_owned();
    };
    for name in CLOSED_OBJECTS {
        if let Some(schema) = doc["components"]["schemas"].get_mut(name) {
            schema["additionalProperties"] = Value::Bool(false);
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.values_mut().for_each(untyped_union);
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, item) in paths {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                let Some(responses) = op["responses"].as_object_mut() else {
                    continue;
                };
                for response in responses.values_mut() {
                    let Some(content) = response["content"].as_object_mut() else {
                        continue;
                    };
                    event_stream(path, content);
                    stored_bytes(content);
                }
            }
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_else(|_| raw.to_owned())
}

/// poem-openapi writes every union as `type: object`, which no string or list alternative can satisfy: a
/// union with an alternative that is not an object gets no `type` (its alternatives say what it may be).
fn untyped_union(schema: &mut Value) {
    let Some(alternatives) = schema.get("anyOf").or_else(|| schema.get("oneOf")) else {
        return;
    };
    let not_object = alternatives.as_array().is_some_and(|alts| {
        alts.iter()
            .any(|a| a.get("type").is_some_and(|t| t != "object"))
    });
    if not_object && let Some(obj) = schema.as_object_mut() {
        obj.remove("type");
    }
}

/// poem-openapi writes an event stream as a JSON array of its events; OpenAPI 3.0 has the schema of
/// `text/event-stream` describe one event. Each event's `data` is the JSON of the item type (and, in the
/// chat and completion streams, the closing `[DONE]`).
fn event_stream(path: &str, content: &mut serde_json::Map<String, Value>) {
    let Some(media) = content.get_mut("text/event-stream") else {
        return;
    };
    let Some(item) = media["schema"].get("items").cloned() else {
        return;
    };
    let json_data = json!({
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": item,
    });
    let data = if path.contains("completions") || path.contains("/chat/") {
        json!({
            "description": format!("One JSON chunk; the last event is `{STREAM_DONE}`."),
            "anyOf": [{"type": "string", "enum": [STREAM_DONE]}, json_data],
        })
    } else {
        let mut d = json_data;
        d["description"] = json!("The JSON of one event.");
        d
    };
    media["schema"] = json!({
        "type": "object",
        "description": "One server-sent event.",
        "required": ["data"],
        "properties": {
            "data": data,
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    });
}

/// The original bytes of a file are sent with their detected content type, whatever it is.
fn stored_bytes(content: &mut serde_json::Map<String, Value>) {
    if let Some(media) = content.remove("application/octet-stream") {
        content.insert("*/*".to_owned(), media);
    }
}

/// The methods of each documented path, for the `Allow` header of a 405.
#[derive(Debug, Default, Clone)]
pub struct AllowTable(Vec<(Vec<String>, String)>);

impl AllowTable {
    /// From the document, plus routes outside it (such as `/metrics`).
    pub fn new(doc: &str, extra: &[(&str, &str)]) -> AllowTable {
        let doc: Value = serde_json::from_str(doc).unwrap_or_default();
        let mut rows: Vec<(Vec<String>, String)> = extra
            .iter()
            .map(|(path, methods)| (segments(path), (*methods).to_owned()))
            .collect();
        if let Some(paths) = doc["paths"].as_object() {
            for (path, item) in paths {
                let mut methods: Vec<String> = item
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                rows.push((segments(path), methods.join(", ")));
            }
        }
        AllowTable(rows)
    }

    /// The methods `path` takes, when it is a known path.
    pub fn allow(&self, path: &str) -> Option<&str> {
        let asked = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == asked.len()
                    && template.iter().zip(&asked).all(|(t, a)| {
                        t == a || (t.starts_with('{') && t.ends_with('}') && !a.is_empty())
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_union_of_a_string_and_a_list_has_no_object_type() {
        let raw = r##"{"components": {"schemas": {
            "Content": {"type": "object", "anyOf": [{"type": "string"}, {"type": "array"}]},
            "Event": {"type": "object", "anyOf": [{"$ref": "#/a"}, {"$ref": "#/b"}]}}}}"##;
        let doc: Value = serde_json::from_str(&finish(raw)).expect("json");
        assert!(
            doc["components"]["schemas"]["Content"]
                .get("type")
                .is_none()
        );
        assert_eq!(doc["components"]["schemas"]["Event"]["type"], "object");
    }

    #[test]
    fn allow_matches_templates() {
        let doc = r#"{"paths": {"/v1/files/{file_id}": {"get": {}, "delete": {}}, "/health": {"get": {}}}}"#;
        let table = AllowTable::new(doc, &[("/metrics", "GET")]);
        assert_eq!(table.allow("/v1/files/file-1"), Some("DELETE, GET"));
        assert_eq!(table.allow("/health"), Some("GET"));
        assert_eq!(table.allow("/metrics"), Some("GET"));
        assert_eq!(table.allow("/v1/files/file-1/x"), None);
        assert_eq!(table.allow("/nope"), None);
    }

    #[test]
    fn event_streams_describe_one_event() {
        let raw = r##"{"paths": {"/e": {"get": {"responses": {"200": {"content": {"text/event-stream":
            {"schema": {"type": "array", "format": "event-stream", "items": {"$ref": "#/x"}}}}}}}}}}"##;
        let doc: Value = serde_json::from_str(&finish(raw)).expect("json");
        let schema = &doc["paths"]["/e"]["get"]["responses"]["200"]["content"]["text/event-stream"]
            ["schema"];
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["properties"]["data"]["contentSchema"]["$ref"], "#/x");
    }
}
