//! The runtime's behaviour in one process: supervision, timeouts, mpu, stop, routing
//! rules and the exactly-one-reply guarantee (DESIGN §4, §5).

mod lines;
mod remote;
mod support;
mod worker;
