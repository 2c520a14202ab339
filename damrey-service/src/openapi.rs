//! What the services' OpenAPI documents share (behind the `openapi` feature): the bearer
//! scheme and each guarded operation's requirement, read from the same rule the
//! credential middleware applies; the list of operations a document describes; and a
//! check of a value against a document's schema, with which the services' tests hold
//! their documents to the bodies their handlers accept.

use std::collections::BTreeSet;

use actix_web::http::Method;
use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

use crate::credential::Role;

/// The name of the bearer-token scheme in the documents.
pub const BEARER: &str = "bearer";

/// Finishes a service's document: adds the bearer scheme and, on every operation
/// `roles_for` guards (as the service's middleware does), the scheme's requirement, the
/// roles it admits, and its 401 and 403 answers, whose body is the schema named
/// `error_schema`. Drops the `# Errors` section of the handlers' doc comments, which is
/// for Rust callers: the responses say it for HTTP ones.
pub fn finish(
    openapi: &mut OpenApi,
    roles_for: impl Fn(&Method, &str) -> Option<&'static [Role]>,
    error_schema: &str,
) {
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token granting one of the roles the operation names. A service \
                         configured without tokens lets every request through.",
                    ))
                    .build(),
            ),
        );
    let refusal = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::<utoipa::openapi::schema::Schema>::Ref(
                        Ref::from_schema_name(error_schema),
                    )))
                    .build(),
            )
            .build()
    };
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (method, operation) in operations_mut(item) {
            if let Some(description) = &mut operation.description
                && let Some(start) = description.find("# Errors")
            {
                description.truncate(start);
                let kept = description.trim_end().len();
                description.truncate(kept);
            }
            operation.description = operation.description.take().filter(|d| !d.is_empty());
            let Some(roles) = roles_for(&method, path) else {
                continue;
            };
            let names: Vec<&str> = roles.iter().map(|role| role.name()).collect();
            operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
            let needs = format!("Needs a token of the role {}.", names.join(" or "));
            operation.description = Some(match operation.description.take() {
                Some(description) => format!("{description}\n\n{needs}"),
                None => needs,
            });
            let responses = &mut operation.responses.responses;
            // An operation's own 401 or 403, which says more, stays.
            responses
                .entry("401".to_owned())
                .or_insert_with(|| RefOr::T(refusal("No bearer token, or an unknown one")));
            responses.entry("403".to_owned()).or_insert_with(|| {
                RefOr::T(refusal(&format!(
                    "The token's roles do not include {}",
                    names.join(" or ")
                )))
            });
        }
    }
}

/// Every operation `openapi` describes, as `(method, path)`: `("GET", "/workers/{name}")`.
pub fn operations(openapi: &OpenApi) -> BTreeSet<(String, String)> {
    let mut listed = BTreeSet::new();
    for (path, item) in &openapi.paths.paths {
        let mut item = item.clone();
        for (method, _) in operations_mut(&mut item) {
            listed.insert((method.to_string(), path.clone()));
        }
    }
    listed
}

/// Each operation of a path with its method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::POST, &mut item.post),
        (Method::HEAD, &mut item.head),
        (Method::PUT, &mut item.put),
        (Method::DELETE, &mut item.delete),
        (Method::PATCH, &mut item.patch),
        (Method::OPTIONS, &mut item.options),
        (Method::TRACE, &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|operation| (method, operation)))
}

/// Checks `value` against `schema`, a schema of the JSON `document` (an OpenAPI
/// document as JSON, whose `$ref`s it follows): the keywords the services' documents
/// use (`type`, `enum`, `properties`, `required`, `additionalProperties`, `items`,
/// `prefixItems`, `minItems`, `minimum`, `maximum`, `oneOf`, `allOf`, `$ref`), not
/// `pattern` or `format`. Tests hold the documents to the bodies the handlers accept.
///
/// # Errors
/// Where and how `value` breaks `schema`.
pub fn check(document: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check_at("", document, schema, value)
}

