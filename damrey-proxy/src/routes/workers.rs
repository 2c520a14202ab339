//! `/worker/add`, `/worker/del`, `/worker/chg`, `/workers/get` and `/workers/{name}`.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use damrey_wire::WorkerSpec;
use damrey_wire::rest::{ErrorBody, WorkerList};
use damrey_wire::spec::validate_name;
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::AppState;
use crate::error::ApiError;
use crate::feed::MAX_WAIT;

/// [`damrey_wire::rest::WorkerList`] written from a shared snapshot without copying it.
#[derive(Serialize)]
struct WorkerListView<'a> {
    version: i64,
    workers: &'a [WorkerSpec],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    warnings: BTreeMap<&'a str, Vec<String>>,
}

/// The query of `GET /workers/get`: `?after=N&wait_ms=M` (no other parameter).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Wait while the stored version equals this one.
    pub after: Option<i64>,
    /// The longest to wait in ms (default and most: 30000); needs `after`.
    pub wait_ms: Option<u64>,
}

/// A stored worker as `/worker/add` and `/worker/chg` answer it: the config, and
/// `warnings` when the stored configs cannot carry its lines yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredWorker {
    /// The config as stored.
    #[serde(flatten)]
    pub worker: WorkerSpec,
    /// [`WorkerSpec::warnings`], when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// [`WorkerSpec`]'s schema with `warnings` beside its fields, every field present.
impl PartialSchema for StoredWorker {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = WorkerSpec::schema() else {
            unreachable!("a worker config's schema is an object");
        };
        object.additional_properties = None;
        object.required = ["name", "agent", "mpu", "commands"]
            .map(str::to_owned)
            .to_vec();
        object.properties.insert(
            "warnings".to_owned(),
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(
                    "What in the stored configs cannot carry this worker's lines yet; absent when nothing",
                ))
                .into(),
        );
        object.description =
            Some("The worker as stored, with warnings when its lines cannot run yet".to_owned());
        object.example = None;
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for StoredWorker {}

