//! The per-machine agent (DESIGN §7). It will host `damrey_actors::Router` with a
//! `Remote` over persistent agent-to-agent links; nothing is built here yet, and the
//! crate exports nothing, so nothing can mistake it for a working agent.
