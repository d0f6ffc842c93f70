//! The file as written: serde structs for the sections whose fields still need parsing
//! (listen specs, CIDRs, targets, regexes, socket addresses). Validation turns them into the
//! typed structs of the parent module, collecting every error on the way.

use serde::Deserialize;

use super::{
    defaults, Agent, CdrConfig, ExternalNumber, Ivr, RegistrarConfig, TransferConfig, TransferType,
    WhenNoAgents,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub sip: RawSip,
    #[serde(default)]
    pub registrar: RegistrarConfig,
    #[serde(default)]
    pub http: Option<RawHttp>,
    #[serde(default)]
    pub trunks: Vec<RawTrunk>,
    #[serde(default)]
    pub agents: Vec<Agent>,
    #[serde(default)]
    pub queues: Vec<RawQueue>,
    #[serde(default)]
    pub ivr: Vec<Ivr>,
    #[serde(default)]
    pub external_numbers: Vec<ExternalNumber>,
    #[serde(default)]
    pub external: RawExternal,
    #[serde(default)]
    pub transfer: TransferConfig,
    #[serde(default)]
    pub cdr: CdrConfig,
    #[serde(default)]
    pub limits: super::LimitsConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSip {
    pub listen: Vec<String>,
    pub domain: String,
    #[serde(default = "t1")]
    pub t1_ms: u64,
    #[serde(default = "t2")]
    pub t2_ms: u64,
    #[serde(default = "t4")]
    pub t4_ms: u64,
    #[serde(default = "max_message_bytes")]
    pub max_message_bytes: usize,
    #[serde(default = "max_headers")]
    pub max_headers: usize,
    #[serde(default = "tcp_idle_timeout_s")]
    pub tcp_idle_timeout_s: u64,
    #[serde(default = "max_tcp_connections")]
    pub max_tcp_connections: usize,
    #[serde(default = "max_calls")]
    pub max_calls: usize,
    #[serde(default = "sip_ring_timeout_s")]
    pub ring_timeout_s: u64,
    #[serde(default = "keepalive_s")]
    pub keepalive_s: u64,
    #[serde(default = "session_expires_s")]
    pub session_expires_s: u64,
    #[serde(default = "min_se_s")]
    pub min_se_s: u64,
    #[serde(default = "worker_threads")]
    pub worker_threads: usize,
    #[serde(default = "defaults::user_agent")]
    pub user_agent: String,
}

fn t1() -> u64 {
    defaults::T1_MS
}
fn t2() -> u64 {
    defaults::T2_MS
}
fn t4() -> u64 {
    defaults::T4_MS
}
fn max_message_bytes() -> usize {
    defaults::MAX_MESSAGE_BYTES
}
fn max_headers() -> usize {
    defaults::MAX_HEADERS
}
fn tcp_idle_timeout_s() -> u64 {
    defaults::TCP_IDLE_TIMEOUT_S
}
fn max_tcp_connections() -> usize {
    defaults::MAX_TCP_CONNECTIONS
}
fn max_calls() -> usize {
    defaults::MAX_CALLS
}
fn keepalive_s() -> u64 {
    60
}
fn session_expires_s() -> u64 {
    1800
}
fn min_se_s() -> u64 {
    90
}
fn worker_threads() -> usize {
    1
}

fn sip_ring_timeout_s() -> u64 {
    defaults::SIP_RING_TIMEOUT_S
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp {
    pub listen: String,
    pub token: Option<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: defaults::HTTP_LISTEN.to_string(),
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrunk {
    pub name: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub outbound: Option<String>,
    #[serde(default)]
    pub access_number: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub name: String,
    pub number: String,
    pub skill: String,
    #[serde(default = "queue_max_waiting")]
    pub max_waiting: usize,
    #[serde(default = "queue_max_wait_s")]
    pub max_wait_s: u64,
    #[serde(default = "queue_ring_timeout_s")]
    pub ring_timeout_s: u64,
    #[serde(default)]
    pub overflow: Option<String>,
    #[serde(default)]
    pub when_no_agents: WhenNoAgents,
    #[serde(default)]
    pub music_uri: Option<String>,
    #[serde(default = "queue_max_missed_offers")]
    pub max_missed_offers: u32,
    #[serde(default)]
    pub default_transfer: Option<TransferType>,
}

fn queue_max_waiting() -> usize {
    defaults::QUEUE_MAX_WAITING
}
fn queue_max_wait_s() -> u64 {
    defaults::QUEUE_MAX_WAIT_S
}
fn queue_ring_timeout_s() -> u64 {
    defaults::QUEUE_RING_TIMEOUT_S
}
fn queue_max_missed_offers() -> u32 {
    defaults::QUEUE_MAX_MISSED_OFFERS
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawExternal {
    pub adhoc_patterns: Vec<String>,
}
