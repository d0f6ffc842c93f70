//! Location service: address-of-record → contact bindings, updated by REGISTER following
//! RFC 3261 §10.3 steps 6–8. Sans-IO: `now` is passed in, nothing runs by itself; the
//! owner calls [`Bindings::expire`] at [`Bindings::next_expiry`].
//!
//! ```text
//!  REGISTER ──► apply_register ──► Ok(RegisterOutcome) ──► 200 + Contact: <uri>;expires=N
//!                     │                 └ transition: Login (none → some) / Logout (some → none)
//!                     └──────────► Err(RegisterError) ──► status_code(): 400 / 403 / 423 / 500
//! ```
//!
//! Rules and decisions:
//! - Steps 1–5 of §10.3 (Request-URI, Require, authentication, AOR from `To`,
//!   authorisation) are the caller's; the AOR given here is the agent id (user part).
//! - `Contact: *` is valid only alone and with `Expires: 0` (else 400, §10.3 step 6); it
//!   removes every binding of the AOR, subject to the Call-ID/CSeq rule below.
//! - Expiry per contact: its `expires` parameter, else the `Expires` header, else
//!   `default_expires` (step 7). 0 removes. `0 < e < min_expires` fails the whole request
//!   with 423 and `Min-Expires` (§10.2.8 / §10.3 step 7; `min_expires` is capped at one
//!   hour because the RFC allows 423 only below one hour). Above `max_expires` the interval
//!   is shortened to `max_expires` (the registrar may shorten, never lengthen).
//! - A contact matches a binding when both carry `+sip.instance` and `reg-id` and they are
//!   equal (RFC 5626 §6/RFC 5627: a restarted phone replaces its old binding even from a new
//!   TCP port), otherwise when the URIs are equal by a loose RFC 3261 §19.1.4 comparison:
//!   scheme and host:port case-insensitive, user part exact, `transport` parameter equal,
//!   other parameters and headers ignored.
//! - Call-ID/CSeq (step 7): a matching binding from another Call-ID is replaced (or
//!   removed); from the same Call-ID only when the CSeq is higher, else the whole request
//!   is aborted: [`RegisterError::OutOfOrder`], answered 500 (the RFC only says "the
//!   request fails"; 500 is what it prescribes when an update cannot be committed).
//! - The update is atomic (step 8 / §10.3 "committed if and only if all succeed"): it is
//!   computed on a copy and committed only if every contact is acceptable.
//! - At most `max_contacts` bindings per AOR. A new binding beyond that evicts the
//!   bindings not named in this request that expire first: a phone that rebooted without
//!   unregistering must be able to log in again, and the stale binding would only receive
//!   calls it cannot answer. A single request that alone asks for more is refused with 403.
//! - A REGISTER without Contact is a query: nothing changes, the bindings are listed.
//! - The binding keeps the request's source address, transport and connection id, because
//!   a TCP phone can only be reached over the connection it opened (RFC 5626 flows).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most Contact values accepted in one REGISTER (the codec bounds message size; this
/// bounds the work).
pub const MAX_CONTACTS_PER_REQUEST: usize = 32;
/// The RFC 3261 §10.3 step 7 ceiling on `Min-Expires`-driven 423s.
const ONE_HOUR: u32 = 3600;

/// Transport a REGISTER arrived over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the phone must be reached over the connection it opened.
    pub fn is_connection_oriented(self) -> bool {
        !matches!(self, Transport::Udp)
    }
}

/// One Contact value of a REGISTER, as parsed by the codec.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactSpec {
    /// The contact URI as sent (angle brackets optional; they are stripped).
    pub uri: String,
    /// The Contact's `expires` parameter.
    pub expires: Option<u32>,
    /// The `q` parameter, 0.0 to 1.0.
    pub q: Option<f32>,
    /// The `+sip.instance` parameter without its quotes, e.g. `<urn:uuid:…>`.
    pub instance: Option<String>,
    /// The `reg-id` parameter (RFC 5626).
    pub reg_id: Option<u32>,
}

