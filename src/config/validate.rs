//! Semantic validation: raw file → typed [`Config`], collecting every error with its field.
//!
//! Decisions (also documented in `config/handover.toml`):
//! - Agent ids and all numbers share one namespace: a dialled number resolves to one target.
//! - Ids and numbers use the RFC 3261 §25.1 `user` characters without `;`, `?`, `/` and
//!   escapes, so they can be put into a Request-URI as they are. Names of trunks, queues,
//!   IVRs and external numbers are `[A-Za-z0-9_.-]+` (they appear in targets and API paths).
//! - A `number:` target in the config must match an ad-hoc pattern, as a typed one must.
//! - External numbers need an outbound trunk; numbers presented without user number forwarding
//!   (configured without forwarding, or ad-hoc) need that trunk's `access_number`.
//! - Dial prefixes must be distinct, none may start another, and none may start a configured
//!   number, so that a Refer-To user part splits into prefix and number one way only.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::raw::{RawConfig, RawExternal, RawHttp, RawQueue, RawSip, RawTrunk};
use super::spans::{line_of, Node};
use super::{
    Agent, Cidr, Config, ConfigError, ConfigErrors, ConfigWarning, ExternalConfig, ExternalNumber,
    HttpConfig, Ivr, ListenSpec, Queue, RegistrarConfig, SipConfig, Target, TransferConfig,
    TransferType, Trunk,
};

/// Upper bound on a compiled ad-hoc pattern, so a config cannot make matching expensive.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
const MESSAGE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=1_048_576;
const MAX_HEADERS_RANGE: std::ops::RangeInclusive<usize> = 16..=4096;

/// Problems found so far: (dotted field, message).
#[derive(Default)]
struct Issues(Vec<(String, String)>);

impl Issues {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push((field.into(), message.into()));
    }

    fn positive(&mut self, field: &str, value: u64) {
        if value == 0 {
            self.push(field, "must be greater than 0");
        }
    }
}

pub(super) fn from_toml_str(src: &str) -> Result<Config, ConfigErrors> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| toml_error(src, &e))?;
    let mut issues = Issues::default();
    let config = build(raw, &mut issues);
    if issues.0.is_empty() {
        return Ok(config);
    }
    let tree = Node::parse(src);
    let mut errors: Vec<ConfigError> = issues
        .0
        .into_iter()
        .map(|(field, message)| ConfigError {
            line: tree
                .as_ref()
                .map_or(1, |t| line_of(src, t.offset_of(&field))),
            field,
            message,
        })
        .collect();
    errors.sort_by_key(|e| e.line);
    Err(ConfigErrors { errors })
}

/// Turns the parser's error into ours: its line, the field it is about, a one-line message.
fn toml_error(src: &str, e: &toml::de::Error) -> ConfigErrors {
    let message = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let span = e.span();
    let line = span.as_ref().map_or(1, |s| line_of(src, s.start));
    let tree = Node::parse(src);
    let mut field = match (&span, &tree) {
        (Some(s), Some(tree)) => tree.path_at(s.start),
        _ => String::new(),
    };
    // A missing field is reported at its table, an unknown one at its key: inside its table,
    // which is what `path_at` finds, or in the header of an unknown `[table]` itself.
    let in_own_header = |name: &str| {
        let last = field.rsplit('.').next().unwrap_or_default();
        last == name
            && tree
                .as_ref()
                .is_some_and(|t| line_of(src, t.offset_of(&field)) == line)
    };
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
        .filter(|name| !in_own_header(name));
    if let Some(name) = missing.or(unknown) {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(name);
    }
    ConfigErrors {
        errors: vec![ConfigError {
            line,
            field,
            message,
        }],
    }
}

