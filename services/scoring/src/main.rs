//! `vitals-scoring`: the scoring service as its own process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config: vitals_scoring::Config = vitals_server::parse_args();
    let server = config.server.clone();
    vitals_server::main_with(
        "vitals-scoring",
        server,
        move |server, listener, shutdown| {
            vitals_scoring::run(
                vitals_scoring::Config { server, ..config },
                listener,
                shutdown,
            )
        },
    )
}