impl ContactSpec {
    /// A contact with only a URI.
    pub fn new(uri: impl Into<String>) -> ContactSpec {
        ContactSpec {
            uri: uri.into(),
            expires: None,
            q: None,
            instance: None,
            reg_id: None,
        }
    }
}

/// The Contact header(s) of a REGISTER.
#[derive(Clone, Debug, PartialEq)]
pub enum Contacts {
    /// No Contact header: a query (§10.3 step 6 does not apply, nothing changes).
    Query,
    /// `Contact: *`.
    Wildcard,
    /// One or more contact URIs; an empty list is treated as a query.
    List(Vec<ContactSpec>),
}

/// The parts of a REGISTER the location service needs.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterRequest {
    pub contacts: Contacts,
    /// The `Expires` header.
    pub header_expires: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    /// Where the request came from (after rport processing).
    pub source: Option<SocketAddr>,
    pub transport: Transport,
    /// The transport's id of the TCP/TLS connection it came on.
    pub connection_id: Option<u64>,
}

/// Registrar policy (`[registrar]` config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 5,
        }
    }
}

/// One registered contact of an AOR.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The contact URI as the phone sent it (without angle brackets).
    pub uri: String,
    pub expires_at: Instant,
    pub q: Option<f32>,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    pub source: Option<SocketAddr>,
    pub transport: Transport,
    pub connection_id: Option<u64>,
    /// When this binding was last written (orders equal-q bindings, newest first).
    pub updated_at: Instant,
    /// When the phone last proved alive or was last asked (a REGISTER, or handover's
    /// OPTIONS probe going out): the next probe is due a keep-alive interval later.
    pub checked_at: Instant,
}

impl Binding {
    /// Whole seconds left, rounded up, 0 once expired.
    pub fn expires_in(&self, now: Instant) -> u32 {
        let left = self.expires_at.saturating_duration_since(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }
}

/// A current binding as listed in the 200 OK.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactStatus {
    pub uri: String,
    /// Seconds left (rounded up).
    pub expires: u32,
    pub q: Option<f32>,
}

impl ContactStatus {
    /// The 200's Contact header value: `<uri>;expires=N` (plus `;q=` when set), RFC 3261
    /// §10.3 step 8.
    pub fn header_value(&self) -> String {
        match self.q {
            Some(q) => format!("<{}>;expires={};q={}", self.uri, self.expires, format_q(q)),
            None => format!("<{}>;expires={}", self.uri, self.expires),
        }
    }
}

/// How the AOR's registration state changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Unchanged,
    /// No live binding before, at least one now: the agent logged in.
    Login,
    /// Live bindings before, none now: the agent logged out.
    Logout,
}

/// Result of an accepted REGISTER.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterOutcome {
    /// Every current binding of the AOR, for the 200's Contact headers.
    pub contacts: Vec<ContactStatus>,
    pub transition: Transition,
    /// URIs of bindings removed to stay within `max_contacts`.
    pub evicted: Vec<String>,
}

/// Why a REGISTER was refused; [`RegisterError::status_code`] gives the response.
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum RegisterError {
    #[error("Contact: * requires Expires: 0 and no other Contact")]
    InvalidWildcard,
    #[error("expiration interval below the minimum of {min_expires} s")]
    IntervalTooBrief { min_expires: u32 },
    #[error("CSeq not higher than the binding's for the same Call-ID")]
    OutOfOrder,
    #[error("more than {max} contacts")]
    TooManyContacts { max: usize },
    #[error("q value outside 0..=1")]
    InvalidQ,
    #[error("empty contact URI")]
    EmptyUri,
}

impl RegisterError {
    /// The SIP status code to answer with. 423 must carry `Min-Expires: min_expires`.
    pub fn status_code(self) -> u16 {
        match self {
            RegisterError::InvalidWildcard | RegisterError::InvalidQ | RegisterError::EmptyUri => {
                400
            }
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::OutOfOrder => 500,
            RegisterError::TooManyContacts { .. } => 403,
        }
    }
}

