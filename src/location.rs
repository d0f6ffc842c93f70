//! The registrar service: REGISTER handling (RFC 3261 §10.3) and digest authentication of
//! agents (RFC 8760), glued from the sans-IO pieces in [`crate::registrar`] to SIP messages.
//!
//! Decisions:
//! - Wrong password and unknown user get the same answer — a fresh 401 challenge — after the
//!   same work (the digest core hashes against a dummy password for unknown users).
//! - The authenticated user must be the AOR being registered (To user), else 403.
//! - A phone is reached over the flow it registered from (its source address, and for TCP
//!   the connection it opened), so the binding keeps the flow next to the Contact.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::incoming::IncomingRequest;
use crate::registrar::{
    AuthResult, Bindings, ChallengeKind, ContactSpec, Contacts as RegContacts, DigestAuthenticator,
    DigestConfig, DigestCredentials, Limits, RegisterError, RegisterRequest, Transition,
    Transport as RegTransport,
};
use crate::sip::{Contacts, HeaderName, SipMessage};
use crate::transport::{ConnectionId, Destination, Protocol};

/// A response decided by the registrar: status, reason, extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrarReply {
    pub code: u16,
    pub reason: &'static str,
    pub headers: Vec<(&'static str, String)>,
    /// The agent that logged in or out with this request.
    pub transition: Option<(String, Transition)>,
}

impl RegistrarReply {
    fn plain(code: u16, reason: &'static str) -> Self {
        RegistrarReply {
            code,
            reason,
            headers: Vec::new(),
            transition: None,
        }
    }
}

/// Outcome of authenticating a request that must come from an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAuth {
    Agent(String),
    Challenge(RegistrarReply),
}

/// Bindings, digest state and agent passwords.
pub struct Location {
    digest: DigestAuthenticator,
    backoff: crate::ratelimit::AuthBackoff<String>,
    pub bindings: Bindings,
    limits: Limits,
    passwords: HashMap<String, String>,
}

