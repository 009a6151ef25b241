//! `vitals-learner`: the learner service as its own process.

use std::process::ExitCode;

fn main() -> ExitCode {
    let config: vitals_learner::Config = vitals_server::parse_args();
    let server = config.server.clone();
    vitals_server::main_with(
        "vitals-learner",
        server,
        move |server, listener, shutdown| {
            vitals_learner::run(
                vitals_learner::Config { server, ..config },
                listener,
                shutdown,
            )
        },
    )
}