fn build(raw: RawConfig, issues: &mut Issues) -> Config {
    let sip = sip(raw.sip, issues);
    registrar(&raw.registrar, issues);
    issues.positive(
        "limits.max_transactions",
        raw.limits.max_transactions as u64,
    );
    let http_enabled = raw.http.is_some();
    let mut http = http(raw.http.unwrap_or_default(), issues);
    http.enabled = http_enabled;
    let trunks: Vec<Trunk> = raw
        .trunks
        .into_iter()
        .enumerate()
        .map(|(i, t)| trunk(i, t, issues))
        .collect();
    unique(
        "trunks",
        trunks.iter().map(|t| t.name.as_str()),
        "name",
        issues,
    );
    for (i, a) in raw.agents.iter().enumerate() {
        agent(i, a, issues);
    }
    let queues: Vec<Queue> = raw
        .queues
        .into_iter()
        .enumerate()
        .map(|(i, q)| queue(i, q, issues))
        .collect();
    unique(
        "queues",
        queues.iter().map(|q| q.name.as_str()),
        "name",
        issues,
    );
    for (i, v) in raw.ivr.iter().enumerate() {
        ivr(i, v, issues);
    }
    unique(
        "ivr",
        raw.ivr.iter().map(|v| v.name.as_str()),
        "name",
        issues,
    );
    for (i, x) in raw.external_numbers.iter().enumerate() {
        external_number(i, x, issues);
    }
    unique(
        "external_numbers",
        raw.external_numbers.iter().map(|x| x.name.as_str()),
        "name",
        issues,
    );
    let external = external(raw.external, issues);
    transfer(&raw.transfer, issues);
    if raw
        .cdr
        .path
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        issues.push(
            "cdr.path",
            "must not be empty (leave it out to write no CDRs)",
        );
    }
    issues.positive("cdr.flush_ms", raw.cdr.flush_ms);

    let mut static_contacts = std::collections::HashMap::new();
    let mut agents = raw.agents;
    for (index, agent) in agents.iter_mut().enumerate() {
        let uri = agent
            .contact
            .as_deref()
            .and_then(|c| crate::sip::Uri::parse(c).ok());
        agent.contact_destination = uri.as_ref().and_then(crate::incoming::uri_destination);
        if let Some(addr) = uri.and_then(|uri| uri.socket_addr()) {
            static_contacts.entry(addr).or_insert(index);
        }
    }
    let mut agent_index = std::collections::HashMap::with_capacity(agents.len());
    for (index, agent) in agents.iter().enumerate() {
        agent_index.entry(agent.id.clone()).or_insert(index);
    }
    let config = Config {
        sip,
        registrar: raw.registrar,
        http,
        trunks,
        agents,
        queues,
        ivr: raw.ivr,
        external_numbers: raw.external_numbers,
        external,
        transfer: raw.transfer,
        cdr: raw.cdr,
        limits: raw.limits,
        static_contacts,
        agent_index,
    };
    cross_checks(&config, issues);
    config
}

fn sip(raw: RawSip, issues: &mut Issues) -> SipConfig {
    if raw.listen.is_empty() {
        issues.push("sip.listen", "at least one listen entry is required");
    }
    let mut listen: Vec<ListenSpec> = Vec::new();
    for (i, s) in raw.listen.iter().enumerate() {
        let field = format!("sip.listen[{i}]");
        match s.parse::<ListenSpec>() {
            Ok(spec) if listen.contains(&spec) => {
                issues.push(field, format!("`{s}` is listed twice"))
            }
            Ok(spec) => listen.push(spec),
            Err(e) => issues.push(field, format!("`{s}`: {e}")),
        }
    }
    if raw.domain.is_empty() {
        issues.push("sip.domain", "must not be empty");
    } else if !is_host(&raw.domain) {
        issues.push(
            "sip.domain",
            format!("`{}` is not a host name or IP address", raw.domain),
        );
    }
    issues.positive("sip.t1_ms", raw.t1_ms);
    issues.positive("sip.t4_ms", raw.t4_ms);
    if raw.t2_ms < raw.t1_ms {
        issues.push(
            "sip.t2_ms",
            format!(
                "must be at least t1_ms ({} ms), is {} ms",
                raw.t1_ms, raw.t2_ms
            ),
        );
    }
    if !MESSAGE_BYTES_RANGE.contains(&raw.max_message_bytes) {
        issues.push(
            "sip.max_message_bytes",
            format!(
                "must be between {} and {}",
                MESSAGE_BYTES_RANGE.start(),
                MESSAGE_BYTES_RANGE.end()
            ),
        );
    }
    if !MAX_HEADERS_RANGE.contains(&raw.max_headers) {
        issues.push(
            "sip.max_headers",
            format!(
                "must be between {} and {}",
                MAX_HEADERS_RANGE.start(),
                MAX_HEADERS_RANGE.end()
            ),
        );
    }
    issues.positive("sip.tcp_idle_timeout_s", raw.tcp_idle_timeout_s);
    issues.positive("sip.max_tcp_connections", raw.max_tcp_connections as u64);
    issues.positive("sip.max_calls", raw.max_calls as u64);
    issues.positive("sip.ring_timeout_s", raw.ring_timeout_s);
    issues.positive("sip.min_se_s", raw.min_se_s);
    issues.positive("sip.worker_threads", raw.worker_threads as u64);
    if raw.session_expires_s != 0 && raw.session_expires_s < raw.min_se_s {
        issues.push(
            "sip.session_expires_s",
            "must be 0 (off) or at least sip.min_se_s",
        );
    }
    if raw.user_agent.chars().any(char::is_control) {
        issues.push("sip.user_agent", "must not contain control characters");
    }
    SipConfig {
        listen,
        domain: raw.domain,
        t1_ms: raw.t1_ms,
        t2_ms: raw.t2_ms,
        t4_ms: raw.t4_ms,
        max_message_bytes: raw.max_message_bytes,
        max_headers: raw.max_headers,
        tcp_idle_timeout_s: raw.tcp_idle_timeout_s,
        max_tcp_connections: raw.max_tcp_connections,
        max_calls: raw.max_calls,
        ring_timeout_s: raw.ring_timeout_s,
        keepalive_s: raw.keepalive_s,
        session_expires_s: raw.session_expires_s,
        min_se_s: raw.min_se_s,
        worker_threads: raw.worker_threads,
        user_agent: raw.user_agent,
    }
}

