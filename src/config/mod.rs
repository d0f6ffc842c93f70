//! Configuration: the typed, validated form of `config/handover.toml` (DESIGN §4).
//!
//! Contract:
//! - [`Config::from_toml_str`] is pure: TOML text in, a fully validated [`Config`] or
//!   [`ConfigErrors`] out. [`Config::load`] is the only function that touches the file system.
//! - Unknown fields are rejected in every table (`deny_unknown_fields`).
//! - Errors name the 1-based line and the dotted field (`agents[1].password`). Syntax, type and
//!   unknown-field errors come from the TOML parser (one per run, as it stops there); semantic
//!   errors are all collected, so an operator fixes a file in one pass.
//! - Every section but `[sip]` is optional; defaults are the `defaults::*` constants and are
//!   documented next to each field in `config/handover.toml`, which is also the embedded
//!   default ([`Config::embedded_default`]).
//! - Everything an operator writes as a string with structure (listen specs, CIDRs, targets,
//!   regexes, socket addresses) is parsed here into a typed value; SIP URIs are checked for
//!   scheme and host and kept as strings for the SIP codec to parse.

mod error;
mod raw;
mod spans;
mod types;
mod validate;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[sip] listen` holds the transport's own listener type, parsed from the file's strings.
pub use crate::transport::{ListenSpec, ListenSpecError, Protocol};
pub use error::{ConfigError, ConfigErrors, ConfigLoadError, ConfigWarning};
pub use types::{
    AgentHangupPolicy, Cidr, CidrError, Target, TargetParseError, TransferType,
    UnknownTransferType, WhenNoAgents,
};

/// The embedded default configuration (a documented copy of DESIGN §4's example).
pub const EMBEDDED_DEFAULT_TOML: &str = include_str!("../../config/handover.toml");

/// Default values of optional fields.
pub mod defaults {
    pub const T1_MS: u64 = 500;
    pub const T2_MS: u64 = 4000;
    pub const T4_MS: u64 = 5000;
    pub const MAX_MESSAGE_BYTES: usize = 65535;
    pub const MAX_HEADERS: usize = 256;
    pub const TCP_IDLE_TIMEOUT_S: u64 = 600;
    pub const MAX_TCP_CONNECTIONS: usize = 4096;
    pub const MAX_CALLS: usize = 10_000;
    pub const SIP_RING_TIMEOUT_S: u64 = 30;
    pub const MIN_EXPIRES_S: u32 = 60;
    pub const MAX_EXPIRES_S: u32 = 3600;
    pub const DEFAULT_EXPIRES_S: u32 = 3600;
    pub const NONCE_TTL_S: u64 = 300;
    pub const MAX_CONTACTS_PER_AOR: usize = 5;
    pub const HTTP_LISTEN: &str = "127.0.0.1:8080";
    pub const QUEUE_MAX_WAITING: usize = 20;
    pub const QUEUE_MAX_WAIT_S: u64 = 120;
    pub const QUEUE_RING_TIMEOUT_S: u64 = 15;
    pub const QUEUE_MAX_MISSED_OFFERS: u32 = 1;
    pub const IVR_MAX_WAITING_S: u64 = 600;
    pub const TRANSFER_RING_TIMEOUT_S: u64 = 30;
    pub const CDR_FLUSH_MS: u64 = 100;
    pub const PREFIX_SUCCESS: &str = "*1";
    pub const PREFIX_RELEASE: &str = "*2";
    pub const PREFIX_CONVERSATION: &str = "*3";
    pub const PREFIX_HANGUP: &str = "*4";

    /// `handover/<crate version>`.
    pub fn user_agent() -> String {
        format!("handover/{}", env!("CARGO_PKG_VERSION"))
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub sip: SipConfig,
    pub registrar: RegistrarConfig,
    pub http: HttpConfig,
    pub trunks: Vec<Trunk>,
    pub agents: Vec<Agent>,
    pub queues: Vec<Queue>,
    pub ivr: Vec<Ivr>,
    pub external_numbers: Vec<ExternalNumber>,
    pub external: ExternalConfig,
    pub transfer: TransferConfig,
    pub cdr: CdrConfig,
    pub limits: LimitsConfig,
    /// Derived: the address of each agent's static contact (an IP literal) → the agent's
    /// index in `agents` (the first one, if two share an address). Looked up for every
    /// INVITE, so it is built once per config instead of parsing every contact per call.
    pub static_contacts: std::collections::HashMap<SocketAddr, usize>,
    /// Derived: agent id → index in `agents` (the first, if an id repeated). An INVITE looks
    /// agents up by id two or three times (dialled number, caller, target), and a contact
    /// centre has hundreds of them: a scan of every agent per lookup grew with the roster.
    pub agent_index: std::collections::HashMap<String, usize>,
}

/// `[sip]`: sockets, domain/realm, RFC 3261 timers and resource bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipConfig {
    pub listen: Vec<ListenSpec>,
    /// Registrar domain and digest realm.
    pub domain: String,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    pub max_message_bytes: usize,
    pub max_headers: usize,
    pub tcp_idle_timeout_s: u64,
    pub max_tcp_connections: usize,
    pub max_calls: usize,
    /// How long an agent leg rings before the offer counts as missed.
    pub ring_timeout_s: u64,
    /// OPTIONS keep-alives this often (s): in-dialog to every connected leg (a leg that stops
    /// answering ends its call) and to every registered phone (one that stops answering
    /// loses its binding). 0 = off.
    pub keepalive_s: u64,
    /// Session interval handover asks for on the legs it starts (RFC 4028 `Session-Expires`,
    /// s); 0 = ask for none (a peer's own request is still honoured).
    pub session_expires_s: u64,
    /// The smallest session interval handover accepts (RFC 4028 `Min-SE`, s): smaller
    /// requests get 422.
    pub min_se_s: u64,
    /// Threads that run the calls (read at start; `TOKIO_WORKER_THREADS` overrides it).
    pub worker_threads: usize,
    /// `User-Agent`/`Server` header value; empty means the header is not sent.
    pub user_agent: String,
}

impl SipConfig {
    /// RFC 3261 §17 timer base values (T1, T2, T4).
    pub fn timers(&self) -> (Duration, Duration, Duration) {
        (
            Duration::from_millis(self.t1_ms),
            Duration::from_millis(self.t2_ms),
            Duration::from_millis(self.t4_ms),
        )
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_s)
    }

    pub fn tcp_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.tcp_idle_timeout_s)
    }
}

/// `[limits]`: flood and brute-force protection (per source address).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// New requests (INVITE, REGISTER, OPTIONS, ...) per second from one source address;
    /// 0 = unlimited.
    pub requests_per_source: u32,
    /// Apply the per-source limit to trunk sources too (a carrier sends every customer's
    /// call from one address, so this is off by default).
    pub limit_trunks: bool,
    /// `reply` (503 with Retry-After) or `drop` for requests over the limit.
    pub over_limit: OverLimit,
    /// Failed digest attempts (per source and per user) before back-off starts; 0 = never.
    pub auth_failures_before_backoff: u32,
    /// Longest back-off (s); it doubles from 1 s with each further failure.
    pub max_auth_backoff_s: u64,
    /// Via headers a request may carry (loop and amplification guard).
    pub max_via: usize,
    /// Open TCP connections from one address.
    pub tcp_connections_per_source: usize,
    /// Bytes queued for sending per TCP connection before sends are refused.
    pub tcp_buffered_bytes: usize,
    /// A TCP peer that sends part of a message and stalls this long is cut off (s).
    pub slow_sender_timeout_s: u64,
    /// Open transactions (server and client, every call's and the registrar's) beyond which
    /// new work — new calls, REGISTER, OPTIONS — gets 503 with Retry-After.
    pub max_transactions: usize,
}

/// What happens to a request over the per-source rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    Reply,
    Drop,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            requests_per_source: 100,
            limit_trunks: false,
            over_limit: OverLimit::Reply,
            auth_failures_before_backoff: 5,
            max_auth_backoff_s: 300,
            max_via: 70,
            tcp_connections_per_source: 256,
            tcp_buffered_bytes: 256 * 1024,
            slow_sender_timeout_s: 10,
            max_transactions: 200_000,
        }
    }
}

/// `[registrar]`: REGISTER expiry bounds and digest nonce lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Shorter requested expiries get 423 Interval Too Brief with `Min-Expires`.
    pub min_expires_s: u32,
    /// Longer requested expiries are shortened to this.
    pub max_expires_s: u32,
    /// Expiry granted when the REGISTER names none.
    pub default_expires_s: u32,
    pub nonce_ttl_s: u64,
    pub max_contacts_per_aor: usize,
    /// Digest algorithms offered in 401/407 challenges, most preferred first (RFC 8760):
    /// `"SHA-256"`, `"MD5"`.
    pub algorithms: Vec<String>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires_s: defaults::MIN_EXPIRES_S,
            max_expires_s: defaults::MAX_EXPIRES_S,
            default_expires_s: defaults::DEFAULT_EXPIRES_S,
            nonce_ttl_s: defaults::NONCE_TTL_S,
            max_contacts_per_aor: defaults::MAX_CONTACTS_PER_AOR,
            algorithms: vec!["SHA-256".to_owned(), "MD5".to_owned()],
        }
    }
}

impl RegistrarConfig {
    pub fn nonce_ttl(&self) -> Duration {
        Duration::from_secs(self.nonce_ttl_s)
    }
}

/// `[http]`: control API, SSE events, metrics, health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/api/*`; `None` = no authentication (only allowed on loopback).
    pub token: Option<String>,
    /// The control API runs only when the config has an `[http]` section.
    pub enabled: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            enabled: false,
        }
    }
}