/// The location service.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    by_aor: HashMap<String, Vec<Binding>>,
}

impl Bindings {
    pub fn new() -> Bindings {
        Bindings::default()
    }

    /// Applies a REGISTER for `aor` (RFC 3261 §10.3 steps 6–8), atomically.
    pub fn apply_register(
        &mut self,
        aor: &str,
        request: RegisterRequest,
        limits: Limits,
        now: Instant,
    ) -> Result<RegisterOutcome, RegisterError> {
        let current: Vec<Binding> = self
            .by_aor
            .get(aor)
            .map(|v| v.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default();
        let had_any = !current.is_empty();

        let (next, evicted) = match &request.contacts {
            Contacts::Query => (current, Vec::new()),
            Contacts::List(list) if list.is_empty() => (current, Vec::new()),
            Contacts::Wildcard => (remove_all(current, &request)?, Vec::new()),
            Contacts::List(list) => update(current, list, &request, limits, now)?,
        };

        let contacts = next
            .iter()
            .map(|b| ContactStatus {
                uri: b.uri.clone(),
                expires: b.expires_in(now),
                q: b.q,
            })
            .collect();
        let transition = match (had_any, next.is_empty()) {
            (false, false) => Transition::Login,
            (true, true) => Transition::Logout,
            _ => Transition::Unchanged,
        };
        if next.is_empty() {
            self.by_aor.remove(aor);
        } else {
            self.by_aor.insert(aor.to_owned(), next);
        }
        Ok(RegisterOutcome {
            contacts,
            transition,
            evicted,
        })
    }

    /// Removes expired bindings; returns the AORs left without any (logged out), sorted.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let mut emptied = Vec::new();
        self.by_aor.retain(|aor, list| {
            list.retain(|b| b.expires_at > now);
            if list.is_empty() {
                emptied.push(aor.clone());
                false
            } else {
                true
            }
        });
        emptied.sort();
        emptied
    }

    /// When the next binding expires: the owner's one timer.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_aor.values().flatten().map(|b| b.expires_at).min()
    }

    /// Live bindings of `aor`: highest q first (absent q ranks as 1.0), then most recently
    /// updated.
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<&Binding> {
        let mut found: Vec<&Binding> = self
            .by_aor
            .get(aor)
            .map(|v| v.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default();
        found.sort_by(|a, b| {
            let (qa, qb) = (a.q.unwrap_or(1.0), b.q.unwrap_or(1.0));
            qb.total_cmp(&qa).then(b.updated_at.cmp(&a.updated_at))
        });
        found
    }

    /// The AOR and live binding whose request came from `source` (who is calling: an
    /// INVITE from a registered agent's address and port, DESIGN §2).
    pub fn find_by_source(&self, source: SocketAddr, now: Instant) -> Option<(&str, &Binding)> {
        self.by_aor.iter().find_map(|(aor, list)| {
            list.iter()
                .find(|b| b.source == Some(source) && b.expires_at > now)
                .map(|b| (aor.as_str(), b))
        })
    }

    /// Whether `aor` has a live binding.
    pub fn is_registered(&self, aor: &str, now: Instant) -> bool {
        self.by_aor
            .get(aor)
            .is_some_and(|v| v.iter().any(|b| b.expires_at > now))
    }

    /// Live bindings not checked for `every`: each is marked checked now and returned with
    /// its AOR, so the caller probes it once (an OPTIONS keep-alive to a registered phone).
    pub fn take_due_probes(&mut self, every: Duration, now: Instant) -> Vec<(String, Binding)> {
        let mut due = Vec::new();
        for (aor, list) in &mut self.by_aor {
            for b in list.iter_mut() {
                if b.expires_at > now && b.checked_at + every <= now {
                    b.checked_at = now;
                    due.push((aor.clone(), b.clone()));
                }
            }
        }
        due
    }

    /// When the next probe falls due (for the owner's timer).
    pub fn next_probe(&self, every: Duration) -> Option<Instant> {
        self.by_aor
            .values()
            .flatten()
            .map(|b| b.checked_at + every)
            .min()
    }

    /// Removes the binding of `aor` with contact `uri` (its phone stopped answering);
    /// `Logout` when it was the AOR's last.
    pub fn remove_contact(&mut self, aor: &str, uri: &str, now: Instant) -> Transition {
        let Some(list) = self.by_aor.get_mut(aor) else {
            return Transition::Unchanged;
        };
        let had_any = list.iter().any(|b| b.expires_at > now);
        list.retain(|b| b.uri != uri);
        let has_any = list.iter().any(|b| b.expires_at > now);
        if list.is_empty() {
            self.by_aor.remove(aor);
        }
        if had_any && !has_any {
            Transition::Logout
        } else {
            Transition::Unchanged
        }
    }

    /// Number of stored bindings (expired ones count until [`Bindings::expire`] runs).
    pub fn count(&self) -> usize {
        self.by_aor.values().map(Vec::len).sum()
    }

    /// Number of AORs with stored bindings.
    pub fn aor_count(&self) -> usize {
        self.by_aor.len()
    }
}

