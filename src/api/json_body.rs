//! JSON request bodies whose mistakes are told in the client's terms. poem-openapi's `Json<T>` reports a
//! missing or mistyped field as `Expected input type "list_ChatMessageIn", found null. (occurred while
//! parsing "ChatBody")`: no field, and the framework's type names. [`JsonBody`] documents and parses the
//! same way, and when parsing fails it walks the body against the route's published schema to name the
//! first field that is wrong (`messages`, `messages[0].role`) and say what it must be.

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::payload::{Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

/// A JSON request body (see the module docs).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// A body that does not parse: the field at fault (a JSON path such as `messages[0].role`, none when the
/// body as a whole is wrong) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// The field at fault.
    pub param: Option<String>,
    /// A sentence for a person.
    pub message: String,
}

impl poem::error::ResponseError for BodyError {
    fn status(&self) -> poem::http::StatusCode {
        poem::http::StatusCode::BAD_REQUEST
    }

    /// The service's error shape, naming the field in `param`. (poem-openapi hands a request body's parse
    /// error straight to the response when the route's success type has no bad-request handler.)
    fn as_response(&self) -> poem::Response {
        use poem::IntoResponse;
        super::error::ApiError::with_param(
            super::error::ErrorCode::InvalidRequest,
            self.message.clone(),
            self.param.as_deref(),
        )
        .into_response()
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = <Json<T> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|e| BodyError {
                param: None,
                message: format!("the request body is not valid JSON: {e}"),
            })?
        };
        // poem-openapi's parsers are lenient where the schema is not (a string field takes `false`): the
        // body is held to the published schema first, so what the document says is what is accepted.
        if !value.is_null()
            && let Some(e) = mismatch::<T>(&value)
        {
            return Err(e.into());
        }
        T::parse_from_json(Some(value)).map(JsonBody).map_err(|e| {
            // Only a failure pays for a second parse of the bytes, to explain it.
            let value = serde_json::from_slice(&data).unwrap_or(Value::Null);
            unknown_key(e.message(), &value)
                .unwrap_or_else(|| explain::<T>(&value))
                .into()
        })
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// A key an object that refuses unknown keys (`#[oai(deny_unknown_fields)]`) does not know, found where
/// it is in the body: poem-openapi says only "unknown field `file_id`.".
fn unknown_key(message: &str, value: &Value) -> Option<BodyError> {
    let (_, rest) = message.split_once("unknown field `")?;
    let (key, _) = rest.split_once('`')?;
    let path = find_key(value, key, "")?;
    Some(BodyError {
        message: format!("{} is not a known field", named(&path)),
        param: Some(path),
    })
}