/// `[[trunks]]`: where customer calls come from and where external numbers are dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    /// Source networks whose INVITEs are customer calls.
    pub sources: Vec<Cidr>,
    /// SIP URI external numbers are sent to (`None`: inbound-only trunk).
    pub outbound: Option<String>,
    /// Number presented to external parties when the customer's number is not forwarded.
    pub access_number: Option<String>,
}

/// `[[agents]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Extension and digest user name.
    pub id: String,
    pub password: String,
    #[serde(default)]
    pub skills: Vec<String>,
    /// Static contact for phones that don't register (the agent counts as logged in).
    #[serde(default)]
    pub contact: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    /// Derived when the config is validated: where `contact` points when its host is an IP
    /// literal (`None` otherwise). Every call to the agent needs it; parsing the URI once
    /// per config spares a parse per call. Not a config key.
    #[serde(skip)]
    pub contact_destination: Option<crate::transport::Destination>,
}

impl Agent {
    pub fn has_skill(&self, skill: &str) -> bool {
        self.skills.iter().any(|s| s == skill)
    }
}

/// `[[queues]]`: a skill queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub name: String,
    pub number: String,
    pub skill: String,
    pub max_waiting: usize,
    pub max_wait_s: u64,
    /// How long each agent is rung for one offer from this queue.
    pub ring_timeout_s: u64,
    /// Where a call goes when `max_wait_s` passes (`None`: 480 to the caller).
    pub overflow: Option<Target>,
    pub when_no_agents: WhenNoAgents,
    /// Music-on-hold / announcement URI bridged while waiting (`None`: caller is held silent).
    pub music_uri: Option<String>,
    /// Consecutive missed offers after which an agent goes `not_ready` (0 = never).
    pub max_missed_offers: u32,
    /// Transfer type of a REFER to this queue when neither URI nor prefix says.
    pub default_transfer: Option<TransferType>,
}