fn check_at(at: &str, document: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        let name = target
            .strip_prefix("#/components/schemas/")
            .ok_or_else(|| format!("{at}: unsupported $ref {target}"))?;
        let schema = &document["components"]["schemas"][name];
        if schema.is_null() {
            return Err(format!("{at}: $ref {target} names no schema"));
        }
        return check_at(at, document, schema, value);
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.iter().any(|kind| is_type(kind, value)) {
            return Err(format!(
                "{at}: {value} is not of type {}",
                types.join(" or ")
            ));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!(
            "{at}: {value} is not one of {}",
            Value::Array(allowed.clone())
        ));
    }
    if let (Some(minimum), Some(number)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && number < minimum
    {
        return Err(format!("{at}: {number} is under {minimum}"));
    }
    if let (Some(maximum), Some(number)) = (
        schema.get("maximum").and_then(Value::as_f64),
        value.as_f64(),
    ) && number > maximum
    {
        return Err(format!("{at}: {number} is over {maximum}"));
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for schema in all {
            check_at(at, document, schema, value)?;
        }
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let passing = one
            .iter()
            .filter(|schema| check_at(at, document, schema, value).is_ok())
            .count();
        if passing != 1 {
            return Err(format!("{at}: {value} matches {passing} of oneOf, not 1"));
        }
    }
    if let Value::Object(fields) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let required = required.as_str().unwrap_or_default();
            if !fields.contains_key(required) {
                return Err(format!("{at}: the required field {required} is missing"));
            }
        }
        for (name, field) in fields {
            let at = format!("{at}/{name}");
            match (
                properties.and_then(|properties| properties.get(name)),
                schema.get("additionalProperties"),
            ) {
                (Some(schema), _) => check_at(&at, document, schema, field)?,
                (None, Some(Value::Bool(false))) => {
                    return Err(format!("{at}: no such field is allowed"));
                }
                (None, Some(schema @ Value::Object(_))) => check_at(&at, document, schema, field)?,
                (None, _) => {}
            }
        }
    }
    if let Value::Array(items) = value {
        if let Some(least) = schema.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < least
        {
            return Err(format!("{at}: {} items, fewer than {least}", items.len()));
        }
        let prefix = schema.get("prefixItems").and_then(Value::as_array);
        let prefix_len = prefix.map_or(0, Vec::len);
        for (i, (item, schema)) in items.iter().zip(prefix.into_iter().flatten()).enumerate() {
            check_at(&format!("{at}/{i}"), document, schema, item)?;
        }
        if let Some(schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate().skip(prefix_len) {
                check_at(&format!("{at}/{i}"), document, schema, item)?;
            }
        }
    }
    Ok(())
}

/// Whether `value` is of the JSON Schema type `kind`.
fn is_type(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn document() -> Value {
        json!({"components": {"schemas": {
            "Thing": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "size": {"type": ["integer", "null"], "minimum": 0},
                    "tags": {"type": "array", "items": {"type": "string"}}
                },
                "required": ["name"],
                "additionalProperties": false
            }
        }}})
    }

    #[test]
    fn a_value_is_checked_through_refs_fields_and_items() {
        let document = document();
        let schema = json!({"$ref": "#/components/schemas/Thing"});

        assert_eq!(
            check(&document, &schema, &json!({"name": "a", "size": null})),
            Ok(())
        );
        assert_eq!(
            check(&document, &schema, &json!({"size": 1})),
            Err(": the required field name is missing".to_owned())
        );
        assert_eq!(
            check(&document, &schema, &json!({"name": "a", "colour": "red"})),
            Err("/colour: no such field is allowed".to_owned())
        );
        assert_eq!(
            check(&document, &schema, &json!({"name": "a", "tags": ["x", 2]})),
            Err("/tags/1: 2 is not of type string".to_owned())
        );
        assert_eq!(
            check(&document, &schema, &json!({"name": "a", "size": -1})),
            Err("/size: -1 is under 0".to_owned())
        );
    }

    #[test]
    fn guarded_operations_get_the_bearer_requirement_and_open_ones_do_not() {
        let mut openapi: OpenApi = serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": {"title": "t", "version": "1"},
            "paths": {
                "/open": {"get": {"description": "Open.\n\n# Errors\nNone.", "responses": {}}},
                "/guarded": {"post": {"responses": {}}}
            }
        }))
        .unwrap();

        finish(
            &mut openapi,
            |_, path| (path == "/guarded").then_some(&[Role::Admin, Role::Read][..]),
            "ErrorBody",
        );

        let document = serde_json::to_value(&openapi).unwrap();
        let open = &document["paths"]["/open"]["get"];
        let guarded = &document["paths"]["/guarded"]["post"];
        assert_eq!(open.get("security"), None);
        assert_eq!(open["description"], "Open.");
        assert_eq!(guarded["security"], json!([{"bearer": []}]));
        assert_eq!(
            guarded["description"],
            "Needs a token of the role admin or read."
        );
        assert_eq!(
            guarded["responses"]["403"]["description"],
            "The token's roles do not include admin or read"
        );
        assert_eq!(
            guarded["responses"]["401"]["content"]["application/json"]["schema"],
            json!({"$ref": "#/components/schemas/ErrorBody"})
        );
        assert_eq!(
            operations(&openapi),
            [("GET", "/open"), ("POST", "/guarded")]
                .map(|(method, path)| (method.to_owned(), path.to_owned()))
                .into()
        );
    }
}
