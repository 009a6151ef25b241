//! The scoring service's logic: runs ([`compute`], parents' roll-ups in [`rollup`]),
//! reads ([`read`]) and the stored snapshot formats ([`stored`]).

pub mod compute;
pub mod events;
pub(crate) mod foreign;
pub mod overrides;
pub mod read;
pub mod rollup;
pub mod stored;
