//! `vitals-profiles`: the profiles service as its own process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config: vitals_profiles::Config = vitals_server::parse_args();
    let server = config.server.clone();
    vitals_server::main_with(
        "vitals-profiles",
        server,
        move |server, listener, shutdown| {
            vitals_profiles::run(
                vitals_profiles::Config { server, ..config },
                listener,
                shutdown,
            )
        },
    )
}