impl Queue {
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(self.max_wait_s)
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_s)
    }
}

/// `[[ivr]]`: an IVR / automatic flow on a media server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ivr {
    pub name: String,
    pub number: String,
    pub uri: String,
    /// Hang-up transfer: how long the agent stays reserved (`waiting`) for the call's return.
    #[serde(default = "default_ivr_max_waiting_s")]
    pub max_waiting_s: u64,
    #[serde(default)]
    pub default_transfer: Option<TransferType>,
}

fn default_ivr_max_waiting_s() -> u64 {
    defaults::IVR_MAX_WAITING_S
}

impl Ivr {
    pub fn max_waiting(&self) -> Duration {
        Duration::from_secs(self.max_waiting_s)
    }
}

/// `[[external_numbers]]`: a configured external number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalNumber {
    pub name: String,
    pub number: String,
    /// Present the customer's number to the external party (else the trunk's access number).
    #[serde(default)]
    pub user_number_forwarding: bool,
    #[serde(default)]
    pub default_transfer: Option<TransferType>,
}

/// `[external]`: numbers agents may type.
#[derive(Debug, Clone, Default)]
pub struct ExternalConfig {
    /// Compiled `adhoc_patterns`; a typed number is allowed if any matches.
    pub adhoc_patterns: Vec<regex::Regex>,
}