/// `Contact: *` (§10.3 step 6): remove all, unless a binding from the same Call-ID has a
/// CSeq at least as high.
fn remove_all(
    current: Vec<Binding>,
    request: &RegisterRequest,
) -> Result<Vec<Binding>, RegisterError> {
    if request.header_expires != Some(0) {
        return Err(RegisterError::InvalidWildcard);
    }
    if current
        .iter()
        .any(|b| b.call_id == request.call_id && request.cseq <= b.cseq)
    {
        return Err(RegisterError::OutOfOrder);
    }
    Ok(Vec::new())
}

/// Step 7 over a copy of the AOR's live bindings; returns the new list and evicted URIs.
fn update(
    mut list: Vec<Binding>,
    specs: &[ContactSpec],
    request: &RegisterRequest,
    limits: Limits,
    now: Instant,
) -> Result<(Vec<Binding>, Vec<String>), RegisterError> {
    if specs.len() > MAX_CONTACTS_PER_REQUEST {
        return Err(RegisterError::TooManyContacts {
            max: MAX_CONTACTS_PER_REQUEST,
        });
    }
    let min = limits.min_expires.min(ONE_HOUR);
    let max = limits.max_expires.max(min);
    // Bindings written by this request (by index into `list`): a contact named twice is
    // not an out-of-order update of itself.
    let mut touched: Vec<bool> = vec![false; list.len()];
    for spec in specs {
        let uri = strip_brackets(spec.uri.trim());
        if uri == "*" {
            return Err(RegisterError::InvalidWildcard);
        }
        if uri.is_empty() {
            return Err(RegisterError::EmptyUri);
        }
        if spec.q.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
            return Err(RegisterError::InvalidQ);
        }
        let requested = spec
            .expires
            .or(request.header_expires)
            .unwrap_or(limits.default_expires.max(min));
        if requested > 0 && requested < min {
            return Err(RegisterError::IntervalTooBrief { min_expires: min });
        }
        let expires = requested.min(max);

        let existing = list.iter().position(|b| same_contact(b, uri, spec));
        if let Some(i) = existing {
            let b = list.get(i).ok_or(RegisterError::OutOfOrder)?;
            let by_this_request = touched.get(i).copied().unwrap_or(false);
            if !by_this_request && b.call_id == request.call_id && request.cseq <= b.cseq {
                return Err(RegisterError::OutOfOrder);
            }
            if expires == 0 {
                list.remove(i);
                touched.remove(i);
                continue;
            }
        } else if expires == 0 {
            continue; // removing an unknown contact is a no-op
        }
        let binding = Binding {
            uri: uri.to_owned(),
            expires_at: now
                .checked_add(Duration::from_secs(u64::from(expires)))
                .unwrap_or(now),
            q: spec.q,
            instance: spec.instance.clone(),
            reg_id: spec.reg_id,
            call_id: request.call_id.clone(),
            cseq: request.cseq,
            source: request.source,
            transport: request.transport,
            connection_id: request.connection_id,
            updated_at: now,
            checked_at: now,
        };
        match existing.and_then(|i| list.get_mut(i).zip(touched.get_mut(i))) {
            Some((slot, t)) => {
                *slot = binding;
                *t = true;
            }
            None => {
                list.push(binding);
                touched.push(true);
            }
        }
    }

    let max_contacts = limits.max_contacts.max(1);
    let mut evicted = Vec::new();
    if list.len() > max_contacts {
        if touched.iter().filter(|t| **t).count() > max_contacts {
            return Err(RegisterError::TooManyContacts { max: max_contacts });
        }
        // Evict untouched bindings, soonest expiry first.
        let mut victims: Vec<(Instant, usize)> = list
            .iter()
            .zip(&touched)
            .enumerate()
            .filter(|(_, (_, t))| !**t)
            .map(|(i, (b, _))| (b.expires_at, i))
            .collect();
        victims.sort();
        let excess = list.len() - max_contacts;
        let mut drop: Vec<usize> = victims.iter().take(excess).map(|&(_, i)| i).collect();
        drop.sort_unstable_by(|a, b| b.cmp(a));
        for i in drop {
            if i < list.len() {
                evicted.push(list.remove(i).uri);
            }
        }
    }
    Ok((list, evicted))
}

