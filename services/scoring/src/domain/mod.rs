//! The scoring service's logic: runs ([`compute`]), reads ([`read`]) and the stored
//! snapshot formats ([`stored`]).

pub mod compute;
pub mod events;
pub mod overrides;
pub mod read;
pub mod stored;