impl ExternalConfig {
    pub fn matches_adhoc(&self, number: &str) -> bool {
        self.adhoc_patterns.iter().any(|re| re.is_match(number))
    }
}

/// `[transfer]`: defaults and dial prefixes for REFER type selection (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferConfig {
    pub default_blind: TransferType,
    pub prefixes: TransferPrefixes,
    pub agent_hangup_during_conversation: AgentHangupPolicy,
    /// Seconds an agent spends in `wrap_up` after a call releases it (0: straight to idle).
    pub wrap_up_s: u64,
    /// How long a transfer target rings before the attempt fails.
    pub ring_timeout_s: u64,
    /// Where a customer goes when a release transfer's target fails, or a hang-up transfer
    /// cannot return the call to its agent and the call came through no queue
    /// (`queue:<name>`, `agent:<id>`, `ivr:<name>`, ...). None: released with a Reason.
    pub fallback: Option<String>,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            default_blind: TransferType::Release,
            prefixes: TransferPrefixes::default(),
            agent_hangup_during_conversation: AgentHangupPolicy::Continue,
            wrap_up_s: 0,
            ring_timeout_s: defaults::TRANSFER_RING_TIMEOUT_S,
            fallback: None,
        }
    }
}

impl TransferConfig {
    /// The parsed `fallback` target (validated at load).
    pub fn fallback_target(&self) -> Option<Target> {
        self.fallback.as_deref().and_then(|s| s.parse().ok())
    }

    pub fn wrap_up(&self) -> Duration {
        Duration::from_secs(self.wrap_up_s)
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_s)
    }

    /// Splits a dialled Refer-To user part into (type, number) if it starts with a prefix.
    /// Prefixes are validated so that at most one matches.
    pub fn split_prefix<'a>(&self, user: &'a str) -> Option<(TransferType, &'a str)> {
        TransferType::ALL.into_iter().find_map(|t| {
            user.strip_prefix(self.prefixes.get(t))
                .map(|rest| (t, rest))
        })
    }
}

/// Dial prefixes selecting a transfer type (`*1` + number = success transfer, ...).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransferPrefixes {
    pub success: String,
    pub release: String,
    pub conversation: String,
    pub hangup: String,
}

impl Default for TransferPrefixes {
    fn default() -> Self {
        TransferPrefixes {
            success: defaults::PREFIX_SUCCESS.into(),
            release: defaults::PREFIX_RELEASE.into(),
            conversation: defaults::PREFIX_CONVERSATION.into(),
            hangup: defaults::PREFIX_HANGUP.into(),
        }
    }
}

impl TransferPrefixes {
    pub fn get(&self, t: TransferType) -> &str {
        match t {
            TransferType::Success => &self.success,
            TransferType::Release => &self.release,
            TransferType::Conversation => &self.conversation,
            TransferType::Hangup => &self.hangup,
        }
    }
}