fn strip_brackets(uri: &str) -> &str {
    uri.strip_prefix('<')
        .and_then(|u| u.strip_suffix('>'))
        .unwrap_or(uri)
}

fn same_contact(b: &Binding, uri: &str, spec: &ContactSpec) -> bool {
    match (&b.instance, &spec.instance) {
        (Some(a), Some(c)) => a.eq_ignore_ascii_case(c) && b.reg_id == spec.reg_id,
        _ => uri_equivalent(&b.uri, uri),
    }
}

/// Loose RFC 3261 §19.1.4 URI equality: scheme and host:port case-insensitive, user info
/// exact, `transport` parameter equal (case-insensitive), other parameters and headers
/// ignored (a phone adding or dropping `;ob` or `;line=` is still the same contact).
pub fn uri_equivalent(a: &str, b: &str) -> bool {
    let (pa, pb) = (UriParts::split(a), UriParts::split(b));
    pa.scheme.eq_ignore_ascii_case(pb.scheme)
        && pa.userinfo == pb.userinfo
        && pa.hostport.eq_ignore_ascii_case(pb.hostport)
        && match (pa.transport, pb.transport) {
            (None, None) => true,
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => false,
        }
}

struct UriParts<'a> {
    scheme: &'a str,
    userinfo: Option<&'a str>,
    hostport: &'a str,
    transport: Option<&'a str>,
}

impl<'a> UriParts<'a> {
    fn split(uri: &'a str) -> UriParts<'a> {
        let uri = strip_brackets(uri.trim());
        let (scheme, rest) = uri.split_once(':').unwrap_or(("", uri));
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        // The user part may itself contain ';' (user parameters), so split at '@' first.
        let (userinfo, after) = match rest.split_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (hostport, params) = after.split_once(';').unwrap_or((after, ""));
        let transport = params.split(';').find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("transport")
                .then(|| value.trim())
        });
        UriParts {
            scheme,
            userinfo,
            hostport,
            transport,
        }
    }
}

/// `q` with at most three decimals (RFC 3261 §25.1 `qvalue`).
fn format_q(q: f32) -> String {
    let s = format!("{:.3}", q.clamp(0.0, 1.0));
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').unwrap_or(s).to_owned()
}

#[cfg(test)]
#[path = "bindings_tests.rs"]
mod tests;
