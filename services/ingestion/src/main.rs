//! `vitals-ingestion`: the ingestion service as its own process.

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: the ingest path allocates many small strings
/// (see docs/bench-ingestion.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config: vitals_ingestion::Config = vitals_server::parse_args();
    let server = config.server.clone();
    vitals_server::main_with(
        "vitals-ingestion",
        server,
        move |server, listener, shutdown| {
            vitals_ingestion::run(
                vitals_ingestion::Config { server, ..config },
                listener,
                shutdown,
            )
        },
    )
}
