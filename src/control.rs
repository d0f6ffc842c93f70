//! The control API's view of the server ([`crate::api::Control`]): calls are asked through
//! their actors' inboxes (each call answers for itself), agents and queues are read from
//! the contact centre in one short critical section, metrics from the counters.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};

use crate::api::{
    AgentInfo, AgentStateRequest, ApiError, BoxFuture, CallInfo, Control, Health, MetricsSnapshot,
    QueueInfo, TransferAccepted, TransferRequest,
};
use crate::call::CallEvent;
use crate::cc::agents::{AgentEvent, AgentState};
use crate::config::{Config, Target, TransferType};
use crate::endpoint::Endpoint;

/// How long a call may take to answer a query.
const CALL_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ControlPlane {
    ep: Arc<Endpoint>,
    /// The config file to reload from (`None`: the embedded default, nothing to reload).
    config_path: Option<PathBuf>,
}

impl ControlPlane {
    pub fn new(ep: Arc<Endpoint>, config_path: Option<PathBuf>) -> Self {
        ControlPlane { ep, config_path }
    }

    async fn query(&self, key: u64) -> Option<CallInfo> {
        let handle = self.ep.calls.get(key)?;
        let (tx, rx) = oneshot::channel();
        handle.deliver(CallEvent::Query(tx)).ok()?;
        tokio::time::timeout(CALL_QUERY_TIMEOUT, rx)
            .await
            .ok()?
            .ok()
    }

    fn agent_info(&self, id: &str) -> Option<AgentInfo> {
        let state = self.ep.agent_state(id)?;
        let config = self.ep.config();
        let agent = config.agent(id)?;
        Some(AgentInfo {
            id: id.to_owned(),
            state: state.to_string(),
            skills: agent.skills.clone(),
            registered: self
                .ep
                .location()
                .is_registered(id, tokio::time::Instant::now().into_std()),
        })
    }
}

fn parse_key(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::NotFound(format!("no call {id}")))
}