/// `[cdr]`: call detail records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdrConfig {
    /// JSON-lines file CDRs are appended to; `None` (or no `[cdr]`): no CDRs are written.
    /// A relative path is relative to the working directory.
    pub path: Option<PathBuf>,
    /// Group-commit interval: records are fsynced at most this long after the call ends.
    pub flush_ms: u64,
}

impl Default for CdrConfig {
    fn default() -> Self {
        CdrConfig {
            path: None,
            flush_ms: defaults::CDR_FLUSH_MS,
        }
    }
}

impl CdrConfig {
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_ms)
    }
}

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml_str(src: &str) -> Result<Config, ConfigErrors> {
        validate::from_toml_str(src)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigLoadError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|source| ConfigLoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&src).map_err(|errors| ConfigLoadError::Invalid {
            path: path.to_path_buf(),
            errors,
        })
    }

    /// The embedded `config/handover.toml` (serves 127.0.0.1:5060 with demo agents).
    pub fn embedded_default() -> Config {
        // The file is compiled in and checked by the test suite; failing here is a build bug.
        Config::from_toml_str(EMBEDDED_DEFAULT_TOML)
            .expect("embedded config/handover.toml is valid")
    }

    /// The first trunk whose sources contain `ip` (customer traffic ACL).
    pub fn trunk_for_source(&self, ip: IpAddr) -> Option<&Trunk> {
        self.trunks
            .iter()
            .find(|t| t.sources.iter().any(|c| c.contains(ip)))
    }

    /// The trunk external numbers are dialled through: the first with `outbound`.
    pub fn outbound_trunk(&self) -> Option<&Trunk> {
        self.trunks.iter().find(|t| t.outbound.is_some())
    }

    /// The agent whose static contact is at `addr` (a phone that does not register is known
    /// by its address).
    pub fn agent_at_static_contact(&self, addr: SocketAddr) -> Option<&Agent> {
        self.static_contacts
            .get(&addr)
            .and_then(|&index| self.agents.get(index))
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agent_index
            .get(id)
            .and_then(|&index| self.agents.get(index))
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    pub fn ivr(&self, name: &str) -> Option<&Ivr> {
        self.ivr.iter().find(|i| i.name == name)
    }

    pub fn external_number(&self, name: &str) -> Option<&ExternalNumber> {
        self.external_numbers.iter().find(|e| e.name == name)
    }

    /// Resolves a dialled user part in dial-plan order (DESIGN §2): agent extension, queue
    /// number, IVR number, configured external number, ad-hoc pattern. Prefixes are not
    /// stripped here (see [`TransferConfig::split_prefix`]).
    pub fn target_for_number(&self, user: &str) -> Option<Target> {
        if let Some(a) = self.agent(user) {
            return Some(Target::Agent(a.id.clone()));
        }
        if let Some(q) = self.queues.iter().find(|q| q.number == user) {
            return Some(Target::Queue(q.name.clone()));
        }
        if let Some(i) = self.ivr.iter().find(|i| i.number == user) {
            return Some(Target::Ivr(i.name.clone()));
        }
        if let Some(e) = self.external_numbers.iter().find(|e| e.number == user) {
            return Some(Target::External(e.name.clone()));
        }
        if self.external.matches_adhoc(user) {
            return Some(Target::Number(user.to_string()));
        }
        None
    }

    /// Whether a target refers to something configured (`Number` must match a pattern).
    pub fn target_exists(&self, target: &Target) -> bool {
        match target {
            Target::Agent(id) => self.agent(id).is_some(),
            Target::Queue(name) => self.queue(name).is_some(),
            Target::Ivr(name) => self.ivr(name).is_some(),
            Target::External(name) => self.external_number(name).is_some(),
            Target::Number(n) => self.external.matches_adhoc(n),
        }
    }

    /// Non-fatal observations (e.g. a queue no agent can serve).
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        validate::warnings(self)
    }
}
