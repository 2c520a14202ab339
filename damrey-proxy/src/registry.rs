//! The agent registry's JSON: the entries `GET /agents` lists, declared with the other
//! bodies agents read in [`damrey_wire::rest`]. The heartbeat agents send is
//! [`damrey_wire::report::Heartbeat`].

pub use damrey_wire::rest::AgentEntry;
