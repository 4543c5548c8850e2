//! The sans-IO core: the conversation engine and the audience rule. No
//! sockets, no clock, no runtime: commands and the time come in; writes,
//! replies, events and the next deadline go out.

pub(crate) mod audience;
pub(crate) mod desk;
pub(crate) mod engine;