fn registrar(r: &RegistrarConfig, issues: &mut Issues) {
    issues.positive("registrar.min_expires_s", r.min_expires_s.into());
    if r.max_expires_s < r.min_expires_s {
        issues.push(
            "registrar.max_expires_s",
            format!("must be at least min_expires_s ({})", r.min_expires_s),
        );
    } else if !(r.min_expires_s..=r.max_expires_s).contains(&r.default_expires_s) {
        issues.push(
            "registrar.default_expires_s",
            format!(
                "must be between min_expires_s ({}) and max_expires_s ({})",
                r.min_expires_s, r.max_expires_s
            ),
        );
    }
    issues.positive("registrar.nonce_ttl_s", r.nonce_ttl_s);
    issues.positive(
        "registrar.max_contacts_per_aor",
        r.max_contacts_per_aor as u64,
    );
    if r.algorithms.is_empty() {
        issues.push(
            "registrar.algorithms",
            "must name at least one algorithm".to_string(),
        );
    }
    for a in &r.algorithms {
        if !a.eq_ignore_ascii_case("SHA-256") && !a.eq_ignore_ascii_case("MD5") {
            issues.push(
                "registrar.algorithms",
                format!("unknown digest algorithm `{a}` (expected \"SHA-256\" or \"MD5\")"),
            );
        }
    }
}

fn http(raw: RawHttp, issues: &mut Issues) -> HttpConfig {
    let listen = match raw.listen.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            issues.push(
                "http.listen",
                format!(
                    "`{}` is not IP:PORT (IPv6 in brackets: `[::1]:8080`)",
                    raw.listen
                ),
            );
            HttpConfig::default().listen
        }
    };
    match &raw.token {
        Some(t) if t.is_empty() => issues.push("http.token", "must not be empty"),
        Some(t) if t.chars().any(|c| c.is_whitespace() || c.is_control()) => issues.push(
            "http.token",
            "must not contain spaces or control characters",
        ),
        None if !listen.ip().is_loopback() => issues.push(
            "http.token",
            format!("is required when http.listen ({listen}) is not a loopback address"),
        ),
        _ => {}
    }
    HttpConfig {
        listen,
        token: raw.token,
        enabled: true,
    }
}

fn trunk(i: usize, raw: RawTrunk, issues: &mut Issues) -> Trunk {
    let at = format!("trunks[{i}]");
    name(&format!("{at}.name"), &raw.name, issues);
    if raw.sources.is_empty() {
        issues.push(
            format!("{at}.sources"),
            "at least one source network is required",
        );
    }
    let mut sources = Vec::new();
    for (j, s) in raw.sources.iter().enumerate() {
        match s.parse::<Cidr>() {
            Ok(c) => sources.push(c),
            Err(e) => issues.push(format!("{at}.sources[{j}]"), format!("`{s}`: {e}")),
        }
    }
    if let Some(uri) = &raw.outbound {
        sip_uri(&format!("{at}.outbound"), uri, issues);
    }
    if let Some(n) = &raw.access_number {
        number(&format!("{at}.access_number"), n, issues);
    }
    Trunk {
        name: raw.name,
        sources,
        outbound: raw.outbound,
        access_number: raw.access_number,
    }
}

