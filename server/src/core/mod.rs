//! The sans-IO core: the conversation engine, the audience rule, the
//! service desk and federation's delivery logic. No sockets, no clock, no
//! runtime: commands and the time come in; writes, replies, events and the
//! next deadline go out.

pub(crate) mod audience;
pub(crate) mod desk;
pub(crate) mod engine;
pub(crate) mod federation;