/// `POST /worker/add`: 201 and the stored worker (with its `warnings`, if any); 409 when
/// the name exists.
///
/// # Errors
/// [`ApiError`] for a taken name or a store failure.
#[utoipa::path(post, path = "/worker/add", tag = "workers", request_body = WorkerSpec,
    responses(
        (status = 201, description = "The stored worker", body = StoredWorker),
        (status = 400, description = "The body, the query or a name is invalid", body = ErrorBody),
        (status = 409, description = "A worker by that name exists", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn add(
    state: web::Data<AppState>,
    spec: web::Json<WorkerSpec>,
) -> Result<HttpResponse, ApiError> {
    let change = state.store.add_worker(&spec).await?;
    state.feed.publish(change.version);
    let body = with_warnings(&state, change.worker).await?;
    Ok(HttpResponse::Created().json(body))
}

/// The stored worker's JSON, with a `warnings` list when the stored configs cannot carry
/// its lines yet ([`WorkerSpec::warnings`]): the change is kept, as configs may arrive
/// in any order.
async fn with_warnings(state: &AppState, worker: WorkerSpec) -> Result<StoredWorker, ApiError> {
    let snapshot = state.store.snapshot().await?;
    let warnings = worker.warnings(&snapshot.workers);
    Ok(StoredWorker { worker, warnings })
}

/// `POST /worker/del`: 200 and the removed worker; 404 when there is none.
///
/// # Errors
/// [`ApiError`] for an unknown name or a store failure.
#[utoipa::path(post, path = "/worker/del", tag = "workers", request_body(content = WorkerSpec,
        description = "The worker to remove: a valid config, of which only `name` counts"),
    responses(
        (status = 200, description = "The removed worker", body = WorkerSpec),
        (status = 400, description = "The body, the query or a name is invalid", body = ErrorBody),
        (status = 404, description = "No worker by that name", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn delete(
    state: web::Data<AppState>,
    spec: web::Json<WorkerSpec>,
) -> Result<HttpResponse, ApiError> {
    let change = state.store.delete_worker(&spec.name).await?;
    state.feed.publish(change.version);
    Ok(HttpResponse::Ok().json(change.worker))
}

/// `POST /worker/chg`: 200 and the stored worker (with its `warnings`, if any); 404 when
/// there is none.
///
/// # Errors
/// [`ApiError`] for an unknown name or a store failure.
#[utoipa::path(post, path = "/worker/chg", tag = "workers", request_body = WorkerSpec,
    responses(
        (status = 200, description = "The stored worker", body = StoredWorker),
        (status = 400, description = "The body, the query or a name is invalid", body = ErrorBody),
        (status = 404, description = "No worker by that name", body = ErrorBody),
        (status = 413, description = "The body is larger than the limit", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn change(
    state: web::Data<AppState>,
    spec: web::Json<WorkerSpec>,
) -> Result<HttpResponse, ApiError> {
    let change = state.store.change_worker(&spec).await?;
    state.feed.publish(change.version);
    let body = with_warnings(&state, change.worker).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /workers/get[?after=N[&wait_ms=M]]`: every worker and the config version; with
/// `after`, first waits (at most `wait_ms`, at most 30 s) while the version is still `N`.
///
/// # Errors
/// [`ApiError`] for a bad query or a store failure.
#[utoipa::path(get, path = "/workers/get", tag = "workers", params(ListQuery),
    responses(
        (status = 200, description = "Every worker and the config version", body = WorkerList),
        (status = 400, description = "The query is invalid (`wait_ms` without `after`, an unknown parameter)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let snapshot = match (query.after, query.wait_ms) {
        (None, None) => state.store.snapshot().await?,
        (None, Some(_)) => {
            return Err(ApiError::Invalid(
                "wait_ms needs after, the version to wait past".to_owned(),
            ));
        }
        (Some(after), wait_ms) => {
            let wait = wait_ms.map_or(MAX_WAIT, Duration::from_millis);
            state
                .feed
                .wait_for_change(after, wait, || state.store.snapshot())
                .await?
        }
    };
    let warnings = snapshot
        .workers
        .iter()
        .map(|worker| (worker.name.as_str(), worker.warnings(&snapshot.workers)))
        .filter(|(_, warnings)| !warnings.is_empty())
        .collect();
    Ok(HttpResponse::Ok().json(WorkerListView {
        version: snapshot.version,
        workers: &snapshot.workers,
        warnings,
    }))
}

/// `GET /workers/{name}`: 200 and the worker; 404 when there is none.
///
/// # Errors
/// [`ApiError`] for an invalid or unknown name or a store failure.
#[utoipa::path(get, path = "/workers/{name}", tag = "workers",
    params(("name" = String, Path, description = "The worker's name")),
    responses(
        (status = 200, description = "The worker", body = WorkerSpec),
        (status = 400, description = "The name is invalid", body = ErrorBody),
        (status = 404, description = "No worker by that name", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is unavailable (`Retry-After: 1`)", body = ErrorBody),
    ))]
pub async fn get(
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    validate_name("name", &name).map_err(|e| ApiError::Invalid(e.to_string()))?;
    match state.store.worker(&name).await? {
        Some(worker) => Ok(HttpResponse::Ok().json(worker)),
        None => Err(ApiError::NotFound(format!(
            "no worker named {:?}",
            name.as_str()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use damrey_wire::rest::WorkerList;

    #[test]
    fn the_borrowed_view_writes_what_the_shared_worker_list_reads() {
        let workers = [WorkerSpec::new("add").command("sqsum", "nobody")];
        let warnings = BTreeMap::from([("add", workers[0].warnings(&workers))]);
        let view = WorkerListView {
            version: 4,
            workers: &workers,
            warnings,
        };

        let read: WorkerList =
            serde_json::from_value(serde_json::to_value(&view).unwrap()).unwrap();

        assert_eq!(read.version, 4);
        assert_eq!(read.workers, workers);
        assert_eq!(read.warnings["add"], workers[0].warnings(&workers));
    }
}