impl Control for ControlPlane {
    fn list_calls(&self) -> BoxFuture<'_, Vec<CallInfo>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for handle in self.ep.calls.handles() {
                if let Some(info) = self.query(handle.key).await {
                    if info.state != "ended" {
                        out.push(info);
                    }
                }
            }
            out.sort_by_key(|a| a.started_at_ms);
            out
        })
    }

    fn get_call(&self, id: &str) -> BoxFuture<'_, Option<CallInfo>> {
        let key = id.parse::<u64>().ok();
        Box::pin(async move { self.query(key?).await })
    }

    fn transfer(
        &self,
        id: &str,
        req: TransferRequest,
    ) -> BoxFuture<'_, Result<TransferAccepted, ApiError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let key = parse_key(&id)?;
            let transfer: TransferType = req.transfer_type.parse().map_err(|_| {
                ApiError::BadRequest(format!("unknown transfer type {}", req.transfer_type))
            })?;
            let target: Target = req
                .target
                .parse()
                .map_err(|e| ApiError::BadRequest(format!("bad target {}: {e}", req.target)))?;
            let handle = self
                .ep
                .calls
                .get(key)
                .ok_or_else(|| ApiError::NotFound(format!("no call {id}")))?;
            let (tx, rx) = oneshot::channel();
            handle
                .deliver(CallEvent::ApiTransfer(Box::new(crate::call::ApiTransfer {
                    transfer,
                    target: target.clone(),
                    reply: tx,
                })))
                .map_err(|_| ApiError::Unavailable("the call is busy".into()))?;
            tokio::time::timeout(CALL_QUERY_TIMEOUT, rx)
                .await
                .map_err(|_| ApiError::Unavailable("the call did not answer".into()))?
                .map_err(|_| ApiError::NotFound(format!("no call {id}")))??;
            Ok(TransferAccepted {
                call_id: id,
                transfer_type: transfer.as_str().to_owned(),
                target: target.to_string(),
            })
        })
    }

    fn hangup(&self, id: &str) -> BoxFuture<'_, Result<(), ApiError>> {
        let id = id.to_owned();
        Box::pin(async move {
            let key = parse_key(&id)?;
            let handle = self
                .ep
                .calls
                .get(key)
                .ok_or_else(|| ApiError::NotFound(format!("no call {id}")))?;
            handle
                .deliver(CallEvent::Hangup(crate::call::HangupCause::Operator))
                .map_err(|_| ApiError::Unavailable("the call is busy".into()))
        })
    }

    fn agents(&self) -> Vec<AgentInfo> {
        let mut ids: Vec<String> = self.ep.agents_snapshot().into_iter().map(|a| a.0).collect();
        ids.sort();
        ids.iter().filter_map(|id| self.agent_info(id)).collect()
    }

    fn set_agent_state(&self, id: &str, state: AgentStateRequest) -> Result<AgentInfo, ApiError> {
        if self.ep.agent_state(id).is_none() {
            return Err(ApiError::NotFound(format!("no agent {id}")));
        }
        let not_ready = match state.state.as_str() {
            "not_ready" => true,
            "idle" => false,
            other => return Err(ApiError::BadRequest(format!("cannot set state {other}"))),
        };
        self.ep.agent_event(id, AgentEvent::SetNotReady(not_ready));
        self.agent_info(id)
            .ok_or_else(|| ApiError::NotFound(format!("no agent {id}")))
    }

    fn queues(&self) -> Vec<QueueInfo> {
        let config = self.ep.config();
        let agents = self.ep.agents_snapshot();
        self.ep
            .queue_status()
            .into_iter()
            .filter_map(|q| {
                let qc = config.queue(&q.name)?;
                let with_skill = agents.iter().filter(|a| a.2.iter().any(|s| s == &qc.skill));
                let (mut idle, mut logged_in) = (0, 0);
                for a in with_skill {
                    if a.1 != AgentState::LoggedOut {
                        logged_in += 1;
                    }
                    if a.1 == AgentState::Idle {
                        idle += 1;
                    }
                }
                Some(QueueInfo {
                    name: q.name.clone(),
                    number: qc.number.clone(),
                    skill: qc.skill.clone(),
                    waiting: q.waiting,
                    longest_wait_ms: q.longest_wait.as_millis() as u64,
                    agents_idle: idle,
                    agents_logged_in: logged_in,
                })
            })
            .collect()
    }

    fn metrics(&self) -> MetricsSnapshot {
        let c = &self.ep.counters;
        let mut agents_by_state = std::collections::BTreeMap::new();
        for (_, state, _) in self.ep.agents_snapshot() {
            *agents_by_state.entry(state.to_string()).or_insert(0u64) += 1;
        }
        let outcomes = self.ep.outcomes();
        MetricsSnapshot {
            active_calls: c.active_calls.load(Ordering::Relaxed) as u64,
            calls_by_outcome: outcomes.calls.clone(),
            transfers: outcomes.transfers.clone(),
            registrations: self.ep.location().bindings.count() as u64,
            agents_by_state,
            queues: {
                drop(outcomes);
                self.queues()
            },
            transactions: c.transactions.load(Ordering::Relaxed) as u64,
            retransmissions: c.retransmissions.load(Ordering::Relaxed),
            parse_errors: c.parse_errors.load(Ordering::Relaxed),
            rejected_by_reason: self.ep.outcomes().rejected.clone(),
        }
    }

    fn reload(&self) -> BoxFuture<'_, Result<(), Vec<String>>> {
        Box::pin(async move {
            let Some(path) = &self.config_path else {
                return Err(vec![
                    "running on the embedded default config: nothing to reload".into(),
                ]);
            };
            let config = Config::load(path).map_err(|e| vec![e.to_string()])?;
            self.ep.reload(config)
        })
    }

    fn events(&self) -> broadcast::Receiver<crate::events::Event> {
        self.ep.events.subscribe()
    }

    fn health(&self) -> Health {
        let draining = self.ep.draining.load(Ordering::Relaxed);
        Health {
            ready: self.ep.transport().is_some() && !draining,
            draining,
        }
    }
}
