//! The ways into a server. Each link decodes its wire format into commands
//! and renders events back; none holds policy.

pub(crate) mod admin;
pub(crate) mod device;
pub(crate) mod federation;
pub(crate) mod quic;
