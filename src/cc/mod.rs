//! The contact-centre layer (DESIGN.md §2): agents and their states. Queues, IVR flows,
//! external numbers and the dial plan build on it.

pub mod agents;
pub mod dialplan;
pub mod queue;