/// The path of the first object key `key` in `value`, depth first.
fn find_key(value: &Value, key: &str, path: &str) -> Option<String> {
    match value {
        Value::Object(obj) => obj.iter().find_map(|(k, v)| {
            let here = join(path, k);
            if k == key {
                Some(here)
            } else {
                find_key(v, key, &here)
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_key(v, key, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// The first thing wrong with `value` against `T`'s schema, if anything is.
fn mismatch<T: Type>(value: &Value) -> Option<BodyError> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    check(&registry, &T::schema_ref(), value, "")
}

/// The first thing wrong with `value` against `T`'s schema.
fn explain<T: Type>(value: &Value) -> BodyError {
    let mut registry = Registry::new();
    T::register(&mut registry);
    if value.is_null() {
        return BodyError {
            param: None,
            message: "the request needs a JSON body".into(),
        };
    }
    check(&registry, &T::schema_ref(), value, "").unwrap_or_else(|| BodyError {
        param: None,
        message: "the request body does not match this route's schema (see /api-docs)".into(),
    })
}

fn resolve<'a>(registry: &'a Registry, r: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
    match r {
        MetaSchemaRef::Inline(s) => Some(s),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// What a schema asks for, in words: `a list`, `a whole number`, `one of "user", "system"`.
fn wanted(registry: &Registry, r: &MetaSchemaRef) -> String {
    let Some(s) = resolve(registry, r) else {
        return "a value".into();
    };
    if let Some(inner) = s.all_of.first() {
        return wanted(registry, inner);
    }
    let alternatives: Vec<String> = s
        .one_of
        .iter()
        .chain(&s.any_of)
        .map(|a| wanted(registry, a))
        .collect();
    if !alternatives.is_empty() {
        return alternatives.join(" or ");
    }
    if !s.enum_items.is_empty() {
        let items: Vec<String> = s.enum_items.iter().map(Value::to_string).collect();
        return format!("one of {}", items.join(", "));
    }
    match s.ty {
        "object" => "an object".into(),
        "array" => match &s.items {
            Some(items) => format!("a list of {}", plural(&wanted(registry, items))),
            None => "a list".into(),
        },
        "string" => "a string".into(),
        "integer" => "a whole number".into(),
        "number" => "a number".into(),
        "boolean" => "true or false".into(),
        _ => "a value".into(),
    }
}

fn plural(what: &str) -> String {
    match what {
        "an object" => "objects".into(),
        "a string" => "strings".into(),
        "a whole number" => "whole numbers".into(),
        "a number" => "numbers".into(),
        other => other.to_owned(),
    }
}

/// What a JSON value is, for a message: `a string ("ten")`, `null`, `a list`.
fn found(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            format!("the string {short:?}")
        }
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A field as a message names it: `` `messages[0].role` ``, or the request body itself.
fn named(path: &str) -> String {
    if path.is_empty() {
        "the request body".into()
    } else {
        format!("`{path}`")
    }
}

fn wrong(path: &str, what: String, value: &Value) -> Option<BodyError> {
    Some(BodyError {
        param: (!path.is_empty()).then(|| path.to_owned()),
        message: format!("{} must be {what}, not {}", named(path), found(value)),
    })
}

/// The first mismatch of `value` at `path` against the schema `r`.
fn check(registry: &Registry, r: &MetaSchemaRef, value: &Value, path: &str) -> Option<BodyError> {
    let s = resolve(registry, r)?;
    for sub in &s.all_of {
        if let Some(p) = check(registry, sub, value, path) {
            return Some(p);
        }
    }
    let alternatives: Vec<&MetaSchemaRef> = s.one_of.iter().chain(&s.any_of).collect();
    if !alternatives.is_empty() {
        if alternatives
            .iter()
            .any(|a| check(registry, a, value, path).is_none())
        {
            return None;
        }
        return wrong(path, wanted(registry, r), value);
    }
    if value.is_null() && s.nullable {
        return None;
    }
    let ok = match s.ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !ok {
        return wrong(path, wanted(registry, r), value);
    }
    if !s.enum_items.is_empty() && !s.enum_items.contains(value) {
        return wrong(path, wanted(registry, r), value);
    }
    if let Some(p) = bounds(s, value, path) {
        return Some(p);
    }
    match value {
        Value::Object(obj) => {
            for name in &s.required {
                if obj.get(*name).is_none_or(Value::is_null) {
                    let field = join(path, name);
                    let what = s
                        .properties
                        .iter()
                        .find(|(n, _)| n == name)
                        .map_or_else(|| "a value".into(), |(_, p)| wanted(registry, p));
                    return Some(BodyError {
                        message: format!("`{field}` is required: give {what}"),
                        param: Some(field),
                    });
                }
            }
            for (name, prop) in &s.properties {
                match obj.get(*name) {
                    None | Some(Value::Null) => {}
                    Some(v) => {
                        if let Some(p) = check(registry, prop, v, &join(path, name)) {
                            return Some(p);
                        }
                    }
                }
            }
            None
        }
        Value::Array(items) => {
            let schema = s.items.as_ref()?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, v)| check(registry, schema, v, &format!("{path}[{i}]")))
        }
        _ => None,
    }
}

/// Minimum, maximum and lengths, as the schema declares them.
fn bounds(s: &MetaSchema, value: &Value, path: &str) -> Option<BodyError> {
    let field = named(path);
    let fail = |message: String| {
        Some(BodyError {
            param: (!path.is_empty()).then(|| path.to_owned()),
            message,
        })
    };
    if let Some(n) = value.as_f64() {
        if let Some(min) = s.minimum
            && (n < min || (s.exclusive_minimum == Some(true) && n <= min))
        {
            return fail(format!("{field} must be at least {min}, not {n}"));
        }
        if let Some(max) = s.maximum
            && (n > max || (s.exclusive_maximum == Some(true) && n >= max))
        {
            return fail(format!("{field} must be at most {max}, not {n}"));
        }
    }
    let len = match value {
        Value::String(t) => Some((t.chars().count(), s.min_length, s.max_length, "characters")),
        Value::Array(a) => Some((a.len(), s.min_items, s.max_items, "items")),
        _ => None,
    };
    if let Some((n, min, max, unit)) = len {
        if let Some(min) = min
            && n < min
        {
            return fail(format!("{field} needs at least {min} {unit}, not {n}"));
        }
        if let Some(max) = max
            && n > max
        {
            return fail(format!("{field} takes at most {max} {unit}, not {n}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::{Enum, Object};
    use serde_json::json;

    #[derive(Debug, Enum)]
    #[oai(rename_all = "lowercase")]
    enum Role {
        User,
        System,
    }

    #[derive(Debug, Object)]
    struct Message {
        role: Role,
        content: String,
    }

    #[derive(Debug, Object)]
    struct Request {
        messages: Vec<Message>,
        #[oai(validator(minimum(value = "1")))]
        max_tokens: Option<u32>,
        stream: Option<bool>,
    }

    fn err(v: Value) -> (Option<String>, String) {
        assert!(Request::parse_from_json(Some(v.clone())).is_err(), "{v}");
        let e = explain::<Request>(&v);
        (e.param, e.message)
    }

    #[test]
    fn names_the_field_in_words() {
        let (param, message) = err(json!({}));
        assert_eq!(param.as_deref(), Some("messages"));
        assert_eq!(message, "`messages` is required: give a list of objects");
        let (param, message) = err(json!({"messages": "hi"}));
        assert_eq!(param.as_deref(), Some("messages"));
        assert_eq!(
            message,
            "`messages` must be a list of objects, not the string \"hi\""
        );
        let (param, message) = err(json!({"messages": [{"role": "bob", "content": "x"}]}));
        assert_eq!(param.as_deref(), Some("messages[0].role"));
        assert_eq!(
            message,
            "`messages[0].role` must be one of \"user\", \"system\", not the string \"bob\""
        );
        let (param, _) = err(json!({"messages": [{"role": "user"}]}));
        assert_eq!(param.as_deref(), Some("messages[0].content"));
        let (param, message) = err(json!({"messages": [], "max_tokens": "ten"}));
        assert_eq!(param.as_deref(), Some("max_tokens"));
        assert_eq!(
            message,
            "`max_tokens` must be a whole number, not the string \"ten\""
        );
        let (param, message) = err(json!({"messages": [], "max_tokens": 0}));
        assert_eq!(param.as_deref(), Some("max_tokens"));
        assert_eq!(message, "`max_tokens` must be at least 1, not 0");
        let (param, message) = err(json!({"messages": [], "stream": "yes"}));
        assert_eq!(param.as_deref(), Some("stream"));
        assert!(message.contains("true or false"), "{message}");
        let (param, message) = err(json!([1, 2]));
        assert_eq!(param, None);
        assert!(
            message.starts_with("the request body must be an object"),
            "{message}"
        );
        // No framework type names anywhere.
        for v in [json!({}), json!({"messages": 3}), json!(null)] {
            let e = explain::<Request>(&v);
            assert!(!e.message.contains("Expected input type"), "{}", e.message);
        }
    }
}