fn agent(i: usize, a: &Agent, issues: &mut Issues) {
    let at = format!("agents[{i}]");
    number(&format!("{at}.id"), &a.id, issues);
    if a.password.is_empty() {
        issues.push(format!("{at}.password"), "must not be empty");
    }
    for (j, s) in a.skills.iter().enumerate() {
        if s.trim().is_empty() {
            issues.push(format!("{at}.skills[{j}]"), "must not be empty");
        }
    }
    if let Some(c) = &a.contact {
        sip_uri(&format!("{at}.contact"), c, issues);
    }
    if let Some(d) = &a.display_name {
        // It is sent as a quoted-string (RFC 3261 §25.1); keep it free of quoting trouble.
        if d.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
            issues.push(
                format!("{at}.display_name"),
                "must not contain quotes, backslashes or control characters",
            );
        }
    }
}

fn queue(i: usize, raw: RawQueue, issues: &mut Issues) -> Queue {
    let at = format!("queues[{i}]");
    name(&format!("{at}.name"), &raw.name, issues);
    number(&format!("{at}.number"), &raw.number, issues);
    if raw.skill.trim().is_empty() {
        issues.push(format!("{at}.skill"), "must not be empty");
    }
    issues.positive(&format!("{at}.max_waiting"), raw.max_waiting as u64);
    issues.positive(&format!("{at}.max_wait_s"), raw.max_wait_s);
    issues.positive(&format!("{at}.ring_timeout_s"), raw.ring_timeout_s);
    let overflow = raw
        .overflow
        .as_ref()
        .and_then(|s| match s.parse::<Target>() {
            Ok(t) => Some(t),
            Err(e) => {
                issues.push(format!("{at}.overflow"), format!("`{s}`: {e}"));
                None
            }
        });
    if let Some(uri) = &raw.music_uri {
        sip_uri(&format!("{at}.music_uri"), uri, issues);
    }
    if raw.default_transfer == Some(TransferType::Hangup) {
        issues.push(
            format!("{at}.default_transfer"),
            "hangup transfers go to IVR flows only",
        );
    }
    Queue {
        name: raw.name,
        number: raw.number,
        skill: raw.skill,
        max_waiting: raw.max_waiting,
        max_wait_s: raw.max_wait_s,
        ring_timeout_s: raw.ring_timeout_s,
        overflow,
        when_no_agents: raw.when_no_agents,
        music_uri: raw.music_uri,
        max_missed_offers: raw.max_missed_offers,
        default_transfer: raw.default_transfer,
    }
}

fn ivr(i: usize, v: &Ivr, issues: &mut Issues) {
    let at = format!("ivr[{i}]");
    name(&format!("{at}.name"), &v.name, issues);
    number(&format!("{at}.number"), &v.number, issues);
    sip_uri(&format!("{at}.uri"), &v.uri, issues);
    issues.positive(&format!("{at}.max_waiting_s"), v.max_waiting_s);
}

fn external_number(i: usize, x: &ExternalNumber, issues: &mut Issues) {
    let at = format!("external_numbers[{i}]");
    name(&format!("{at}.name"), &x.name, issues);
    number(&format!("{at}.number"), &x.number, issues);
    // DESIGN §3 rules 2 and 3: what each kind of external number may receive.
    match (x.user_number_forwarding, x.default_transfer) {
        (true, Some(t @ (TransferType::Release | TransferType::Hangup))) => issues.push(
            format!("{at}.default_transfer"),
            format!("`{t}` is not allowed with user_number_forwarding = true (success or conversation only)"),
        ),
        // Rule 3 limits release (inbound calls only) but allows success and conversation;
        // hang-up transfers go to IVR flows only (rule 1). See `transfer::policy`.
        (false, Some(t @ TransferType::Hangup)) => issues.push(
            format!("{at}.default_transfer"),
            format!("`{t}` is not allowed: hang-up transfers go to IVR flows only"),
        ),
        _ => {}
    }
}

