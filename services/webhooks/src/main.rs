//! `vitals-webhooks`: the webhooks service (API and delivery worker) as its own process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config: vitals_webhooks::Config = vitals_server::parse_args();
    let server = config.server.clone();
    vitals_server::main_with(
        "vitals-webhooks",
        server,
        move |server, listener, shutdown| {
            vitals_webhooks::run(
                vitals_webhooks::Config { server, ..config },
                listener,
                shutdown,
            )
        },
    )
}
