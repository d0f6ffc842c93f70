//! From a dial-plan target to the parties to ring (DESIGN.md §2).
//!
//! `Config::target_for_number` resolves a dialled user part in DESIGN order (agent
//! extension, queue number, IVR number, configured external number, ad-hoc pattern); this
//! module turns the target into Request-URIs and flows: an agent's registered contacts (or
//! its static contact), an IVR flow's URI, or the outbound trunk for external numbers.
//! External numbers are reachable only from an agent (toll-fraud guard: a trunk caller
//! cannot loop out through handover).

use std::time::Instant;

use crate::call::CallTarget;
use crate::config::Target;
use crate::endpoint::Endpoint;
use crate::incoming::uri_destination;

/// Why a target cannot be rung: the response for an INVITE, the status for a NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refuse {
    pub code: u16,
    pub reason: &'static str,
    /// A `Warning` header value saying why.
    pub warning: Option<String>,
}

impl Refuse {
    fn new(code: u16, reason: &'static str, why: String) -> Refuse {
        Refuse {
            code,
            reason,
            warning: Some(crate::transfer::warning_header_value(&why)),
        }
    }
}

/// The Request-URI host handover uses towards the outbound trunk.
fn trunk_uri(outbound: &str, number: &str) -> String {
    let host = outbound
        .trim_start_matches("sips:")
        .trim_start_matches("sip:");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("sip:{number}@{host}")
}

/// Where `target` is rung, presenting `presented_caller` (a name-addr without tag) in From.
/// `customer` is the customer's identity when the call has one (a customer's call being
/// transferred): external numbers with user number forwarding present it.
pub fn call_target(
    ep: &Endpoint,
    target: &Target,
    presented_caller: String,
    customer: Option<String>,
    from_agent: bool,
    now: Instant,
) -> Result<CallTarget, Refuse> {
    let config = &ep.config();
    let domain = &config.sip.domain;
    match target {
        Target::Agent(id) => {
            let agent = config
                .agent(id)
                .ok_or_else(|| Refuse::new(404, "Not Found", format!("no agent {id}")))?;
            let mut contacts = ep.location().contacts_for(id, now);
            if contacts.is_empty() {
                if let (Some(uri), Some(dest)) = (&agent.contact, agent.contact_destination) {
                    contacts.push((uri.clone(), dest));
                }
            }
            if contacts.is_empty() {
                return Err(Refuse::new(
                    480,
                    "Temporarily Unavailable",
                    format!("agent {id} is not registered"),
                ));
            }
            Ok(CallTarget {
                agent: Some(id.clone()),
                party: ["<sip:", id.as_str(), "@", domain.as_str(), ">"].concat(),
                contacts,
                presented_caller,
                headers: Vec::new(),
                queue: None,
                role: "agent",
            })
        }
        Target::Ivr(name) => {
            let ivr = config
                .ivr(name)
                .ok_or_else(|| Refuse::new(404, "Not Found", format!("no IVR flow {name}")))?;
            let dest = crate::sip::Uri::parse(&ivr.uri)
                .ok()
                .and_then(|u| uri_destination(&u))
                .ok_or_else(|| {
                    Refuse::new(
                        480,
                        "Temporarily Unavailable",
                        format!("IVR flow {name} has no IP address"),
                    )
                })?;
            Ok(CallTarget {
                agent: None,
                party: format!("<{}>", ivr.uri),
                contacts: vec![(ivr.uri.clone(), dest)],
                presented_caller,
                headers: Vec::new(),
                queue: None,
                role: "ivr",
            })
        }
        Target::External(_) | Target::Number(_) => {
            if !from_agent {
                return Err(Refuse::new(
                    403,
                    "Forbidden",
                    "external numbers are not reachable from trunks".into(),
                ));
            }
            let (number, forwarding) = match target {
                Target::External(name) => config
                    .external_number(name)
                    .map(|e| (e.number.clone(), e.user_number_forwarding))
                    .ok_or_else(|| {
                        Refuse::new(404, "Not Found", format!("no external number {name}"))
                    })?,
                Target::Number(n) => (n.clone(), false),
                _ => (String::new(), false),
            };
            let trunk = config.outbound_trunk();
            let outbound = trunk.and_then(|t| t.outbound.clone());
            // DESIGN.md §2: with user number forwarding the customer's number is presented
            // (From and P-Asserted-Identity); otherwise the contact centre's access number.
            let (presented_caller, headers) = match (forwarding, customer) {
                (true, Some(customer)) => {
                    let pai = customer.clone();
                    (customer, vec![("P-Asserted-Identity", pai)])
                }
                _ => {
                    let access = trunk
                        .and_then(|t| t.access_number.clone())
                        .unwrap_or_default();
                    let who = format!("<sip:{access}@{domain}>");
                    (who.clone(), vec![("P-Asserted-Identity", who)])
                }
            };
            let dest = outbound
                .as_deref()
                .and_then(|o| crate::sip::Uri::parse(o).ok())
                .and_then(|u| uri_destination(&u));
            let (Some(outbound), Some(dest)) = (outbound, dest) else {
                return Err(Refuse::new(
                    503,
                    "Service Unavailable",
                    "no trunk has an outbound route".into(),
                ));
            };
            let uri = trunk_uri(&outbound, &number);
            Ok(CallTarget {
                agent: None,
                party: format!("<{uri}>"),
                contacts: vec![(uri, dest)],
                presented_caller,
                headers,
                queue: None,
                role: "external",
            })
        }
        Target::Queue(name) => {
            let queue = config
                .queue(name)
                .ok_or_else(|| Refuse::new(404, "Not Found", format!("no queue {name}")))?;
            Ok(CallTarget {
                agent: None,
                party: format!("<sip:{}@{domain}>", queue.number),
                contacts: Vec::new(),
                presented_caller,
                headers: Vec::new(),
                queue: Some(name.clone()),
                role: "queue",
            })
        }
    }
}
