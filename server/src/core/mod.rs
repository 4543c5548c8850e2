//! The sans-IO core: the conversation engine. No sockets, no clock, no
//! runtime: commands and the time come in, writes, replies and events go out.

pub mod engine;