fn external(raw: RawExternal, issues: &mut Issues) -> ExternalConfig {
    let mut adhoc_patterns = Vec::new();
    for (i, p) in raw.adhoc_patterns.iter().enumerate() {
        match regex::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(re) => adhoc_patterns.push(re),
            Err(e) => {
                let msg = e
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" ");
                issues.push(
                    format!("external.adhoc_patterns[{i}]"),
                    format!("invalid regex: {msg}"),
                );
            }
        }
    }
    ExternalConfig { adhoc_patterns }
}

fn transfer(t: &TransferConfig, issues: &mut Issues) {
    let mut seen: Vec<(TransferType, &str)> = Vec::new();
    for ty in TransferType::ALL {
        let p = t.prefixes.get(ty);
        let field = format!("transfer.prefixes.{ty}");
        if p.is_empty() {
            issues.push(field, "must not be empty");
            continue;
        }
        if !p.chars().all(is_user_char) {
            issues.push(
                field,
                format!("`{p}` contains characters not allowed in a SIP user part"),
            );
            continue;
        }
        if let Some((other, q)) = seen
            .iter()
            .find(|(_, q)| p.starts_with(q) || q.starts_with(p))
        {
            let how = if *q == p {
                "the same as"
            } else {
                "ambiguous with"
            };
            issues.push(field, format!("`{p}` is {how} the {other} prefix `{q}`"));
            continue;
        }
        seen.push((ty, p));
    }
    issues.positive("transfer.ring_timeout_s", t.ring_timeout_s);
}

fn cross_checks(c: &Config, issues: &mut Issues) {
    // One namespace for everything dialable.
    let numbers: Vec<(String, &str)> = c
        .agents
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("agents[{i}].id"), a.id.as_str()))
        .chain(
            c.queues
                .iter()
                .enumerate()
                .map(|(i, q)| (format!("queues[{i}].number"), q.number.as_str())),
        )
        .chain(
            c.ivr
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("ivr[{i}].number"), v.number.as_str())),
        )
        .chain(
            c.external_numbers
                .iter()
                .enumerate()
                .map(|(i, x)| (format!("external_numbers[{i}].number"), x.number.as_str())),
        )
        .collect();
    let mut first: HashMap<&str, &str> = HashMap::new();
    for (field, n) in &numbers {
        match first.get(n) {
            Some(prev) => issues.push(field.clone(), format!("`{n}` is already used by {prev}")),
            None => {
                first.insert(n, field);
            }
        }
    }
    for ty in TransferType::ALL {
        let p = c.transfer.prefixes.get(ty);
        if p.is_empty() {
            continue;
        }
        if let Some((field, n)) = numbers.iter().find(|(_, n)| n.starts_with(p)) {
            issues.push(
                format!("transfer.prefixes.{ty}"),
                format!(
                    "`{p}` is also how `{n}` ({field}) starts; a transfer to it would be misread"
                ),
            );
        }
    }

    if let Some(fallback) = &c.transfer.fallback {
        match fallback.parse::<Target>() {
            Err(e) => issues.push("transfer.fallback", format!("`{fallback}`: {e}")),
            Ok(target) if !c.target_exists(&target) => {
                issues.push("transfer.fallback", format!("`{target}` is not configured"))
            }
            Ok(_) => {}
        }
    }

    for (i, q) in c.queues.iter().enumerate() {
        let Some(target) = &q.overflow else { continue };
        let field = format!("queues[{i}].overflow");
        if !c.target_exists(target) {
            let why = match target {
                Target::Number(_) => "matches no external.adhoc_patterns entry",
                _ => "is not configured",
            };
            issues.push(field, format!("`{target}` {why}"));
        } else if let Some(path) = overflow_cycle(c, i) {
            issues.push(field, format!("overflow loops back: {path}"));
        }
    }

    let dials_out = !c.external_numbers.is_empty() || !c.external.adhoc_patterns.is_empty();
    let needs_access_number = c.external_numbers.iter().any(|x| !x.user_number_forwarding)
        || !c.external.adhoc_patterns.is_empty();
    let at = if c.external_numbers.is_empty() {
        "external.adhoc_patterns"
    } else {
        "external_numbers[0]"
    };
    match c.trunks.iter().position(|t| t.outbound.is_some()) {
        None if dials_out => issues.push(
            at,
            "external numbers are configured but no trunk has `outbound` to dial them",
        ),
        Some(k) if needs_access_number && c.trunks[k].access_number.is_none() => issues.push(
            format!("trunks[{k}].access_number"),
            "required: numbers without user number forwarding present the access number",
        ),
        _ => {}
    }
}

