//! HTTP control API (DESIGN §4): calls, transfers, agents, queues, reload, events (SSE),
//! Prometheus metrics and health, served by axum over HTTP/1.1.
//!
//! The server knows nothing about SIP: it talks to the rest of handover only through the
//! [`Control`] trait, which the application implements over its call actors, agent directory
//! and lifecycle. Tests use a fake `Control`.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/calls` | 200 `[CallInfo]` |
//! | `GET /api/calls/{id}` | 200 `CallInfo`, 404 |
//! | `POST /api/calls/{id}/transfer` `{"type","target"}` | 202 `TransferAccepted`, 400, 403 (policy rule), 404, 409 |
//! | `POST /api/calls/{id}/hangup` | 202 `{"call_id"}`, 404 |
//! | `GET /api/agents` | 200 `[AgentInfo]` |
//! | `GET /api/agents/{id}` | 200 `AgentInfo`, 404 |
//! | `PUT /api/agents/{id}/state` `{"state":"idle"\|"not_ready"}` | 200 `AgentInfo`, 400, 404, 409 |
//! | `GET /api/queues` | 200 `[QueueInfo]` |
//! | `POST /api/reload` | 200 `{"reloaded":true}`, 422 `{"errors":[..]}` (old config kept) |
//! | `GET /api/events` | SSE stream of [`Event`](crate::events::Event)s |
//! | `GET /metrics` | OpenMetrics text |
//! | `GET /health` | 200 `Health`, or 503 when not ready or draining |
//!
//! Everything except `/health` needs `Authorization: Bearer <token>` when a token is
//! configured ([`auth`]). Errors are JSON `{"error","detail"}` ([`ApiError`]). Request bodies
//! are limited to [`MAX_BODY_BYTES`] and concurrent connections to [`MAX_CONNECTIONS`].
//! The server stops accepting when the shutdown watch turns true (or its sender is dropped),
//! ends open SSE streams and finishes in-flight requests.

pub mod auth;
mod listener;
pub mod metrics;
pub mod sse;
pub mod types;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

pub use types::{
    AgentInfo, AgentStateRequest, ApiError, CallInfo, Health, LegInfo, MetricsSnapshot, QueueInfo,
    TransferAccepted, TransferInfo, TransferRequest,
};

/// A boxed, sendable future: the return type of the async [`Control`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Largest accepted request body; the JSON bodies of this API are a few dozen bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest accepted `{id}` path segment.
pub const MAX_ID_LEN: usize = 256;
/// Concurrent HTTP connections (SSE clients included); further clients wait in the backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// What the API asks of the server. Implemented by the application over its shared state.
///
/// The futures borrow only `self`: implementations copy `id` before going async.
pub trait Control: Send + Sync + 'static {
    fn list_calls(&self) -> BoxFuture<'_, Vec<CallInfo>>;
    fn get_call(&self, id: &str) -> BoxFuture<'_, Option<CallInfo>>;
    /// Same policy code as a REFER: refusals come back as [`ApiError::Refused`].
    fn transfer(
        &self,
        id: &str,
        req: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferAccepted, ApiError>>;
    fn hangup(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>>;
    fn agents(&self) -> Vec<AgentInfo>;
    fn set_agent_state(&self, id: &str, state: AgentStateRequest) -> Result<AgentInfo, ApiError>;
    fn queues(&self) -> Vec<QueueInfo>;
    fn metrics(&self) -> MetricsSnapshot;
    /// `Err` carries the config errors; the old config stays in force.
    fn reload(&self) -> BoxFuture<'_, Result<(), Vec<String>>>;
    fn events(&self) -> broadcast::Receiver<crate::events::Event>;
    fn health(&self) -> Health;
}

/// A running API server.
#[derive(Debug)]
pub struct ApiServer {
    local_addr: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl ApiServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until the server has stopped after shutdown.
    pub async fn join(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Binds `listen` (port 0 allowed) and serves the API until `shutdown` turns true.
pub async fn serve(
    listen: SocketAddr,
    token: Option<String>,
    control: Arc<dyn Control>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<ApiServer> {
    let tcp = tokio::net::TcpListener::bind(listen).await?;
    let local_addr = tcp.local_addr()?;
    let listener = listener::LimitedListener::new(tcp, MAX_CONNECTIONS);
    let app = router(token, control, shutdown.clone());
    let mut stop = shutdown;
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                // A dropped sender also means shutdown.
                let _ = stop.wait_for(|v| *v).await;
            })
            .await
    });
    tracing::info!(%local_addr, "HTTP control API listening");
    Ok(ApiServer { local_addr, task })
}

#[derive(Clone)]
struct AppState {
    control: Arc<dyn Control>,
    shutdown: watch::Receiver<bool>,
}

/// The API's routes; [`serve`] runs them, tests may drive them directly.
pub fn router(
    token: Option<String>,
    control: Arc<dyn Control>,
    shutdown: watch::Receiver<bool>,
) -> Router {
    let state = AppState { control, shutdown };
    let protected = Router::new()
        .route("/api/calls", get(list_calls))
        .route("/api/calls/{id}", get(get_call))
        .route("/api/calls/{id}/transfer", post(transfer))
        .route("/api/calls/{id}/hangup", post(hangup))
        .route("/api/agents", get(list_agents))
        .route("/api/agents/{id}", get(get_agent))
        .route("/api/agents/{id}/state", put(set_agent_state))
        .route("/api/queues", get(list_queues))
        .route("/api/reload", post(reload))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            auth::BearerToken::new(token),
            auth::require_bearer,
        ));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(ApiError::BadRequest(format!(
            "id must be 1..={MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

async fn list_calls(State(s): State<AppState>) -> Json<Vec<CallInfo>> {
    Json(s.control.list_calls().await)
}

async fn get_call(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CallInfo>, ApiError> {
    check_id(&id)?;
    s.control
        .get_call(&id)
        .await
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("call {id}")))
}

async fn transfer(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let req: TransferRequest = parse_body(&body)?;
    req.validate()?;
    let accepted = s.control.transfer(&id, req).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

async fn hangup(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    check_id(&id)?;
    s.control.hangup(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "call_id": id })),
    )
        .into_response())
}

async fn list_agents(State(s): State<AppState>) -> Json<Vec<AgentInfo>> {
    Json(s.control.agents())
}

async fn get_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AgentInfo>, ApiError> {
    check_id(&id)?;
    s.control
        .agents()
        .into_iter()
        .find(|a| a.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("agent {id}")))
}

async fn set_agent_state(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<AgentInfo>, ApiError> {
    check_id(&id)?;
    let req: AgentStateRequest = parse_body(&body)?;
    req.validate()?;
    s.control.set_agent_state(&id, req).map(Json)
}

async fn list_queues(State(s): State<AppState>) -> Json<Vec<QueueInfo>> {
    Json(s.control.queues())
}

async fn reload(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    match s.control.reload().await {
        Ok(()) => Ok(Json(serde_json::json!({ "reloaded": true }))),
        Err(errors) => Err(ApiError::InvalidConfig(errors)),
    }
}

async fn events(State(s): State<AppState>) -> impl IntoResponse {
    sse::sse_response(s.control.events(), s.shutdown.clone())
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let body = metrics::render(&s.control.metrics());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response()
}

async fn health(State(s): State<AppState>) -> Response {
    let h = s.control.health();
    let status = if h.ready && !h.draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(h)).into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".to_owned())
}

#[cfg(test)]
mod tests;