impl Location {
    pub fn new(config: &Config, now: Instant) -> Location {
        let mut digest_config = DigestConfig::new(config.sip.domain.clone());
        digest_config.nonce_ttl = config.registrar.nonce_ttl();
        digest_config.algorithms = config
            .registrar
            .algorithms
            .iter()
            .filter_map(|a| crate::registrar::Algorithm::from_token(a))
            .collect();
        let digest = DigestAuthenticator::new(digest_config.clone(), now).unwrap_or_else(|_| {
            // No OS randomness: fall back to a time-derived secret rather than refuse to
            // start; nonces then only resist guessing as well as the fallback does.
            let mut secret = [0u8; 32];
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            for (i, b) in secret.iter_mut().enumerate() {
                *b = (seed >> ((i % 16) * 8)) as u8 ^ fastrand::u8(..);
            }
            DigestAuthenticator::with_secret(digest_config, secret, now)
        });
        let limits = Limits {
            min_expires: config.registrar.min_expires_s,
            max_expires: config.registrar.max_expires_s,
            default_expires: config.registrar.default_expires_s,
            max_contacts: config.registrar.max_contacts_per_aor,
        };
        let passwords = config
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.password.clone()))
            .collect();
        Location {
            digest,
            backoff: crate::ratelimit::AuthBackoff::new(
                config.limits.auth_failures_before_backoff,
                std::time::Duration::from_secs(config.limits.max_auth_backoff_s),
            ),
            bindings: Bindings::new(),
            limits,
            passwords,
        }
    }

    /// Reload: the agents' passwords and the registrar limits of `config`.
    pub fn reconfigure(&mut self, config: &Config) {
        self.passwords = config
            .agents
            .iter()
            .map(|a| (a.id.clone(), a.password.clone()))
            .collect();
        self.limits = Limits {
            min_expires: config.registrar.min_expires_s,
            max_expires: config.registrar.max_expires_s,
            default_expires: config.registrar.default_expires_s,
            max_contacts: config.registrar.max_contacts_per_aor,
        };
    }

    fn challenge(&mut self, kind: ChallengeKind, stale: bool, now: Instant) -> RegistrarReply {
        let (code, reason, header) = match kind {
            ChallengeKind::Www => (401, "Unauthorized", "WWW-Authenticate"),
            ChallengeKind::Proxy => (407, "Proxy Authentication Required", "Proxy-Authenticate"),
        };
        let headers = self
            .digest
            .challenge(stale, now)
            .into_iter()
            .map(|v| (header, v))
            .collect();
        RegistrarReply {
            code,
            reason,
            headers,
            transition: None,
        }
    }

    /// Verifies the request's credentials of `kind`; the user on success.
    fn authenticate(
        &mut self,
        msg: &SipMessage,
        kind: ChallengeKind,
        source: std::net::IpAddr,
        now: Instant,
    ) -> Result<String, RegistrarReply> {
        let header = match kind {
            ChallengeKind::Www => HeaderName::Authorization,
            ChallengeKind::Proxy => HeaderName::ProxyAuthorization,
        };
        // A request may carry credentials for several realms; use ours.
        let realm = self.digest.realm().to_owned();
        let creds = msg
            .header_values(header)
            .filter_map(|v| DigestCredentials::parse(&v).ok())
            .find(|c| c.realm == realm);
        let Some(creds) = creds else {
            return Err(self.challenge(kind, false, now));
        };
        // Brute-force back-off (per address and per user name): the same answer whether the
        // user exists or not, and no digest is computed while blocked.
        let ip_key = format!("ip:{source}");
        let user_key = format!("user:{}", creds.username);
        if self.backoff.blocked(&ip_key, now) || self.backoff.blocked(&user_key, now) {
            let mut reply = RegistrarReply::plain(403, "Forbidden");
            reply.headers.push((
                "Warning",
                "399 handover \"too many failed authentication attempts; retry later\"".to_owned(),
            ));
            return Err(reply);
        }
        let method = msg
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let passwords = &self.passwords;
        match self
            .digest
            .verify(&creds, &method, |user| passwords.get(user).cloned(), now)
        {
            AuthResult::Ok { user } => {
                self.backoff.succeeded(&ip_key);
                self.backoff.succeeded(&user_key);
                Ok(user)
            }
            AuthResult::Stale => Err(self.challenge(kind, true, now)),
            AuthResult::Rejected(reason) => {
                tracing::info!(user = %creds.username, %source, ?reason, "digest authentication failed");
                self.backoff.failed(ip_key, now);
                self.backoff.failed(user_key, now);
                Err(self.challenge(kind, false, now))
            }
        }
    }

    /// Authenticates a request (INVITE, REFER) that claims to come from an agent (407).
    pub fn authenticate_agent(
        &mut self,
        msg: &SipMessage,
        source: std::net::IpAddr,
        now: Instant,
    ) -> AgentAuth {
        match self.authenticate(msg, ChallengeKind::Proxy, source, now) {
            Ok(user) => AgentAuth::Agent(user),
            Err(reply) => AgentAuth::Challenge(reply),
        }
    }

    /// Handles a REGISTER (RFC 3261 §10.3).
    pub fn register(&mut self, req: &IncomingRequest, now: Instant) -> RegistrarReply {
        let msg = &req.msg;
        let aor = match msg.to() {
            Ok(to) => to.uri.user_str().to_owned(),
            Err(_) => return RegistrarReply::plain(400, "Bad To"),
        };
        let user = match self.authenticate(msg, ChallengeKind::Www, req.source.remote.ip(), now) {
            Ok(user) => user,
            Err(reply) => return reply,
        };
        if user != aor {
            return RegistrarReply::plain(403, "Forbidden");
        }
        let contacts = match msg.contacts() {
            Ok(Contacts::Star) => RegContacts::Wildcard,
            Ok(Contacts::List(list)) if list.is_empty() => RegContacts::Query,
            Ok(Contacts::List(list)) => RegContacts::List(
                list.into_iter()
                    .map(|c| {
                        let mut spec = ContactSpec::new(c.uri.to_string());
                        spec.expires = c
                            .param("expires")
                            .flatten()
                            .and_then(|e| e.trim().parse().ok());
                        spec.q = c.param("q").flatten().and_then(|q| q.trim().parse().ok());
                        spec.instance = c.param("+sip.instance").flatten().map(str::to_owned);
                        spec.reg_id = c
                            .param("reg-id")
                            .flatten()
                            .and_then(|r| r.trim().parse().ok());
                        spec
                    })
                    .collect(),
            ),
            Err(e) => return RegistrarReply::plain(400, e.reason()),
        };
        let header_expires = match msg.expires() {
            Ok(e) => e,
            Err(_) => return RegistrarReply::plain(400, "Bad Expires"),
        };
        let request = RegisterRequest {
            contacts,
            header_expires,
            call_id: msg.call_id().to_owned(),
            cseq: msg.cseq().seq,
            source: Some(req.source.remote),
            transport: match req.source.protocol {
                Protocol::Udp => RegTransport::Udp,
                Protocol::Tcp => RegTransport::Tcp,
            },
            connection_id: req.source.connection.map(|c| c.0),
        };
        match self
            .bindings
            .apply_register(&aor, request, self.limits, now)
        {
            Ok(outcome) => {
                let headers = outcome
                    .contacts
                    .iter()
                    .map(|c| ("Contact", c.header_value()))
                    .collect();
                let transition = match outcome.transition {
                    Transition::Unchanged => None,
                    t => Some((aor, t)),
                };
                RegistrarReply {
                    code: 200,
                    reason: "OK",
                    headers,
                    transition,
                }
            }
            Err(RegisterError::IntervalTooBrief { min_expires }) => RegistrarReply {
                code: 423,
                reason: "Interval Too Brief",
                headers: vec![("Min-Expires", min_expires.to_string())],
                transition: None,
            },
            Err(e) => {
                let code = e.status_code();
                RegistrarReply::plain(code, crate::sip::default_reason(code))
            }
        }
    }

    /// The agent whose binding was registered from `source` (DESIGN.md §2 "Who is calling").
    pub fn agent_for_source(&self, source: SocketAddr, now: Instant) -> Option<String> {
        self.bindings
            .find_by_source(source, now)
            .map(|(aor, _)| aor.to_owned())
    }

    /// The contacts to ring for `aor`: Request-URI and the flow to reach each.
    pub fn contacts_for(&self, aor: &str, now: Instant) -> Vec<(String, Destination)> {
        self.bindings
            .lookup(aor, now)
            .into_iter()
            .filter_map(binding_destination)
            .collect()
    }

    /// Bindings due an OPTIONS keep-alive (see [`crate::agent_probe`]): (AOR, contact URI as
    /// stored, Request-URI and flow).
    pub fn due_probes(
        &mut self,
        every: Duration,
        now: Instant,
    ) -> Vec<(String, String, Destination)> {
        self.bindings
            .take_due_probes(every, now)
            .into_iter()
            .filter_map(|(aor, b)| {
                let (_, dest) = binding_destination(&b)?;
                Some((aor, b.uri, dest))
            })
            .collect()
    }

    /// Removes a binding whose phone stopped answering; `Logout` when it was the last.
    pub fn remove_contact(&mut self, aor: &str, uri: &str, now: Instant) -> Transition {
        self.bindings.remove_contact(aor, uri, now)
    }

    pub fn next_probe(&self, every: Duration) -> Option<Instant> {
        self.bindings.next_probe(every)
    }

    pub fn is_registered(&self, aor: &str, now: Instant) -> bool {
        self.bindings.is_registered(aor, now)
    }

    /// Drops expired bindings; the AORs that have none left (logged out).
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        self.bindings.expire(now)
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.bindings.next_expiry()
    }
}

/// The Request-URI (the contact without angle brackets) and the flow that reaches a binding:
/// the connection or address it registered from, else the contact's own host.
fn binding_destination(b: &crate::registrar::Binding) -> Option<(String, Destination)> {
    let uri = b
        .uri
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let dest = match (b.source, b.transport) {
        (Some(addr), RegTransport::Tcp | RegTransport::Tls) => Destination {
            protocol: Protocol::Tcp,
            addr,
            connection: b.connection_id.map(ConnectionId),
        },
        (Some(addr), RegTransport::Udp) => Destination {
            protocol: Protocol::Udp,
            addr,
            connection: None,
        },
        (None, _) => crate::sip::Uri::parse(&uri)
            .ok()
            .and_then(|u| crate::incoming::uri_destination(&u))?,
    };
    Some((uri, dest))
}