/// `Some("a → b → a")` if following overflows from queue `start` returns to it. Reported for
/// the first queue of the loop only, so each loop is one error.
fn overflow_cycle(c: &Config, start: usize) -> Option<String> {
    let mut path = vec![start];
    let mut seen = HashSet::from([start]);
    let mut cur = start;
    while let Some(Target::Queue(next)) = &c.queues.get(cur)?.overflow {
        let next = c.queues.iter().position(|q| &q.name == next)?;
        if next == start {
            if path.iter().any(|&i| i < start) {
                return None;
            }
            path.push(next);
            let names: Vec<&str> = path
                .iter()
                .filter_map(|&i| c.queues.get(i))
                .map(|q| q.name.as_str())
                .collect();
            return Some(names.join(" → "));
        }
        if !seen.insert(next) {
            return None; // a loop that does not include `start`: reported from its own queue
        }
        path.push(next);
        cur = next;
    }
    None
}

/// Reports `field` twice or more among `names` of one section.
fn unique<'a>(section: &str, names: impl Iterator<Item = &'a str>, key: &str, issues: &mut Issues) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, n) in names.enumerate() {
        if let Some(prev) = first.get(n) {
            issues.push(
                format!("{section}[{i}].{key}"),
                format!("`{n}` is already used by {section}[{prev}]"),
            );
        } else {
            first.insert(n, i);
        }
    }
}

fn name(field: &str, s: &str, issues: &mut Issues) {
    if s.is_empty() {
        issues.push(field, "must not be empty");
    } else if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        issues.push(
            field,
            format!("`{s}` may only contain letters, digits, `-`, `_` and `.`"),
        );
    }
}

fn number(field: &str, s: &str, issues: &mut Issues) {
    if s.is_empty() {
        issues.push(field, "must not be empty");
    } else if !s.chars().all(is_user_char) {
        issues.push(
            field,
            format!("`{s}` contains characters not allowed in a SIP user part"),
        );
    }
}

/// RFC 3261 §25.1 `unreserved` and `user-unreserved`, less `;`, `?` and `/`.
fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,".contains(c)
}

fn is_host(s: &str) -> bool {
    if let Some(v6) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    s.parse::<IpAddr>().is_ok()
        || (!s.starts_with(['.', '-'])
            && !s.contains("..")
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
}

/// Checks that `s` is a `sip:`/`sips:` URI with a host (and a numeric port if one is given).
fn sip_uri(field: &str, s: &str, issues: &mut Issues) {
    if let Err(why) = check_sip_uri(s) {
        issues.push(field, format!("`{s}` is not a SIP URI: {why}"));
    }
}

pub(super) fn check_sip_uri(s: &str) -> Result<(), &'static str> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters");
    }
    let rest = match s.split_once(':') {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") =>
        {
            rest
        }
        _ => return Err("must start with `sip:` or `sips:`"),
    };
    let hostport = rest.split([';', '?']).next().unwrap_or_default();
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        let (v6, tail) = after.split_once(']').ok_or("unclosed `[` in host")?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("bad IPv6 address");
        }
        (v6, tail.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    if !hostport.starts_with('[') && !is_host(host) {
        return Err("bad host");
    }
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err("bad port");
        }
    }
    Ok(())
}

pub(super) fn warnings(c: &Config) -> Vec<ConfigWarning> {
    let mut out = Vec::new();
    for (i, q) in c.queues.iter().enumerate() {
        if !c.agents.iter().any(|a| a.has_skill(&q.skill)) {
            out.push(ConfigWarning {
                field: format!("queues[{i}].skill"),
                message: format!(
                    "no agent has skill `{}`: the queue cannot be served",
                    q.skill
                ),
            });
        }
    }
    if c.transfer.default_blind == TransferType::Hangup {
        out.push(ConfigWarning {
            field: "transfer.default_blind".into(),
            message: "hangup transfers go to IVR flows only; plain REFERs to anything else will be refused".into(),
        });
    }
    if c.http.token.as_deref() == Some("change-me") {
        out.push(ConfigWarning {
            field: "http.token".into(),
            message: "is the example token; set a secret before exposing the API".into(),
        });
    }
    out
}
